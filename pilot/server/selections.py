"""What the server encodes once and shares between streams, in bounded caches.

- :class:`SelectionCache`: the ``resources`` part of one (type URL, snapshot, subscription) of a
  state-of-the-world response is encoded once and shared by every stream of that view, so N
  proxies of one view pay the encoding once.
- :class:`DeltaResourceCache`: a delta ``Resource`` wrapping depends only on the resource, so it is
  encoded once per (type URL, name, version) and every stream and snapshot that sends the same
  resource shares the bytes.

Both are :class:`~pilot.server.bounded.BoundedCache` instances (entries and bytes, least recently used
first). Not thread-safe: use from one event loop.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Hashable, Sequence
from typing import Generic, TypeVar

from pilot.cache.snapshot import Resource, Snapshot, TypeResources
from pilot.server import wire
from pilot.server.bounded import BoundedCache, OwnedCache

__all__ = ["DeltaResourceCache", "NameSets", "Selection", "SelectionCache"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class NameSets:
    """One shared frozenset per distinct subscription: streams of one view then hold one copy of
    their (possibly thousands of) resource names instead of one each, and selection lookups
    compare keys by identity instead of element by element."""

    def __init__(self, max_entries: int = 4096) -> None:
        self._sets: BoundedCache[frozenset[str], frozenset[str]] = BoundedCache(max_entries, 1, _no_size)

    def intern(self, names: frozenset[str]) -> frozenset[str]:
        found = self._sets.get(names)
        if found is not None:
            return found
        self._sets.put(names, names)
        return names


class _Shared(Generic[K, V]):
    """What both caches do alike: intern subscriptions, report their entries and bytes."""

    _entries: BoundedCache[K, V] | OwnedCache[V]
    _names: NameSets

    def intern(self, names: frozenset[str]) -> frozenset[str]:
        return self._names.intern(names)

    @property
    def encoded_bytes(self) -> int:
        return self._entries.bytes

    def __len__(self) -> int:
        return len(self._entries)


class DeltaResourceCache(_Shared[tuple[str, str, str], bytes]):
    """Encoded delta ``Resource`` elements, shared by every stream of the server.

    Keyed by (type URL, name, version): a resource's version is a hash of its content, so the key
    names the bytes exactly, across snapshots and views. Bounded by entry count and bytes.
    """

    def __init__(
        self, max_entries: int = 65536, max_bytes: int = 256 * 1024 * 1024, names: NameSets | None = None
    ) -> None:
        self._names = names or NameSets()
        self._entries: BoundedCache[tuple[str, str, str], bytes] = BoundedCache(max_entries, max_bytes, len)
        self._everything: BoundedCache[tuple[str, str, frozenset[str] | None], bytes] = BoundedCache(
            256, max_bytes // 2, len
        )

    def encoded(self, type_url: str, resource: Resource) -> bytes:
        key = (type_url, resource.name, resource.version)
        data = self._entries.get(key)
        if data is None:
            data = wire.delta_resource(resource)
            self._entries.put(key, data)
        return data

    def everything(
        self, typed: TypeResources, names: frozenset[str] | None, resources: Sequence[Resource]
    ) -> bytes:
        """The encoded ``resources`` field of a response that sends ``resources``: everything
        ``names`` (None: all) selects of ``typed``, to a proxy that holds none of it (a connect
        storm sends the same thing to every proxy of a view). Shared by type version and
        subscription: the version is a hash of the type's content, and the order is fixed."""
        key = (typed.type_url, typed.version, names)
        data = self._everything.get(key)
        if data is None:
            data = b"".join(self.encoded(typed.type_url, r) for r in resources)
            self._everything.put(key, data)
        return data


