from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2

from pilot.translate.clusters import build_clusters
from pilot.translate.traffic_policy import HTTP_PROTOCOL_OPTIONS, MAX_UINT32
from tests import factories as f

Cluster = cluster_pb2.Cluster
REVIEWS = "reviews.default.svc.cluster.local"


def clusters(*objects, view=None) -> dict[str, Cluster]:
    return dict(build_clusters(view or f.sidecar(), f.push_context(*objects)))


def reviews_rule(**extra):
    subsets = [{"name": "v1", "labels": {"version": "v1"}}, {"name": "v2", "labels": {"version": "v2"}}]
    return f.destination_rule("reviews", host="reviews", subsets=subsets, **extra)


def test_cluster_names_per_port_and_subset() -> None:
    reviews = f.service_entry(
        "reviews",
        hosts=[REVIEWS],
        resolution="STATIC",
        ports=[{"number": 9080, "name": "http"}, {"number": 9443, "name": "tcp", "protocol": "TCP"}],
    )
    assert sorted(clusters(reviews, reviews_rule())) == [
        "BlackHoleCluster",
        "PassthroughCluster",
        f"outbound|9080|v1|{REVIEWS}",
        f"outbound|9080|v2|{REVIEWS}",
        f"outbound|9080||{REVIEWS}",
        f"outbound|9443|v1|{REVIEWS}",
        f"outbound|9443|v2|{REVIEWS}",
        f"outbound|9443||{REVIEWS}",
    ]


def test_static_is_eds_with_istio_defaults() -> None:
    cluster = clusters(f.http_service("reviews", port=9080))[f"outbound|9080||{REVIEWS}"]
    assert cluster.type == Cluster.EDS
    assert cluster.eds_cluster_config.service_name == cluster.name
    assert cluster.eds_cluster_config.eds_config.HasField("ads")
    assert cluster.connect_timeout.seconds == 10
    assert cluster.lb_policy == Cluster.LEAST_REQUEST
    (threshold,) = cluster.circuit_breakers.thresholds
    assert threshold.max_connections.value == threshold.max_requests.value == MAX_UINT32
    assert threshold.max_pending_requests.value == threshold.max_retries.value == MAX_UINT32
    assert threshold.track_remaining
    assert not cluster.HasField("outlier_detection")
    assert HTTP_PROTOCOL_OPTIONS not in cluster.typed_extension_protocol_options


def test_resolution_to_cluster_type() -> None:
    def kind(resolution: str, view=None) -> int:
        se = f.service_entry(
            "x", hosts=["x.example.com"], resolution=resolution, ports=[{"number": 80, "name": "http"}]
        )
        return clusters(se, view=view)["outbound|80||x.example.com"].type

    assert kind("STATIC") == Cluster.EDS
    assert kind("DNS") == Cluster.STRICT_DNS
    assert kind("DNS_ROUND_ROBIN") == Cluster.LOGICAL_DNS
    assert kind("NONE") == Cluster.ORIGINAL_DST
    assert kind("NONE", view=f.router()) == Cluster.EDS


def test_original_dst_is_cluster_provided() -> None:
    se = f.service_entry(
        "x", hosts=["*.example.com"], resolution="NONE", ports=[{"number": 443, "name": "tls"}]
    )
    cluster = clusters(se)["outbound|443||*.example.com"]
    assert cluster.lb_policy == Cluster.CLUSTER_PROVIDED


def test_dns_cluster_inlines_endpoints_or_the_host() -> None:
    se = f.service_entry(
        "x", hosts=["x.example.com"], resolution="DNS", ports=[{"number": 80, "name": "http"}]
    )
    cluster = clusters(se)["outbound|80||x.example.com"]
    (group,) = cluster.load_assignment.endpoints
    address = group.lb_endpoints[0].endpoint.address.socket_address
    assert (address.address, address.port_value) == ("x.example.com", 80)
    assert cluster.dns_lookup_family == Cluster.V4_ONLY and cluster.respect_dns_ttl


def test_dns_subset_without_endpoints_is_dropped() -> None:
    se = f.service_entry(
        "x",
        hosts=["x.example.com"],
        resolution="DNS",
        ports=[{"number": 80, "name": "http"}],
        endpoints=[{"address": "a.example.com", "labels": {"version": "v1"}}],
    )
    rule = f.destination_rule(
        "x",
        host="x.example.com",
        subsets=[{"name": "v1", "labels": {"version": "v1"}}, {"name": "v2", "labels": {"version": "v2"}}],
    )
    names = clusters(se, rule)
    assert "outbound|80|v1|x.example.com" in names
    assert "outbound|80|v2|x.example.com" not in names


