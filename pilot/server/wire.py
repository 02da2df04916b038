"""DiscoveryResponse and DeltaDiscoveryResponse bytes, built by concatenating protobuf wire fields.

A snapshot already holds every resource as the bytes of a serialized ``google.protobuf.Any``, so a
response never needs message objects: the ``resources`` part is those bytes, each behind a field-2
tag and a length, and the rest is four short string fields. What is encoded once and shared by
streams lives in :mod:`pilot.server.selections`; this module only encodes.

Wire format: https://protobuf.dev/programming-guides/encoding/ (a repeated message field is the
concatenation of its elements, and fields may appear in any order; we emit them in field-number
order, which is what ``SerializeToString`` does, so the bytes are identical).
DiscoveryResponse fields: version_info=1, resources=2, type_url=4, nonce=5, control_plane=6.
https://www.envoyproxy.io/docs/envoy/latest/api-v3/service/discovery/v3/discovery.proto

Delta (incremental xDS) responses carry each resource wrapped in a ``Resource`` {version=1,
resource=2 (the Any), name=3}. DeltaDiscoveryResponse fields:
system_version_info=1, resources=2, type_url=4, nonce=5, removed_resources=6, control_plane=7.
"""

from __future__ import annotations

from collections.abc import Iterable

from pilot.cache.snapshot import Resource
from pilot.xds.protowire import varint

__all__ = [
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
        _REMOVED_RESOURCES + varint(len(encoded)) + encoded for encoded in (name.encode() for name in removed)
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
