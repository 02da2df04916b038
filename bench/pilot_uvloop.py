"""``pilot`` on uvloop: install uvloop's event loop policy, then run pilot's own command line.

The benchmark starts this instead of ``python -m pilot`` with ``--pilot-loop uvloop``, to measure
what uvloop would change without touching pilot/app.py.
"""

from __future__ import annotations

import asyncio
import sys

import uvloop

from pilot.cli import main

if __name__ == "__main__":
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    sys.exit(main(sys.argv[1:]))