def test_destination_rule_policy_and_subset_override() -> None:
    rule = reviews_rule(
        trafficPolicy={
            "loadBalancer": {"simple": "ROUND_ROBIN"},
            "connectionPool": {
                "tcp": {"maxConnections": 7, "connectTimeout": "1.5s"},
                "http": {"http2MaxRequests": 9, "http1MaxPendingRequests": 3, "maxRetries": 4},
            },
            "outlierDetection": {"consecutive5xxErrors": 2, "interval": "5s", "minHealthPercent": 20},
        }
    )
    rule.spec.subsets[1].traffic_policy.load_balancer.simple = rule.spec.subsets[
        1
    ].traffic_policy.load_balancer.RANDOM
    out = clusters(f.http_service("reviews", port=9080), rule)
    main = out[f"outbound|9080||{REVIEWS}"]
    assert main.lb_policy == Cluster.ROUND_ROBIN
    assert main.connect_timeout.ToMilliseconds() == 1500
    (threshold,) = main.circuit_breakers.thresholds
    assert (threshold.max_connections.value, threshold.max_requests.value) == (7, 9)
    assert (threshold.max_pending_requests.value, threshold.max_retries.value) == (3, 4)
    assert main.outlier_detection.consecutive_5xx.value == 2
    assert main.outlier_detection.enforcing_consecutive_5xx.value == 100
    assert main.common_lb_config.healthy_panic_threshold.value == 20
    v1, v2 = out[f"outbound|9080|v1|{REVIEWS}"], out[f"outbound|9080|v2|{REVIEWS}"]
    assert v1.lb_policy == Cluster.ROUND_ROBIN
    assert v2.lb_policy == Cluster.RANDOM  # the subset's load balancer replaces the rule's ...
    assert v2.circuit_breakers.thresholds[0].max_connections.value == 7  # ... and the rest is inherited


def test_port_level_settings() -> None:
    rule = f.destination_rule(
        "reviews",
        host="reviews",
        trafficPolicy={
            "loadBalancer": {"simple": "RANDOM"},
            "portLevelSettings": [{"port": {"number": 9080}, "loadBalancer": {"simple": "ROUND_ROBIN"}}],
        },
    )
    se = f.service_entry(
        "reviews",
        hosts=[REVIEWS],
        resolution="STATIC",
        ports=[{"number": 9080, "name": "http"}, {"number": 9090, "name": "http-b"}],
    )
    out = clusters(se, rule)
    assert out[f"outbound|9080||{REVIEWS}"].lb_policy == Cluster.ROUND_ROBIN
    assert out[f"outbound|9090||{REVIEWS}"].lb_policy == Cluster.RANDOM


def test_http2_ports_get_http2_protocol_options() -> None:
    out = clusters(f.http_service("reviews", port=9080, protocol="GRPC"))
    packed = out[f"outbound|9080||{REVIEWS}"].typed_extension_protocol_options[HTTP_PROTOCOL_OPTIONS]
    options = http_protocol_options_pb2.HttpProtocolOptions()
    assert packed.Unpack(options)
    assert options.explicit_http_config.HasField("http2_protocol_options")


def test_mesh_connect_timeout_and_passthrough_blackhole() -> None:
    out = clusters(f.http_service("reviews"), f.mesh_config(connectTimeout="3s"))
    assert out[f"outbound|80||{REVIEWS}"].connect_timeout.seconds == 3
    assert out["BlackHoleCluster"].type == Cluster.STATIC and not out["BlackHoleCluster"].HasField(
        "load_assignment"
    )
    passthrough = out["PassthroughCluster"]
    assert passthrough.type == Cluster.ORIGINAL_DST and passthrough.lb_policy == Cluster.CLUSTER_PROVIDED
    assert passthrough.connect_timeout.seconds == 3


def test_udp_ports_get_no_cluster() -> None:
    se = f.service_entry(
        "dns", hosts=["dns.example.com"], ports=[{"number": 53, "name": "udp", "protocol": "UDP"}]
    )
    assert sorted(clusters(se)) == ["BlackHoleCluster", "PassthroughCluster"]
