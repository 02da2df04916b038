"""The grpc view: what a proxyless gRPC application is sent (Istio's grpcgen), and what not."""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from google.protobuf.wrappers_pb2 import UInt32Value

from pilot.translate import generators, grpc_listeners, snapshot, views
from pilot.translate.listeners import FAULT_FILTER, ROUTER_FILTER
from pilot.translate.proxy import NodeType, Proxy, ProxyView
from pilot.xds import types
from tests import factories as f

HOST = "reviews.default.svc.cluster.local"
GRPC = ProxyView(NodeType.SIDECAR, "default", proxyless_grpc=True)
Cluster = cluster_pb2.Cluster


def reviews(**extra_dr):  # noqa: ANN003, ANN201
    return [
        f.http_service(
            "reviews",
            port=9080,
            protocol="GRPC",
            endpoints=[
                {"address": "10.0.0.1", "labels": {"version": "v1"}},
                {"address": "10.0.0.2", "labels": {"version": "v2"}, "locality": "us/east/a"},
            ],
        ),
        f.destination_rule(
            "reviews",
            host="reviews",
            subsets=[{"name": v, "labels": {"version": v}} for v in ("v1", "v2")],
            **extra_dr,
        ),
    ]


def generated(context, view=GRPC):  # noqa: ANN001, ANN201
    return {t: dict(items) for t, items in snapshot.generate_messages(view, context).items()}


def manager(listener) -> hcm_pb2.HttpConnectionManager:  # noqa: ANN001
    out = hcm_pb2.HttpConnectionManager()
    listener.api_listener.api_listener.Unpack(out)
    return out


def test_generator_grpc_metadata_makes_a_grpc_view() -> None:
    node = "sidecar~10.0.0.9~app.default~default.svc.cluster.local"
    grpc = Proxy.from_node(node, {"GENERATOR": "grpc"})
    envoy = Proxy.from_node(node, {})
    context = f.push_context(*reviews())
    assert views.view_of(grpc, context).proxyless_grpc
    assert not views.view_of(envoy, context).proxyless_grpc
    assert views.view_of(grpc, context) != views.view_of(envoy, context)
    assert str(views.view_of(grpc, context)).endswith("/grpc")


def test_api_listeners_named_host_port_and_short_names_point_at_rds() -> None:
    listeners = generated(f.push_context(*reviews()))[types.LISTENER]
    assert set(listeners) == {
        f"{HOST}:9080",
        "reviews:9080",
        "reviews.default:9080",
        "reviews.default.svc:9080",
    }
    listener = listeners[f"{HOST}:9080"]
    assert not listener.filter_chains
    hcm = manager(listener)
    assert hcm.rds.route_config_name == f"outbound|9080||{HOST}"
    assert hcm.rds.config_source.HasField("ads")
    assert [h.name for h in hcm.http_filters] == [FAULT_FILTER, ROUTER_FILTER]
    # A short name reaches the same route configuration.
    assert manager(listeners["reviews:9080"]).rds.route_config_name == f"outbound|9080||{HOST}"


def test_other_namespaces_get_no_bare_short_name() -> None:
    view = ProxyView(NodeType.SIDECAR, "other", proxyless_grpc=True)
    listeners = generated(f.push_context(*reviews()), view)[types.LISTENER]
    assert "reviews:9080" not in listeners
    assert "reviews.default:9080" in listeners


def test_server_listeners_for_the_workload_ports() -> None:
    context = f.push_context(*reviews())
    proxy = Proxy.from_node("sidecar~10.0.0.1~r.default~default.svc.cluster.local", {"GENERATOR": "grpc"})
    listeners = generated(context, views.view_of(proxy, context))[types.LISTENER]
    name = f"{grpc_listeners.SERVER_LISTENER_PREFIX}0.0.0.0:9080"
    assert name in listeners and f"{grpc_listeners.SERVER_LISTENER_PREFIX}[::]:9080" in listeners
    server = listeners[name]
    assert server.address.socket_address.port_value == 9080
    hcm = hcm_pb2.HttpConnectionManager()
    server.filter_chains[0].filters[0].typed_config.Unpack(hcm)
    [route] = hcm.route_config.virtual_hosts[0].routes
    assert route.HasField("non_forwarding_action")
    assert [h.name for h in hcm.http_filters] == [ROUTER_FILTER]


def test_routes_come_from_the_virtual_service_reshaped_for_grpc() -> None:
    context = f.push_context(
        *reviews(),
        f.virtual_service(
            "reviews",
            hosts=["reviews"],
            http=[
                {
                    "match": [{"headers": {"x-user": {"exact": "jason"}}}],
                    "fault": {"abort": {"grpcStatus": "UNAVAILABLE", "percentage": {"value": 50}}},
                    "route": [{"destination": {"host": "reviews", "subset": "v2"}}],
                },
                {
                    "route": [
                        {"destination": {"host": "reviews", "subset": "v1"}, "weight": 80},
                        {"destination": {"host": "reviews", "subset": "v2"}, "weight": 20},
                    ],
                    "timeout": "0.5s",
                    "retries": {"attempts": 3, "retryOn": "unavailable"},
                    "corsPolicy": {"allowOrigins": [{"exact": "https://a"}]},
                    "mirror": {"host": "reviews", "subset": "v1"},
                    "headers": {"request": {"set": {"x-a": "b"}}},
                },
            ],
        ),
    )
    config = generated(context)[types.ROUTE][f"outbound|9080||{HOST}"]
    [host] = config.virtual_hosts
    assert list(host.domains) == ["*"]
    jason, split = host.routes
    assert jason.match.headers[0].name == "x-user"
    assert set(jason.typed_per_filter_config) == {FAULT_FILTER}
    assert jason.route.cluster == f"outbound|9080|v2|{HOST}"
    action = split.route
    assert [(c.name, c.weight.value) for c in action.weighted_clusters.clusters] == [
        (f"outbound|9080|v1|{HOST}", 80),
        (f"outbound|9080|v2|{HOST}", 20),
    ]
    # gRFC A31: the timeout is max_stream_duration; gRPC ignores timeout and max_grpc_timeout.
    assert action.max_stream_duration.max_stream_duration.ToMilliseconds() == 500
    assert not action.max_stream_duration.HasField("grpc_timeout_header_max")
    assert not action.HasField("timeout") and not action.HasField("max_grpc_timeout")
    assert action.retry_policy == rc.RetryPolicy(retry_on="unavailable", num_retries=UInt32Value(value=3))
    # CORS would be NACKed (gRPC has no such filter); mirrors and header edits are ignored by gRPC.
    assert not split.typed_per_filter_config
    assert not action.request_mirror_policies
    assert not split.request_headers_to_add


