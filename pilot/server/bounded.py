"""A least-recently-used cache bounded both by entry count and by the bytes its entries hold.

The server keeps such caches of encoded bytes shared by its streams (:mod:`.selections`,
:mod:`.responses`); an evicted entry is simply built again when next needed. Not thread-safe:
use from one event loop.
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["BoundedCache", "OwnedCache"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class BoundedCache(Generic[K, V]):
    """At most ``max_entries`` entries and ``max_bytes`` of ``size(value)`` in total, least
    recently used out first; the newest entry stays even if it alone is over ``max_bytes``.
    ``on_evict`` is told of each entry evicted (not of those popped)."""

    def __init__(
        self,
        max_entries: int,
        max_bytes: int,
        size: Callable[[V], int],
        on_evict: Callable[[K, V], None] | None = None,
    ) -> None:
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._size = size
        self._on_evict = on_evict
        self._entries: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self._bytes = 0

    def get(self, key: K) -> V | None:
        """The value of ``key``, now the most recently used, or None."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        self._entries.move_to_end(key)
        return entry[0]

    def put(self, key: K, value: V) -> None:
        self.pop(key)
        size = self._size(value)
        self._entries[key] = (value, size)
        self._bytes += size
        self._evict()

    def resize(self, key: K, value: V) -> None:
        """``value``, the entry of ``key``, has grown (say, its bytes were built): account for it
        and make it the most recently used. Nothing if ``key`` now holds something else."""
        entry = self._entries.get(key)
        if entry is not None and entry[0] is value:
            self.put(key, value)

    def pop(self, key: K) -> V | None:
        entry = self._entries.pop(key, None)
        if entry is None:
            return None
        self._bytes -= entry[1]
        return entry[0]

    @property
    def bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def _evict(self) -> None:
        while len(self._entries) > self._max_entries or (
            self._bytes > self._max_bytes and len(self._entries) > 1
        ):
            key, (value, size) = self._entries.popitem(last=False)
            self._bytes -= size
            if self._on_evict is not None:
                self._on_evict(key, value)


class OwnedCache(Generic[V]):
    """A :class:`BoundedCache` whose entries each belong to an owner object (a snapshot's
    ``TypeResources``), keyed by the owner's identity and a key: an entry also goes as soon as its
    owner is collected, so an owner's id is never reused while an entry names it. The values must
    not hold their owner (or it is never collected)."""

    def __init__(self, max_entries: int, max_bytes: int, size: Callable[[V], int]) -> None:
        self._entries: BoundedCache[tuple[int, Hashable], V] = BoundedCache(
            max_entries, max_bytes, size, self._evicted
        )
        self._by_owner: dict[int, set[tuple[int, Hashable]]] = {}

    def get(self, owner: object, key: Hashable) -> V | None:
        return self._entries.get((id(owner), key))

    def put(self, owner: object, key: Hashable, value: V) -> None:
        keys = self._by_owner.get(id(owner))
        if keys is None:
            keys = self._by_owner[id(owner)] = set()
            weakref.finalize(owner, self._forget, id(owner))
        full = (id(owner), key)
        keys.add(full)
        self._entries.put(full, value)

    def resize(self, owner_id: int, key: Hashable, value: V) -> None:
        """As :meth:`BoundedCache.resize`, for the entry of ``key`` of the owner whose ``id()`` is
        ``owner_id`` (a callback that resizes must not hold the owner itself)."""
        self._entries.resize((owner_id, key), value)

    @property
    def bytes(self) -> int:
        return self._entries.bytes

    def __len__(self) -> int:
        return len(self._entries)

    def _forget(self, owner_id: int) -> None:
        for key in self._by_owner.pop(owner_id, ()):
            self._entries.pop(key)

    def _evicted(self, key: tuple[int, Hashable], _: V) -> None:
        keys = self._by_owner.get(key[0])
        if keys is not None:
            keys.discard(key)
