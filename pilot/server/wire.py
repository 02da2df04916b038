"""DiscoveryResponse and DeltaDiscoveryResponse bytes, built by concatenating protobuf wire fields.

A snapshot already holds every resource as the bytes of a serialized ``google.protobuf.Any``, so a
response never needs message objects: the ``resources`` part is those bytes, each behind a field-2
tag and a length, and the rest is four short string fields. The ``resources`` part of one
(type URL, snapshot, subscription) is encoded once in a :class:`SelectionCache` and shared by every
stream of that view, so N proxies of one view pay the encoding once.

Wire format: https://protobuf.dev/programming-guides/encoding/ (a repeated message field is the
concatenation of its elements, and fields may appear in any order; we emit them in field-number
order, which is what ``SerializeToString`` does, so the bytes are identical).
DiscoveryResponse fields: version_info=1, resources=2, type_url=4, nonce=5, control_plane=6.
https://www.envoyproxy.io/docs/envoy/latest/api-v3/service/discovery/v3/discovery.proto

Delta (incremental xDS) responses carry each resource wrapped in a ``Resource`` {version=1,
resource=2 (the Any), name=3}. That wrapping depends only on the resource, so a
:class:`DeltaResourceCache` encodes it once per (type URL, name, version) and every stream and
snapshot that sends the same resource shares the bytes. DeltaDiscoveryResponse fields:
system_version_info=1, resources=2, type_url=4, nonce=5, removed_resources=6, control_plane=7.
"""

from __future__ import annotations

import hashlib
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable

from pilot.cache.snapshot import Resource, Snapshot, TypeResources
from pilot.xds.protowire import varint

__all__ = [
    "DeltaResourceCache",
    "Selection",
    "SelectionCache",
    "control_plane",
    "delta_discovery_response",
    "delta_resource",
    "discovery_response",
    "encode_resources",
]

# Tags of length-delimited fields: (field_number << 3) | 2.
_VERSION_INFO = b"\x0a"  # 1
_RESOURCES = b"\x12"  # 2
_TYPE_URL = b"\x22"  # 4
_NONCE = b"\x2a"  # 5
_CONTROL_PLANE = b"\x32"  # 6
_IDENTIFIER = b"\x0a"  # ControlPlane.identifier = 1
# DeltaDiscoveryResponse: system_version_info=1, resources=2, type_url=4 and nonce=5 share the tags
# above; then these two.
_REMOVED_RESOURCES = b"\x32"  # 6
_DELTA_CONTROL_PLANE = b"\x3a"  # 7
# Resource: version=1, resource=2, name=3.
_RESOURCE_VERSION = b"\x0a"
_RESOURCE_ANY = b"\x12"
_RESOURCE_NAME = b"\x1a"




def _string_field(tag: bytes, value: bytes) -> bytes:
    # proto3 omits empty scalar fields; doing the same keeps our bytes equal to SerializeToString.
    return tag + varint(len(value)) + value if value else b""


def encode_resources(bodies: Iterable[bytes]) -> bytes:
    """The repeated ``resources`` field (2) from already serialized ``Any`` messages."""
    return b"".join(_RESOURCES + varint(len(body)) + body for body in bodies)


def control_plane(identifier: str, *, delta: bool = False) -> bytes:
    """The ``control_plane`` field naming this server (6 in a DiscoveryResponse, 7 in a
    DeltaDiscoveryResponse), or nothing for an empty identifier."""
    if not identifier:
        return b""
    inner = _string_field(_IDENTIFIER, identifier.encode())
    return (_DELTA_CONTROL_PLANE if delta else _CONTROL_PLANE) + varint(len(inner)) + inner


def discovery_response(
    *, version_info: str, resources: bytes, type_url: str, nonce: str, control_plane: bytes = b""
) -> bytes:
    """A serialized DiscoveryResponse. ``resources`` comes from :func:`encode_resources` and
    ``control_plane`` from :func:`control_plane` (both already tagged)."""
    return b"".join(
        (
            _string_field(_VERSION_INFO, version_info.encode()),
            resources,
            _string_field(_TYPE_URL, type_url.encode()),
            _string_field(_NONCE, nonce.encode()),
            control_plane,
        )
    )


def delta_resource(resource: Resource) -> bytes:
    """One element of DeltaDiscoveryResponse's ``resources`` field (2): the ``Resource`` wrapping
    ``resource``'s Any with its name and version, behind its tag and length."""
    inner = b"".join(
        (
            _string_field(_RESOURCE_VERSION, resource.version.encode()),
            _RESOURCE_ANY + varint(len(resource.body)) + resource.body,
            _string_field(_RESOURCE_NAME, resource.name.encode()),
        )
    )
    return _RESOURCES + varint(len(inner)) + inner


