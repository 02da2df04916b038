"""ConfigSource: where config comes from. A source only writes to the store it was given."""

from __future__ import annotations

import asyncio
from typing import Protocol


class ConfigSource(Protocol):
    """A long-running feed of config into a ``ConfigStore``.

    ``run`` loads everything once, sets ``synced``, then follows changes until cancelled. Bad
    config is data: a source records it in the store (``FieldError``s) and never raises for it.
    """

    @property
    def synced(self) -> asyncio.Event:
        """Set once the initial load has been applied to the store."""
        ...

    async def run(self) -> None: ...
