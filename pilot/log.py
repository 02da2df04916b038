"""Logger names and the default logging configuration."""

from __future__ import annotations

import logging
import sys


def configure(level: str | int = "INFO") -> None:
    """Log to stderr with timestamps; pilot.* at ``level``, libraries at WARNING."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("pilot").setLevel(level)
