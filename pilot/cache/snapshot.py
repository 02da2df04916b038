"""Snapshot: every resource one proxy view gets at one config version, already serialized.

Each resource is serialized once, as the bytes of a ``google.protobuf.Any``; those bytes are
shared by every proxy of the view and by every stream that sends them. A resource's version is a
hash of its content, so an unchanged resource keeps its version across pushes and is never resent.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from google.protobuf import any_pb2
from google.protobuf.message import Message

from pilot.xds import types


def content_version(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=8).hexdigest()


@dataclass(frozen=True, slots=True)
class Resource:
    """One named resource: ``body`` is a serialized ``google.protobuf.Any``."""

    name: str
    version: str
    body: bytes

    @classmethod
    def from_message(cls, type_url: str, name: str, message: Message) -> Resource:
        value = message.SerializeToString(deterministic=True)
        body = any_pb2.Any(type_url=type_url, value=value).SerializeToString(deterministic=True)
        return cls(name, content_version(value), body)

    def unpack(self, message: Message) -> Message:
        """Parse the body into ``message`` (for debug views and tests); returns it."""
        wrapper = any_pb2.Any.FromString(self.body)
        message.ParseFromString(wrapper.value)
        return message


@dataclass(frozen=True, slots=True)
class TypeResources:
    """All resources of one type URL, with a version that changes iff any of them changes."""

    type_url: str
    version: str
    resources: Mapping[str, Resource]

    @classmethod
    def build(cls, type_url: str, resources: Iterable[Resource]) -> TypeResources:
        by_name = {r.name: r for r in sorted(resources, key=lambda r: r.name)}
        digest = hashlib.blake2b(digest_size=8)
        for name, resource in by_name.items():
            digest.update(name.encode())
            digest.update(b"\0")
            digest.update(resource.version.encode())
            digest.update(b"\0")
        return cls(type_url, digest.hexdigest(), MappingProxyType(by_name))


_EMPTY: Mapping[str, Resource] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Immutable: type URL → TypeResources, and the config version it was built from."""

    version: str
    by_type: Mapping[str, TypeResources]

    @classmethod
    def from_messages(
        cls, version: str, messages: Mapping[str, Iterable[tuple[str, Message]]]
    ) -> Snapshot:
        """Serialize ``{type_url: [(name, message), ...]}`` once into a snapshot."""
        by_type = {
            type_url: TypeResources.build(
                type_url, (Resource.from_message(type_url, name, msg) for name, msg in items)
            )
            for type_url, items in messages.items()
        }
        return cls(version, MappingProxyType(by_type))

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