def delta_discovery_response(
    *,
    system_version_info: str,
    resources: bytes,
    type_url: str,
    nonce: str,
    removed: Iterable[str] = (),
    control_plane: bytes = b"",
) -> bytes:
    """A serialized DeltaDiscoveryResponse. ``resources`` is the concatenation of
    :func:`delta_resource` elements; ``control_plane`` comes from ``control_plane(..., delta=True)``."""
    removed_part = b"".join(
        _REMOVED_RESOURCES + varint(len(encoded)) + encoded
        for encoded in (name.encode() for name in removed)
    )
    return b"".join(
        (
            _string_field(_VERSION_INFO, system_version_info.encode()),
            resources,
            _string_field(_TYPE_URL, type_url.encode()),
            _string_field(_NONCE, nonce.encode()),
            removed_part,
            control_plane,
        )
    )


class DeltaResourceCache:
    """Encoded delta ``Resource`` elements, shared by every stream of the server.

    Keyed by (type URL, name, version): a resource's version is a hash of its content, so the key
    names the bytes exactly, across snapshots and views. Bounded by entry count and bytes, least
    recently used first; an evicted entry is simply encoded again when next needed. Not
    thread-safe: use from one event loop.
    """

    def __init__(self, max_entries: int = 65536, max_bytes: int = 256 * 1024 * 1024) -> None:
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._entries: OrderedDict[tuple[str, str, str], bytes] = OrderedDict()
        self._bytes = 0

    def encoded(self, type_url: str, resource: Resource) -> bytes:
        key = (type_url, resource.name, resource.version)
        data = self._entries.get(key)
        if data is not None:
            self._entries.move_to_end(key)
            return data
        data = delta_resource(resource)
        self._entries[key] = data
        self._bytes += len(data)
        while len(self._entries) > self._max_entries or (
            self._bytes > self._max_bytes and len(self._entries) > 1
        ):
            _, oldest = self._entries.popitem(last=False)
            self._bytes -= len(oldest)
        return data

    @property
    def encoded_bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)


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
            self._payload = encode_resources(bodies)
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


class SelectionCache:
    """Shares :class:`Selection` objects between the streams of one view.

    Keyed by the identity of the snapshot's ``TypeResources`` and the subscription. Entries hold a
    reference to their ``TypeResources``, so an id is never reused while its entry exists. Bounded
    by entry count and by the bytes of built payloads, least recently used first; old snapshots'
    entries age out as streams move to newer ones. A selection evicted while a stream still uses
    it keeps working, it is just no longer shared. Not thread-safe: use from one event loop.
    """

    def __init__(self, max_entries: int = 4096, max_bytes: int = 256 * 1024 * 1024) -> None:
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._entries: OrderedDict[tuple[int, Hashable], Selection] = OrderedDict()
        self._bytes = 0
        self._empty: dict[str, TypeResources] = {}
        self._names: OrderedDict[frozenset[str], frozenset[str]] = OrderedDict()
        self._by_typed: dict[int, set[tuple[int, Hashable]]] = {}

    def intern(self, names: frozenset[str]) -> frozenset[str]:
        """One shared frozenset per distinct subscription: streams of one view then hold one copy
        of their (possibly thousands of) resource names instead of one each, and selection lookups
        compare keys by identity instead of element by element."""
        found = self._names.get(names)
        if found is not None:
            self._names.move_to_end(names)
            return found
        self._names[names] = names
        if len(self._names) > self._max_entries:
            self._names.popitem(last=False)
        return names

    def select(self, snapshot: Snapshot, type_url: str, names: frozenset[str] | None) -> Selection:
        typed = snapshot.by_type.get(type_url)
        if typed is None:
            # A type the snapshot does not have: an empty response with a stable version.
            typed = self._empty.get(type_url)
            if typed is None:
                typed = self._empty[type_url] = TypeResources.build(type_url, ())
        key = (id(typed), names)
        selection = self._entries.get(key)
        if selection is not None:
            self._entries.move_to_end(key)
            return selection
        selection = Selection(typed, names, lambda built: self._encoded(key, built))
        self._entries[key] = selection
        keys = self._by_typed.get(id(typed))
        if keys is None:
            keys = self._by_typed[id(typed)] = set()
            weakref.finalize(typed, self._forget, id(typed))
        keys.add(key)
        self._evict()
        return selection

    @property
    def encoded_bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def _forget(self, typed_id: int) -> None:
        """A TypeResources is gone (no snapshot holds it): so are its selections."""
        for key in self._by_typed.pop(typed_id, ()):
            selection = self._entries.pop(key, None)
            if selection is not None:
                self._bytes -= selection.encoded_size

    def _encoded(self, key: tuple[int, Hashable], selection: Selection) -> None:
        if self._entries.get(key) is selection:
            self._bytes += selection.encoded_size
            self._evict(keep=key)

    def _evict(self, keep: tuple[int, Hashable] | None = None) -> None:
        while len(self._entries) > self._max_entries or (
            self._bytes > self._max_bytes and len(self._entries) > 1
        ):
            key, oldest = next(iter(self._entries.items()))
            if key == keep:
                self._entries.move_to_end(key)
                key, oldest = next(iter(self._entries.items()))
            del self._entries[key]
            self._bytes -= oldest.encoded_size
            keys = self._by_typed.get(key[0])
            if keys is not None:
                keys.discard(key)
