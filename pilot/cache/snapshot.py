"""Snapshot: every resource one proxy view gets at one config version, already serialized.

Each resource is serialized once, as the bytes of a ``google.protobuf.Any``; those bytes are
shared by every proxy of the view and by every stream that sends them. A resource's version is a
hash of its content, so an unchanged resource keeps its version across pushes and is never resent.

Building a snapshot from the previous one of the same view (``previous=``) reuses the previous
``TypeResources`` object of every type whose version did not change, and the previous ``Resource``
of every unchanged resource: consumers that key work by identity (the server's encoded selections)
then share it across pushes, and an unchanged push keeps no second copy of anything.
"""

from __future__ import annotations

import hashlib
import operator
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from google.protobuf import any_pb2
from google.protobuf.message import Message

from pilot.xds import types
from pilot.xds.protowire import varint


def content_version(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=8).hexdigest()


_ANY_PREFIXES: dict[str, bytes] = {}


def encode_any(type_url: str, value: bytes) -> bytes:
    """``Any(type_url=type_url, value=value).SerializeToString()``, without building an Any:
    field 1 (type_url) then field 2 (value), both length-delimited; proto3 omits empty fields.
    https://protobuf.dev/programming-guides/encoding/"""
    prefix = _ANY_PREFIXES.get(type_url)
    if prefix is None:
        url = type_url.encode()
        prefix = _ANY_PREFIXES.setdefault(type_url, b"\x0a" + varint(len(url)) + url if url else b"")
    if not value:
        return prefix
    return b"".join((prefix, b"\x12", varint(len(value)), value))


class Encoded:
    """A resource its maker serialized already (the translator assembles some from bytes it kept
    or from a template's; a parser reads them as the message); its version is computed once."""

    __slots__ = ("_version", "value")

    def __init__(self, value: bytes) -> None:
        self.value = value
        self._version: str | None = None

    @property
    def version(self) -> str:
        if self._version is None:
            self._version = content_version(self.value)
        return self._version


@dataclass(frozen=True, slots=True)
class Resource:
    """One named resource: ``body`` is a serialized ``google.protobuf.Any``."""

    name: str
    version: str
    body: bytes

    @classmethod
    def from_message(cls, type_url: str, name: str, message: Message | Encoded) -> Resource:
        if isinstance(message, Encoded):
            return cls(name, message.version, encode_any(type_url, message.value))
        value = message.SerializeToString(deterministic=True)
        return cls(name, content_version(value), encode_any(type_url, value))

    def unpack(self, message: Message) -> Message:
        """Parse the body into ``message`` (for debug views and tests); returns it."""
        wrapper = any_pb2.Any.FromString(self.body)
        message.ParseFromString(wrapper.value)
        return message


@dataclass(frozen=True, slots=True, weakref_slot=True)
class TypeResources:
    """All resources of one type URL, with a version that changes iff any of them changes.

    Weak-referenceable, so a cache keyed on its identity (the server's encoded selections) can
    forget an entry once no snapshot holds it any more.
    """

    type_url: str
    version: str
    resources: Mapping[str, Resource]

    @classmethod
    def build(
        cls, type_url: str, resources: Iterable[Resource], previous: TypeResources | None = None
    ) -> TypeResources:
        """The type's resources, keyed and ordered by name. If ``previous`` (the same type in the
        last snapshot of the view) has the same content, it is returned itself; otherwise its
        ``Resource`` objects are reused for every resource whose version is unchanged."""
        by_name = {r.name: r for r in sorted(resources, key=_name)}
        version = _type_version(by_name)
        if previous is not None and previous.type_url == type_url:
            if previous.version == version:
                return previous
            old = previous.resources
            for name, resource in by_name.items():
                kept = old.get(name)
                if kept is not None and kept.version == resource.version and kept.body == resource.body:
                    by_name[name] = kept
        return cls(type_url, version, MappingProxyType(by_name))


_name = operator.attrgetter("name")


