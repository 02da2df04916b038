"""Hand-encoded DiscoveryResponse bytes equal what protobuf itself would build."""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import any_pb2

from pilot.server import wire
from pilot.xds import types
from tests.server.resources import base_snapshot, cluster, make_snapshot


def expected(
    version: str, type_url: str, nonce: str, bodies: list[bytes], identifier: str = ""
) -> discovery_pb2.DiscoveryResponse:
    message = discovery_pb2.DiscoveryResponse(version_info=version, type_url=type_url, nonce=nonce)
    for body in bodies:
        message.resources.append(any_pb2.Any.FromString(body))
    if identifier:
        message.control_plane.CopyFrom(base_pb2.ControlPlane(identifier=identifier))
    return message


def test_response_bytes_parse_to_the_expected_message_and_match_protobuf() -> None:
    snapshot = base_snapshot()
    selection = wire.SelectionCache().select(snapshot, types.CLUSTER, None)
    data = wire.discovery_response(
        version_info=selection.version,
        resources=selection.payload,
        type_url=types.CLUSTER,
        nonce="7",
        control_plane=wire.control_plane("pilot-0"),
    )
    bodies = [r.body for r in snapshot.resources(types.CLUSTER).values()]
    want = expected(selection.version, types.CLUSTER, "7", bodies, "pilot-0")

    parsed = discovery_pb2.DiscoveryResponse.FromString(data)
    assert parsed == want
    assert data == want.SerializeToString(deterministic=True)
    names = [any_pb2.Any.FromString(b) for b in bodies]
    assert [cluster_pb2.Cluster.FromString(a.value).name for a in names] == ["a", "b"]


def test_long_fields_use_multi_byte_lengths() -> None:
    # A resource over 127 bytes (and one over 16 KiB) needs a multi-byte varint length.
    big = cluster("x" * 20_000)
    snapshot = make_snapshot("v", clusters=[cluster("small"), big])
    selection = wire.SelectionCache().select(snapshot, types.CLUSTER, None)
    data = wire.discovery_response(
        version_info="v" * 300, resources=selection.payload, type_url=types.CLUSTER, nonce="123456"
    )
    bodies = [r.body for r in snapshot.resources(types.CLUSTER).values()]
    assert discovery_pb2.DiscoveryResponse.FromString(data) == expected(
        "v" * 300, types.CLUSTER, "123456", bodies
    )


def test_empty_fields_are_omitted_like_proto3() -> None:
    data = wire.discovery_response(version_info="", resources=b"", type_url=types.ROUTE, nonce="1")
    want = discovery_pb2.DiscoveryResponse(type_url=types.ROUTE, nonce="1")
    assert data == want.SerializeToString(deterministic=True)
    assert wire.control_plane("") == b""


def test_named_selection_keeps_only_existing_subscribed_names() -> None:
    snapshot = base_snapshot()
    cache = wire.SelectionCache()
    selection = cache.select(snapshot, types.ENDPOINT, frozenset({"b", "missing"}))
    assert selection.resource_names == ["b"]
    want = wire.encode_resources([snapshot.resources(types.ENDPOINT)["b"].body])
    assert selection.payload == want
    # Nothing subscribed exists: an empty (but valid) resources part.
    assert cache.select(snapshot, types.ENDPOINT, frozenset({"missing"})).payload == b""


def test_selections_are_shared_and_content_tracks_subscribed_versions() -> None:
    cache = wire.SelectionCache()
    one, two = base_snapshot("v1"), base_snapshot("v2")
    names = frozenset({"a"})
    assert cache.select(one, types.ENDPOINT, names) is cache.select(one, types.ENDPOINT, frozenset({"a"}))
    # Same resources at the same versions in another snapshot: same content.
    assert (
        cache.select(one, types.ENDPOINT, names).content == cache.select(two, types.ENDPOINT, names).content
    )
    # Wildcard content is the type version; a type missing from the snapshot is empty.
    assert cache.select(one, types.CLUSTER, None).content == one.type_version(types.CLUSTER)
    missing = cache.select(one, "type.googleapis.com/some.Other", None)
    assert missing.payload == b"" and missing.version


def test_selection_cache_is_bounded() -> None:
    cache = wire.SelectionCache(max_entries=3)
    snapshot = base_snapshot()
    for name in ("a", "b", "c", "d", "e"):
        cache.select(snapshot, types.ENDPOINT, frozenset({name}))
    assert len(cache) == 3


def test_selection_cache_bounds_encoded_bytes_and_keeps_working_after_eviction() -> None:
    snapshot = base_snapshot()
    one_payload = len(wire.SelectionCache().select(snapshot, types.CLUSTER, None).payload)
    cache = wire.SelectionCache(max_bytes=one_payload + 1)
    first = cache.select(snapshot, types.CLUSTER, None)
    assert first.payload and cache.encoded_bytes == one_payload
    second = cache.select(snapshot, types.CLUSTER, frozenset({"a", "b"}))
    assert second.payload == first.payload  # the same two clusters
    # Over budget: the older entry went, the newest stays; the evicted one still works.
    assert len(cache) == 1 and cache.encoded_bytes == one_payload
    assert cache.select(snapshot, types.CLUSTER, frozenset({"a", "b"})) is second
    assert first.payload == second.payload