def test_no_virtual_service_routes_to_the_default_cluster() -> None:
    config = generated(f.push_context(*reviews()))[types.ROUTE][f"outbound|9080||{HOST}"]
    [route] = config.virtual_hosts[0].routes
    assert route.route.cluster == f"outbound|9080||{HOST}"
    assert route.route.max_stream_duration.max_stream_duration.ToSeconds() == 0  # no limit


def test_clusters_are_eds_over_ads_with_subsets() -> None:
    clusters = generated(f.push_context(*reviews()))[types.CLUSTER]
    assert set(clusters) == {f"outbound|9080|{s}|{HOST}" for s in ("", "v1", "v2")}
    cluster = clusters[f"outbound|9080|v1|{HOST}"]
    assert cluster.type == Cluster.EDS
    assert cluster.eds_cluster_config.service_name == cluster.name
    assert cluster.eds_cluster_config.eds_config.HasField("ads")
    assert cluster.lb_policy == Cluster.ROUND_ROBIN
    assert not cluster.HasField("connect_timeout") and not cluster.typed_extension_protocol_options


def test_cluster_policies_grpc_supports() -> None:
    hashed = generated(
        f.push_context(
            *reviews(
                trafficPolicy={
                    "loadBalancer": {"consistentHash": {"httpHeaderName": "x-user"}},
                    "connectionPool": {"http": {"http2MaxRequests": 7}},
                    "outlierDetection": {"consecutive5xxErrors": 3},
                }
            )
        )
    )[types.CLUSTER][f"outbound|9080||{HOST}"]
    assert hashed.lb_policy == Cluster.RING_HASH
    assert hashed.ring_hash_lb_config.minimum_ring_size.value == 1024
    assert hashed.ring_hash_lb_config.hash_function == Cluster.RingHashLbConfig.XX_HASH
    assert [t.max_requests.value for t in hashed.circuit_breakers.thresholds] == [7]
    assert not hashed.HasField("outlier_detection")  # gRPC has no consecutive-error ejection
    least = generated(f.push_context(*reviews(trafficPolicy={"loadBalancer": {"simple": "LEAST_REQUEST"}})))
    assert least[types.CLUSTER][f"outbound|9080||{HOST}"].lb_policy == Cluster.LEAST_REQUEST
    maglev = generated(
        f.push_context(*reviews(trafficPolicy={"loadBalancer": {"consistentHash": {"maglev": {}}}}))
    )
    assert maglev[types.CLUSTER][f"outbound|9080||{HOST}"].lb_policy == Cluster.ROUND_ROBIN


def test_dns_services_get_no_cluster() -> None:
    context = f.push_context(
        f.http_service("ext", port=443, resolution="DNS", endpoints=[{"address": "example.com"}])
    )
    messages = generated(context)
    assert messages[types.CLUSTER] == {} and messages[types.ENDPOINT] == {}


def test_endpoints_carry_locality_and_weight() -> None:
    assignments = generated(f.push_context(*reviews()))[types.ENDPOINT]
    everyone = assignments[f"outbound|9080||{HOST}"]
    assert len(everyone.endpoints) == 2
    for group in everyone.endpoints:
        assert group.HasField("locality")  # gRPC NACKs a group without one
        assert group.load_balancing_weight.value == len(group.lb_endpoints)
    [v2] = assignments[f"outbound|9080|v2|{HOST}"].endpoints
    assert v2.locality.region == "us" and v2.locality.zone == "east"
    assert [e.endpoint.address.socket_address.address for e in v2.lb_endpoints] == ["10.0.0.2"]


def test_grpc_snapshot_is_consistent_and_separate_from_the_sidecars() -> None:
    context = f.push_context(*reviews())
    built = snapshot.build_snapshot(GRPC, context)
    assert set(built.by_type[types.LISTENER].resources) >= {f"{HOST}:9080"}
    sidecar = generators.GENERATORS[types.LISTENER].generate(f.sidecar(), context)
    assert f"{HOST}:9080" not in {name for name, _ in sidecar}
    # The consistency check reads filter chains only: check the API listeners' RDS names here.
    routes = set(built.by_type[types.ROUTE].resources)
    named = {
        manager(listener).rds.route_config_name
        for listener in generated(context)[types.LISTENER].values()
        if listener.HasField("api_listener")
    }
    assert named == routes == {f"outbound|9080||{HOST}"}
