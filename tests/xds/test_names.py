"""pilot.xds.names: Istio's names for clusters, listeners, route configurations and virtual hosts."""

from __future__ import annotations

import pytest

from pilot.xds import names


def test_outbound_cluster_names_parse_back() -> None:
    name = names.outbound_cluster("reviews.default.svc.cluster.local", 9080, "v1")
    assert name == "outbound|9080|v1|reviews.default.svc.cluster.local"
    assert names.parse_cluster(name) == names.ClusterName(
        "outbound", 9080, "v1", "reviews.default.svc.cluster.local"
    )
    assert names.outbound_cluster("ratings.default.svc.cluster.local", 80) == (
        "outbound|80||ratings.default.svc.cluster.local"
    )


@pytest.mark.parametrize(
    "name", [names.BLACKHOLE_CLUSTER, names.PASSTHROUGH_CLUSTER, "outbound|http|v1|reviews", "a|1|b"]
)
def test_other_names_are_not_istio_clusters(name: str) -> None:
    assert names.parse_cluster(name) is None


def test_listener_route_and_virtual_host_names() -> None:
    assert names.listener_name(9080) == "0.0.0.0_9080"
    assert names.listener_name(15001, "127.0.0.1") == "127.0.0.1_15001"
    assert names.route_config_name(9080) == "9080"
    assert names.virtual_host_name("reviews.default.svc.cluster.local", 9080) == (
        "reviews.default.svc.cluster.local:9080"
    )
