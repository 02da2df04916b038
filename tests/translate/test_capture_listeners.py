"""An intercepted sidecar's capture listeners and inbound clusters: Istio's names, ports and chain
matches (ISTIO-SIDECAR-AND-SECURITY.md §2), and a real Envoy accepting every REDIRECT config."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2

from pilot.translate.generators import build_clusters, build_listeners, build_routes
from pilot.translate.proxy import InterceptionMode, ProxyView
from pilot.translate.snapshot import generate_messages, inconsistencies
from pilot.translate.targets import ServiceTarget
from tests import factories as f
from tests.translate.golden import ENVOY, envoy_validate, static_bootstrap

Cluster = cluster_pb2.Cluster

REVIEWS = "reviews.default.svc.cluster.local"
DB = "db.default.svc.cluster.local"
TARGETS = (
    ServiceTarget(REVIEWS, 9080, 8080, "HTTP"),
    ServiceTarget(DB, 3306, 3306, "TCP"),
)
REGISTRY_ONLY = f.mesh_config(outboundTrafficPolicy={"mode": "REGISTRY_ONLY"})


def redirect(*targets: ServiceTarget, mode: InterceptionMode = InterceptionMode.REDIRECT) -> ProxyView:
    return replace(f.sidecar(mode=mode), targets=tuple(sorted(targets)))


def objects():
    return (f.http_service("reviews", port=9080), f.http_service("db", port=3306, protocol="TCP"))


def listeners(view: ProxyView, *extra):
    return dict(build_listeners(view, f.push_context(*objects(), *extra)))


def clusters(view: ProxyView, *extra):
    return build_clusters(view, f.push_context(*objects(), *extra))


def tcp_cluster(chain) -> str:
    (network_filter,) = chain.filters
    out = tcp_proxy_pb2.TcpProxy()
    assert network_filter.typed_config.Unpack(out)
    assert out.stat_prefix == out.cluster
    return out.cluster


def manager(chain) -> hcm_pb2.HttpConnectionManager:
    (network_filter,) = chain.filters
    out = hcm_pb2.HttpConnectionManager()
    assert network_filter.name == "envoy.filters.network.http_connection_manager"
    assert network_filter.typed_config.Unpack(out)
    return out


def test_listener_order_is_istios() -> None:
    names = [name for name, _ in build_listeners(redirect(*TARGETS), f.push_context(*objects()))]
    assert names == ["0.0.0.0_9080", "0.0.0.0_3306", "virtualOutbound", "virtualInbound"]


def test_none_mode_gets_no_capture_listeners_or_inbound_clusters() -> None:
    view = replace(f.sidecar(), targets=TARGETS)
    assert sorted(listeners(view)) == ["0.0.0.0_3306", "0.0.0.0_9080"]
    assert not any(name.startswith("inbound|") or "Inbound" in name for name, _ in clusters(view))
    assert listeners(f.router(), *objects()) == {}


def test_virtual_outbound() -> None:
    virtual = listeners(redirect())["virtualOutbound"]
    assert virtual.address.socket_address.address == "0.0.0.0"
    assert virtual.address.socket_address.port_value == 15001
    assert virtual.use_original_dst.value and not virtual.HasField("transparent")
    assert not virtual.listener_filters and not virtual.HasField("default_filter_chain")
    blackhole, catch_all = virtual.filter_chains
    assert blackhole.name == "virtualOutbound-blackhole"
    assert blackhole.filter_chain_match.destination_port.value == 15001
    assert tcp_cluster(blackhole) == "BlackHoleCluster"
    assert catch_all.name == "virtualOutbound-catchall-tcp"
    assert not catch_all.HasField("filter_chain_match")
    assert tcp_cluster(catch_all) == "PassthroughCluster"


def test_registry_only_drops_unknown_destinations() -> None:
    virtual = listeners(redirect(mode=InterceptionMode.TPROXY), REGISTRY_ONLY)["virtualOutbound"]
    assert virtual.transparent.value
    assert tcp_cluster(virtual.filter_chains[1]) == "BlackHoleCluster"
    (route_config,) = [rc for name, rc in build_routes(redirect(), f.push_context(*objects(), REGISTRY_ONLY))]
    last = route_config.virtual_hosts[-1]
    assert last.name == "block_all" and last.routes[0].direct_response.status == 502


def test_outbound_routes_end_with_allow_any() -> None:
    (route_config,) = [rc for _, rc in build_routes(redirect(), f.push_context(*objects()))]
    last = route_config.virtual_hosts[-1]
    assert last.name == "allow_any" and last.routes[0].route.cluster == "PassthroughCluster"


def test_tproxy_gets_no_virtual_inbound_yet() -> None:
    view = redirect(*TARGETS, mode=InterceptionMode.TPROXY)
    assert "virtualInbound" not in listeners(view)
    assert not any(name.startswith("inbound|") for name, _ in clusters(view))


def test_virtual_inbound_listener() -> None:
    virtual = listeners(redirect(*TARGETS))["virtualInbound"]
    assert virtual.address.socket_address.port_value == 15006
    assert virtual.traffic_direction == 1  # INBOUND
    assert virtual.continue_on_listener_filters_timeout
    assert not virtual.HasField("use_original_dst")
    original_dst, http_inspector = virtual.listener_filters
    assert original_dst.name == "envoy.filters.listener.original_dst"
    assert http_inspector.name == "envoy.filters.listener.http_inspector"
    # Only the passthrough chains (port 0) match ALPNs: the inspector is off on the target ports and
    # 15006 (a server-first TCP protocol would otherwise wait for it forever).
    ranges = [
        (rule.destination_port_range.start, rule.destination_port_range.end)
        for rule in http_inspector.filter_disabled.or_match.rules
    ]
    assert ranges == [(3306, 3307), (8080, 8081), (15006, 15007)]


def test_virtual_inbound_chains() -> None:
    chains = listeners(redirect(*TARGETS))["virtualInbound"].filter_chains
    assert [c.name for c in chains] == [
        "virtualInbound-blackhole",
        "virtualInbound-catchall-http",
        "virtualInbound",
        "0.0.0.0_3306",
        "0.0.0.0_8080",
    ]
    blackhole, catch_all_http, passthrough, db, reviews = chains
    assert blackhole.filter_chain_match.destination_port.value == 15006
    assert tcp_cluster(blackhole) == "BlackHoleCluster"

    assert catch_all_http.filter_chain_match.transport_protocol == "raw_buffer"
    assert list(catch_all_http.filter_chain_match.application_protocols) == ["http/1.1", "h2c"]
    assert not catch_all_http.filter_chain_match.HasField("destination_port")
    routes = manager(catch_all_http).route_config
    assert routes.name == "InboundPassthroughCluster"
    assert routes.virtual_hosts[0].name == "inbound|http|0"
    assert routes.virtual_hosts[0].routes[0].route.cluster == "InboundPassthroughCluster"
    assert manager(catch_all_http).stat_prefix == "InboundPassthroughCluster"

    assert passthrough.filter_chain_match.transport_protocol == "raw_buffer"
    assert not passthrough.filter_chain_match.application_protocols
    assert tcp_cluster(passthrough) == "InboundPassthroughCluster"

    assert db.filter_chain_match.destination_port.value == 3306
    assert db.filter_chain_match.transport_protocol == "raw_buffer"
    assert tcp_cluster(db) == "inbound|3306||"

    assert reviews.filter_chain_match.destination_port.value == 8080
    assert reviews.filter_chain_match.transport_protocol == "raw_buffer"
    assert not reviews.filter_chain_match.application_protocols
    hcm = manager(reviews)
    assert not hcm.HasField("rds") and hcm.stat_prefix == "inbound_0.0.0.0_8080"
    assert not hcm.use_remote_address.value
    assert hcm.forward_client_cert_details == hcm_pb2.HttpConnectionManager.APPEND_FORWARD
    assert hcm.http_filters[-1].name == "envoy.filters.http.router"
    routes = hcm.route_config
    assert routes.name == "inbound|8080||"
    (host,) = routes.virtual_hosts
    assert host.name == "inbound|http|9080" and list(host.domains) == ["*"]
    (route,) = host.routes
    assert route.name == "default" and route.match.prefix == "/"
    assert route.route.cluster == "inbound|8080||"
    assert route.route.timeout.ToNanoseconds() == 0 and route.route.HasField("timeout")
    assert route.decorator.operation == f"{REVIEWS}:9080/*"


def test_unknown_protocol_port_is_sniffed() -> None:
    chains = listeners(redirect(ServiceTarget(REVIEWS, 9080, 9080, "")))["virtualInbound"].filter_chains
    http, tcp = [c for c in chains if c.name == "0.0.0.0_9080"]
    assert list(http.filter_chain_match.application_protocols) == ["http/1.1", "h2c"]
    assert manager(http).route_config.name == "inbound|9080||"
    assert not tcp.filter_chain_match.application_protocols and tcp_cluster(tcp) == "inbound|9080||"
    http_inspector = listeners(redirect(ServiceTarget(REVIEWS, 9080, 9080, "")))[
        "virtualInbound"
    ].listener_filters[1]
    assert http_inspector.filter_disabled.destination_port_range.start == 15006


def test_shared_target_port_makes_one_chain_and_one_cluster() -> None:
    view = redirect(
        ServiceTarget(REVIEWS, 9080, 8080, "HTTP"), ServiceTarget("alias.example.com", 80, 8080, "HTTP")
    )
    chains = listeners(view)["virtualInbound"].filter_chains
    assert [c.name for c in chains].count("0.0.0.0_8080") == 1
    assert [name for name, _ in clusters(view)].count("inbound|8080||") == 1


def test_the_sidecars_own_ports_get_no_inbound_chain() -> None:
    view = redirect(
        *(ServiceTarget(REVIEWS, port, port, "HTTP") for port in (15001, 15006, 15021, 15090, 15020))
    )
    chains = [c.name for c in listeners(view)["virtualInbound"].filter_chains]
    assert [name for name in chains if name.startswith("0.0.0.0_")] == ["0.0.0.0_15020"]
    assert [name for name, _ in clusters(view) if name.startswith("inbound|")] == ["inbound|15020||"]


def test_cluster_order_and_shapes() -> None:
    found = clusters(redirect(*TARGETS))
    names = [name for name, _ in found]
    assert names[-5:] == [
        "BlackHoleCluster",
        "PassthroughCluster",
        "inbound|3306||",
        "inbound|8080||",
        "InboundPassthroughCluster",
    ]
    assert all(name.startswith("outbound|") for name in names[:-5])
    by_name = dict(found)
    for name in ("inbound|3306||", "inbound|8080||", "InboundPassthroughCluster"):
        cluster = by_name[name]
        assert cluster.type == Cluster.ORIGINAL_DST and cluster.lb_policy == Cluster.CLUSTER_PROVIDED
        assert cluster.upstream_bind_config.source_address.address == "127.0.0.6"
        assert cluster.upstream_bind_config.source_address.port_value == 0
        assert cluster.connect_timeout.ToSeconds() == 10
    for name in ("inbound|3306||", "inbound|8080||"):
        assert by_name[name].cleanup_interval.ToSeconds() == 60
    assert by_name["BlackHoleCluster"].type == Cluster.STATIC
    assert not by_name["BlackHoleCluster"].HasField("load_assignment")
    assert by_name["PassthroughCluster"].type == Cluster.ORIGINAL_DST
    assert not by_name["PassthroughCluster"].HasField("upstream_bind_config")


def test_grpc_inbound_cluster_speaks_http2() -> None:
    (chain,) = [
        c
        for c in listeners(redirect(ServiceTarget(REVIEWS, 9080, 9080, "GRPC")))[
            "virtualInbound"
        ].filter_chains
        if c.name == "0.0.0.0_9080"
    ]
    assert manager(chain).HasField("http2_protocol_options")
    assert not manager(listeners(redirect(*TARGETS))["virtualInbound"].filter_chains[-1]).HasField(
        "http2_protocol_options"
    )
    found = dict(clusters(redirect(ServiceTarget(REVIEWS, 9080, 9080, "GRPC"))))
    assert "envoy.extensions.upstreams.http.v3.HttpProtocolOptions" in (
        found["inbound|9080||"].typed_extension_protocol_options
    )
    assert not dict(clusters(redirect(*TARGETS)))["inbound|8080||"].typed_extension_protocol_options


VALIDATED = {
    "http-tcp": (redirect(*TARGETS), ()),
    "http-tcp-registry-only": (redirect(*TARGETS), (REGISTRY_ONLY,)),
    "no-targets": (redirect(), ()),
    "one-target": (redirect(TARGETS[0]), ()),
    "sniffed-grpc-mongo": (
        redirect(
            ServiceTarget(REVIEWS, 9080, 9080, ""),
            ServiceTarget(REVIEWS, 9090, 9090, "GRPC"),
            ServiceTarget(DB, 27017, 27017, "Mongo"),
            ServiceTarget(DB, 53, 53, "UDP"),
        ),
        (),
    ),
    "tproxy": (redirect(*TARGETS, mode=InterceptionMode.TPROXY), ()),
}


@pytest.mark.parametrize("case", sorted(VALIDATED))
def test_messages_are_consistent(case: str) -> None:
    view, extra = VALIDATED[case]
    assert inconsistencies(generate_messages(view, f.push_context(*objects(), *extra))) == []


@pytest.mark.skipif(not ENVOY.exists(), reason="no envoy binary in .venv")
@pytest.mark.parametrize("case", sorted(VALIDATED))
def test_envoy_accepts(case: str, tmp_path: Path) -> None:
    view, extra = VALIDATED[case]
    bootstrap = static_bootstrap(generate_messages(view, f.push_context(*objects(), *extra)))
    result = envoy_validate(bootstrap, tmp_path)
    assert result.returncode == 0, f"envoy rejected {case}:\n{result.stdout}\n{result.stderr}"
