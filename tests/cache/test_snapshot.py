"""pilot.cache.snapshot: resources serialized once as Any, content versions, and sharing with the
previous snapshot of a view."""

from __future__ import annotations

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from google.protobuf import any_pb2

from pilot.cache.snapshot import Resource, Snapshot, TypeResources, encode_any
from pilot.xds import types


def cluster(name: str, timeout_s: int = 1) -> cluster_pb2.Cluster:
    message = cluster_pb2.Cluster(name=name)
    message.connect_timeout.seconds = timeout_s
    return message


def clusters(*items: cluster_pb2.Cluster) -> list[tuple[str, cluster_pb2.Cluster]]:
    return [(c.name, c) for c in items]


@pytest.mark.parametrize("value", [b"", b"x", b"y" * 200, b"z" * 20_000])
def test_encode_any_is_what_protobuf_serializes(value: bytes) -> None:
    want = any_pb2.Any(type_url=types.CLUSTER, value=value).SerializeToString(deterministic=True)
    assert encode_any(types.CLUSTER, value) == want


def test_a_resource_is_versioned_by_content_and_unpacks_to_its_message() -> None:
    first = Resource.from_message(types.CLUSTER, "a", cluster("a"))
    assert Resource.from_message(types.CLUSTER, "a", cluster("a")).version == first.version
    assert Resource.from_message(types.CLUSTER, "a", cluster("a", 2)).version != first.version
    assert first.unpack(cluster_pb2.Cluster()) == cluster("a")


def test_an_unchanged_type_is_the_previous_object_and_unchanged_resources_are_reused() -> None:
    previous = Snapshot.from_messages("1", {types.CLUSTER: clusters(cluster("a"), cluster("b"))})
    same = Snapshot.from_messages("2", {types.CLUSTER: clusters(cluster("b"), cluster("a"))}, previous)
    assert same.by_type[types.CLUSTER] is previous.by_type[types.CLUSTER]

    changed = Snapshot.from_messages("3", {types.CLUSTER: clusters(cluster("a"), cluster("b", 5))}, previous)
    typed, before = changed.by_type[types.CLUSTER], previous.by_type[types.CLUSTER]
    assert typed.version != before.version
    assert typed.resources["a"] is before.resources["a"]
    assert typed.resources["b"] is not before.resources["b"]
    assert list(typed.resources) == ["a", "b"]


def test_type_version_changes_with_names_too() -> None:
    a = TypeResources.build(types.CLUSTER, [Resource.from_message(types.CLUSTER, "a", cluster("x"))])
    b = TypeResources.build(types.CLUSTER, [Resource.from_message(types.CLUSTER, "b", cluster("x"))])
    assert a.version != b.version


def test_kept_types_come_from_the_previous_snapshot_in_its_order() -> None:
    loads = [("a", endpoint_pb2.ClusterLoadAssignment(cluster_name="a"))]
    previous = Snapshot.from_messages("1", {types.CLUSTER: clusters(cluster("a")), types.ENDPOINT: loads})
    snapshot = Snapshot.from_messages("2", {types.ENDPOINT: loads}, previous, keep=[types.CLUSTER])
    assert snapshot.by_type[types.CLUSTER] is previous.by_type[types.CLUSTER]
    assert list(snapshot.by_type) == [types.CLUSTER, types.ENDPOINT]

    with pytest.raises(ValueError, match="needs a previous snapshot"):
        Snapshot.from_messages("2", {}, keep=[types.CLUSTER])
    with pytest.raises(ValueError, match="cannot keep"):
        Snapshot.from_messages("2", {}, previous, keep=[types.ROUTE])


def test_missing_types_read_as_empty() -> None:
    snapshot = Snapshot.from_messages("1", {types.CLUSTER: clusters(cluster("a"))})
    assert snapshot.resources(types.ROUTE) == {}
    assert snapshot.type_version(types.ROUTE) == ""


def test_endpoints_without_a_cluster_are_inconsistent() -> None:
    snapshot = Snapshot.from_messages(
        "1",
        {
            types.CLUSTER: clusters(cluster("a")),
            types.ENDPOINT: [
                (name, endpoint_pb2.ClusterLoadAssignment(cluster_name=name)) for name in ("a", "gone")
            ],
        },
    )
    assert snapshot.inconsistencies() == ["ClusterLoadAssignment 'gone' has no cluster"]
