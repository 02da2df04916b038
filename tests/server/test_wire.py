"""Hand-encoded DiscoveryResponse and DeltaDiscoveryResponse bytes equal what protobuf itself would
build."""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import any_pb2

from pilot.cache.snapshot import Resource
from pilot.server import selections, wire
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
    selection = selections.SelectionCache().select(snapshot, types.CLUSTER, None)
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
    selection = selections.SelectionCache().select(snapshot, types.CLUSTER, None)
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
    cache = selections.SelectionCache()
    selection = cache.select(snapshot, types.ENDPOINT, frozenset({"b", "missing"}))
    assert selection.resource_names == ["b"]
    want = wire.encode_resources([snapshot.resources(types.ENDPOINT)["b"].body])
    assert selection.payload == want
    # Nothing subscribed exists: an empty (but valid) resources part.
    assert cache.select(snapshot, types.ENDPOINT, frozenset({"missing"})).payload == b""


def test_selections_are_shared_and_content_tracks_subscribed_versions() -> None:
    cache = selections.SelectionCache()
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
    cache = selections.SelectionCache(max_entries=3)
    snapshot = base_snapshot()
    for name in ("a", "b", "c", "d", "e"):
        cache.select(snapshot, types.ENDPOINT, frozenset({name}))
    assert len(cache) == 3


def test_selection_cache_bounds_encoded_bytes_and_keeps_working_after_eviction() -> None:
    snapshot = base_snapshot()
    one_payload = len(selections.SelectionCache().select(snapshot, types.CLUSTER, None).payload)
    cache = selections.SelectionCache(max_bytes=one_payload + 1)
    first = cache.select(snapshot, types.CLUSTER, None)
    assert first.payload and cache.encoded_bytes == one_payload
    second = cache.select(snapshot, types.CLUSTER, frozenset({"a", "b"}))
    assert second.payload == first.payload  # the same two clusters
    # Over budget: the older entry went, the newest stays; the evicted one still works.
    assert len(cache) == 1 and cache.encoded_bytes == one_payload
    assert cache.select(snapshot, types.CLUSTER, frozenset({"a", "b"})) is second
    assert first.payload == second.payload


# -- delta ----------------------------------------------------------------------------------------


def expected_delta(
    version: str,
    type_url: str,
    nonce: str,
    resources: list[Resource],
    removed: list[str],
    identifier: str = "",
) -> discovery_pb2.DeltaDiscoveryResponse:
    message = discovery_pb2.DeltaDiscoveryResponse(
        system_version_info=version, type_url=type_url, nonce=nonce, removed_resources=removed
    )
    for r in resources:
        message.resources.append(
            discovery_pb2.Resource(name=r.name, version=r.version, resource=any_pb2.Any.FromString(r.body))
        )
    if identifier:
        message.control_plane.CopyFrom(base_pb2.ControlPlane(identifier=identifier))
    return message


def test_delta_response_bytes_parse_to_the_expected_message_and_match_protobuf() -> None:
    snapshot = make_snapshot("v", clusters=[cluster("a"), cluster("x" * 20_000)])
    resources = list(snapshot.resources(types.CLUSTER).values())
    cache = selections.DeltaResourceCache()
    data = wire.delta_discovery_response(
        system_version_info=snapshot.type_version(types.CLUSTER),
        resources=b"".join(cache.encoded(types.CLUSTER, r) for r in resources),
        type_url=types.CLUSTER,
        nonce="42",
        removed=["gone", "é-ü"],
        control_plane=wire.control_plane("pilot-0", delta=True),
    )
    want = expected_delta(
        snapshot.type_version(types.CLUSTER), types.CLUSTER, "42", resources, ["gone", "é-ü"], "pilot-0"
    )
    parsed = discovery_pb2.DeltaDiscoveryResponse.FromString(data)
    assert parsed == want
    assert data == want.SerializeToString(deterministic=True)
    assert [(r.name, cluster_pb2.Cluster.FromString(r.resource.value).name) for r in parsed.resources] == [
        ("a", "a"),
        ("x" * 20_000, "x" * 20_000),
    ]


def test_empty_delta_response_is_just_its_version_type_and_nonce() -> None:
    data = wire.delta_discovery_response(
        system_version_info="", resources=b"", type_url=types.ROUTE, nonce="1"
    )
    assert data == discovery_pb2.DeltaDiscoveryResponse(type_url=types.ROUTE, nonce="1").SerializeToString()
    assert wire.control_plane("", delta=True) == b""


def test_delta_resources_are_encoded_once_per_name_and_version_and_bounded() -> None:
    one, two = base_snapshot("v1"), base_snapshot("v2")  # the same clusters, built twice
    a1, a2 = one.resources(types.CLUSTER)["a"], two.resources(types.CLUSTER)["a"]
    assert a1 is not a2 and a1.version == a2.version
    cache = selections.DeltaResourceCache(max_entries=2)
    first = cache.encoded(types.CLUSTER, a1)
    assert cache.encoded(types.CLUSTER, a2) is first and len(cache) == 1
    assert cache.encoded_bytes == len(first)
    changed = make_snapshot("v3", clusters=[cluster("a", 5000)]).resources(types.CLUSTER)["a"]
    assert cache.encoded(types.CLUSTER, changed) != first
    cache.encoded(types.ENDPOINT, one.resources(types.ENDPOINT)["a"])
    assert len(cache) == 2  # the oldest went
    assert cache.encoded_bytes == sum(
        len(wire.delta_resource(r)) for r in (changed, one.resources(types.ENDPOINT)["a"])
    )


def test_everything_of_a_type_is_encoded_once_per_version_and_subscription() -> None:
    # A connect storm: every fresh proxy of a view gets the same resources; one encoding serves them.
    one, two = base_snapshot("v1"), base_snapshot("v2")  # equal content: equal type versions
    cache = selections.DeltaResourceCache()
    typed = one.by_type[types.CLUSTER]
    everything = list(typed.resources.values())
    first = cache.everything(typed, None, everything)
    assert first == b"".join(cache.encoded(types.CLUSTER, r) for r in everything)
    assert cache.everything(two.by_type[types.CLUSTER], None, everything) is first
    named = frozenset({"a"})
    assert cache.everything(typed, named, [typed.resources["a"]]) == cache.encoded(
        types.CLUSTER, typed.resources["a"]
    )
