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

        def cancel() -> None:
            watchers = self._watchers.get(key)
            if watchers is not None:
                watchers.pop(watch_id, None)
                if not watchers:
                    del self._watchers[key]

        return cancel

    def watcher_count(self, key: Hashable) -> int:
        return len(self._watchers.get(key, {}))