def _type_version(by_name: Mapping[str, Resource]) -> str:
    # name NUL version NUL, for every resource in name order.
    data = "".join(f"{name}\0{resource.version}\0" for name, resource in by_name.items()).encode()
    return hashlib.blake2b(data, digest_size=8).hexdigest()


_EMPTY: Mapping[str, Resource] = MappingProxyType({})

# type URL -> resource name -> keys of the config objects the resource came from (opaque here:
# the translator fills it, the pusher reads it when a proxy rejects a resource; the server never).
Origins = Mapping[str, Mapping[str, frozenset[Hashable]]]
_NO_ORIGINS: Origins = MappingProxyType({})
# config object key -> why translation could not take it for this view (opaque here too: the
# translator fills it, /debug/configz shows it on the object). The object still produced something
# safe (an AuthorizationPolicy: a deny of everything), so this is a report, never a failed build.
Problems = Mapping[Hashable, tuple[str, ...]]
_NO_PROBLEMS: Problems = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Immutable: type URL → TypeResources, and the config version it was built from; ``origins``
    says which config objects made each resource (when the translator says), ``problems`` which
    config objects translation could not take as written, and why."""

    version: str
    by_type: Mapping[str, TypeResources]
    origins: Origins = field(default_factory=lambda: _NO_ORIGINS)
    problems: Problems = field(default_factory=lambda: _NO_PROBLEMS)

    @classmethod
    def from_messages(
        cls,
        version: str,
        messages: Mapping[str, Iterable[tuple[str, Message | Encoded]]],
        previous: Snapshot | None = None,
        *,
        keep: Iterable[str] = (),
        origins: Origins = _NO_ORIGINS,
        problems: Problems = _NO_PROBLEMS,
    ) -> Snapshot:
        """Serialize ``{type_url: [(name, message), ...]}`` once into a snapshot (an ``Encoded``
        message is serialized already).

        ``previous`` is the view's last snapshot: unchanged types and resources are shared with it
        (see ``TypeResources.build``), and the types in ``keep`` are taken from it as they are
        (the caller knows they cannot have changed and did not translate them), with their origins.
        """
        by_type: dict[str, TypeResources] = {}
        for type_url, items in messages.items():
            by_type[type_url] = TypeResources.build(
                type_url,
                (Resource.from_message(type_url, name, msg) for name, msg in items),
                previous.by_type.get(type_url) if previous is not None else None,
            )
        kept_types = [t for t in keep if t not in by_type]
        if kept_types:
            if previous is None:
                raise ValueError("keep= needs a previous snapshot")
            for type_url in kept_types:
                kept = previous.by_type.get(type_url)
                if kept is None:
                    raise ValueError(f"cannot keep {type_url}: the previous snapshot does not have it")
                by_type[type_url] = kept
            # The previous snapshot's type order (the generators' order), new types last.
            order = {type_url: i for i, type_url in enumerate(previous.by_type)}
            by_type = dict(sorted(by_type.items(), key=lambda item: order.get(item[0], len(order))))
            kept_origins = {t: previous.origins[t] for t in kept_types if t in previous.origins}
            if kept_origins:
                origins = MappingProxyType({**kept_origins, **origins})
        return cls(version, MappingProxyType(by_type), origins, problems)

    def resources(self, type_url: str) -> Mapping[str, Resource]:
        typed = self.by_type.get(type_url)
        return typed.resources if typed is not None else _EMPTY

    def type_version(self, type_url: str) -> str:
        typed = self.by_type.get(type_url)
        return typed.version if typed is not None else ""

    def inconsistencies(self) -> list[str]:
        """go-control-plane's ``Consistent()``: every EDS name is a CDS cluster, every RDS name a
        route config some listener names. Returns what is wrong (the caller decides). Listener
        route names are checked by the translator, which knows the messages; here only EDS ⊆ CDS."""
        clusters = self.resources(types.CLUSTER)
        return [
            f"ClusterLoadAssignment {name!r} has no cluster"
            for name in self.resources(types.ENDPOINT)
            if name not in clusters
        ]