class Selection:
    """The resources of one type that one subscription gets from one snapshot.

    ``names`` is None for a wildcard subscription (every resource of the type), else the subscribed
    names; names absent from the snapshot are simply left out. ``content`` identifies what is sent
    (two selections with equal content send the same resources at the same versions), so a stream
    compares it with what it sent last to decide whether a push is needed. ``payload`` (the encoded
    ``resources`` field) is built on first use. Immutable once built; safe to share between streams.
    """

    __slots__ = ("type_url", "version", "content", "names", "_resources", "_payload", "_on_encoded")

    def __init__(
        self,
        typed: TypeResources,
        names: frozenset[str] | None,
        on_encoded: Callable[[Selection], None] | None = None,
    ) -> None:
        self.type_url = typed.type_url
        # version_info is the type's version in the snapshot, the same for every subscription.
        self.version = typed.version
        self.names = names
        # The resources, not the TypeResources: a cache keyed by the TypeResources can then let an
        # entry go when no snapshot holds its TypeResources any more.
        self._resources = typed.resources
        self._payload: bytes | None = None
        self._on_encoded = on_encoded
        if names is None:
            self.content = typed.version
        else:
            digest = hashlib.blake2b(digest_size=8)
            for name in sorted(names):
                resource = typed.resources.get(name)
                if resource is not None:
                    digest.update(name.encode())
                    digest.update(b"\0")
                    digest.update(resource.version.encode())
                    digest.update(b"\0")
            self.content = digest.hexdigest()

    @property
    def payload(self) -> bytes:
        if self._payload is None:
            resources = self._resources
            if self.names is None:
                bodies = [r.body for r in resources.values()]
            else:
                bodies = [resources[n].body for n in sorted(self.names) if n in resources]
            self._payload = wire.encode_resources(bodies)
            if self._on_encoded is not None:
                self._on_encoded(self)
        return self._payload

    @property
    def encoded_size(self) -> int:
        """Bytes of the encoded payload; 0 while it has not been built."""
        return len(self._payload) if self._payload is not None else 0

    @property
    def resource_names(self) -> list[str]:
        """Names of the resources this selection sends (for logs and tests)."""
        resources = self._resources
        if self.names is None:
            return list(resources)
        return [n for n in sorted(self.names) if n in resources]


class SelectionCache(_Shared[tuple[int, Hashable], "Selection"]):
    """Shares :class:`Selection` objects between the streams of one view.

    Keyed by the identity of the snapshot's ``TypeResources`` and the subscription. Entries hold a
    reference to their ``TypeResources``, so an id is never reused while its entry exists. Bounded
    by entry count and by the bytes of built payloads; old snapshots' entries age out as streams
    move to newer ones, and go as soon as no snapshot holds their ``TypeResources``. A selection
    evicted while a stream still uses it keeps working, it is just no longer shared.
    """

    def __init__(
        self, max_entries: int = 4096, max_bytes: int = 256 * 1024 * 1024, names: NameSets | None = None
    ) -> None:
        self._names = names or NameSets(max_entries)
        self._entries: OwnedCache[Selection] = OwnedCache(max_entries, max_bytes, _encoded_size)
        self._empty: dict[str, TypeResources] = {}

    def select(self, snapshot: Snapshot, type_url: str, names: frozenset[str] | None) -> Selection:
        return self.cut(snapshot.by_type.get(type_url), type_url, names)

    def cut(self, typed: TypeResources | None, type_url: str, names: frozenset[str] | None) -> Selection:
        """The selection of ``names`` (None: all) from a type's resources (None: the type is not
        in the snapshot, which sends an empty response with a stable version)."""
        if typed is None:
            typed = self._empty.get(type_url)
            if typed is None:
                typed = self._empty[type_url] = TypeResources.build(type_url, ())
        selection = self._entries.get(typed, names)
        if selection is not None:
            return selection
        owner = id(typed)
        selection = Selection(typed, names, lambda built: self._entries.resize(owner, names, built))
        self._entries.put(typed, names, selection)
        return selection


def _encoded_size(selection: Selection) -> int:
    return selection.encoded_size


def _no_size(_: frozenset[str]) -> int:
    return 0
