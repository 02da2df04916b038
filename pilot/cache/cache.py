"""SnapshotCache: the latest Snapshot per view key, and who wants to hear when it changes.

Like go-control-plane's SnapshotCache it owns resources and decides when a watcher is told; it
knows nothing of streams, nonces or ACKs (the server owns those). Watch callbacks are called
synchronously from ``set_snapshot`` and must be cheap (set an event, remember the snapshot):
a slow consumer coalesces to the latest snapshot on its own side, it never blocks the cache.

Not thread-safe: use it from one event loop.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable

from pilot.cache.snapshot import Snapshot

log = logging.getLogger("pilot.cache")

WatchCallback = Callable[[Snapshot], None]


class SnapshotCache:
    def __init__(self) -> None:
        self._snapshots: dict[Hashable, Snapshot] = {}
        self._watchers: dict[Hashable, dict[int, WatchCallback]] = {}
        self._next_watch = 0

    def set_snapshot(self, key: Hashable, snapshot: Snapshot) -> None:
        """Store ``snapshot`` for ``key`` and tell every watcher of ``key``."""
        self._snapshots[key] = snapshot
        for callback in list(self._watchers.get(key, {}).values()):
            try:
                callback(snapshot)
            except Exception:  # one broken watcher must not stop the others
                log.exception("watch callback for %s failed", key)

    def get_snapshot(self, key: Hashable) -> Snapshot | None:
        return self._snapshots.get(key)

    def clear_snapshot(self, key: Hashable) -> None:
        self._snapshots.pop(key, None)

    def keys(self) -> list[Hashable]:
        return list(self._snapshots)

    def watch(self, key: Hashable, callback: WatchCallback) -> Callable[[], None]:
        """Call ``callback(snapshot)`` on every later ``set_snapshot(key, ...)``.

        Returns a function that cancels the watch (idempotent).
        """
        self._next_watch += 1
        watch_id = self._next_watch
        self._watchers.setdefault(key, {})[watch_id] = callback
        return _Cancel(self._watchers, key, watch_id)

    def watcher_count(self, key: Hashable) -> int:
        return len(self._watchers.get(key, {}))


class _Cancel:
    """Cancels one watch (idempotent). A slotted object rather than a closure: every stream keeps
    one for its whole life."""

    __slots__ = ("_id", "_key", "_watchers")

    def __init__(
        self, watchers: dict[Hashable, dict[int, WatchCallback]], key: Hashable, watch_id: int
    ) -> None:
        self._watchers, self._key, self._id = watchers, key, watch_id

    def __call__(self) -> None:
        watchers = self._watchers.get(self._key)
        if watchers is not None:
            watchers.pop(self._id, None)
            if not watchers:
                del self._watchers[self._key]
