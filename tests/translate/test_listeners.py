from __future__ import annotations

from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2

from pilot.translate.listeners import build_listeners
from pilot.translate.proxy import InterceptionMode
from pilot.translate.routes import build_routes
from tests import factories as f


def listeners(*objects, view=None):
    return dict(build_listeners(view or f.sidecar(), f.push_context(*objects)))


def manager(listener) -> hcm_pb2.HttpConnectionManager:
    out = hcm_pb2.HttpConnectionManager()
    (chain,) = listener.filter_chains
    (network_filter,) = chain.filters
    assert network_filter.name == "envoy.filters.network.http_connection_manager"
    assert network_filter.typed_config.Unpack(out)
    return out


def tcp_cluster(listener) -> str:
    out = tcp_proxy_pb2.TcpProxy()
    (chain,) = listener.filter_chains
    (network_filter,) = chain.filters
    assert network_filter.name == "envoy.filters.network.tcp_proxy"
    assert network_filter.typed_config.Unpack(out)
    return out.cluster


def test_http_listener() -> None:
    listener = listeners(f.http_service("reviews", port=9080))["0.0.0.0_9080"]
    assert listener.address.socket_address.address == "0.0.0.0"
    assert listener.address.socket_address.port_value == 9080
    assert not listener.HasField("bind_to_port")
    hcm = manager(listener)
    assert hcm.stat_prefix == "outbound_0.0.0.0_9080"
    assert hcm.rds.route_config_name == "9080"
    assert hcm.rds.config_source.HasField("ads")
    assert [h.name for h in hcm.http_filters] == [
        "envoy.filters.http.fault",
        "envoy.filters.http.cors",
        "envoy.filters.http.router",
    ]


def test_tcp_listener_first_host_wins_and_http_wins_over_tcp() -> None:
    out = listeners(
        f.http_service("b-db", port=3306, protocol="TCP"),
        f.http_service("a-db", port=3306, protocol="MYSQL"),
        f.http_service("web", port=8000, protocol="TCP"),
        f.http_service("api", port=8000, protocol="HTTP"),
    )
    assert sorted(out) == ["0.0.0.0_3306", "0.0.0.0_8000"]
    assert tcp_cluster(out["0.0.0.0_3306"]) == "outbound|3306||a-db.default.svc.cluster.local"
    assert manager(out["0.0.0.0_8000"]).rds.route_config_name == "8000"


def _filter_names(chain) -> list[str]:
    return [network_filter.name for network_filter in chain.filters]


def test_unnamed_port_is_sniffed() -> None:
    """istiod's protocol sniffing (listener.go, ListenerProtocolAuto): plaintext HTTP (the HTTP
    inspector's ALPN) to the HTTP connection manager of route ``81``; anything else to the service's
    TCP chain, which matches everything and so is the default chain."""
    se = f.service_entry("x", hosts=["x.example.com"], ports=[{"number": 81, "name": "web"}])
    listener = listeners(se)["0.0.0.0_81"]
    assert [lf.name for lf in listener.listener_filters] == [
        "envoy.filters.listener.tls_inspector",
        "envoy.filters.listener.http_inspector",
    ]
    assert listener.listener_filters_timeout.ToTimedelta().total_seconds() == 0
    assert listener.continue_on_listener_filters_timeout
    (http,) = listener.filter_chains
    assert http.filter_chain_match.transport_protocol == "raw_buffer"
    assert list(http.filter_chain_match.application_protocols) == ["http/1.1", "h2c"]
    hcm = manager(listener)
    assert hcm.rds.route_config_name == "81"
    assert _filter_names(listener.default_filter_chain) == ["envoy.filters.network.tcp_proxy"]
    tcp = tcp_proxy_pb2.TcpProxy()
    assert listener.default_filter_chain.filters[0].typed_config.Unpack(tcp)
    assert tcp.cluster == "outbound|81||x.example.com"
    # The route configuration of the port serves the sniffed service too.
    routes = dict(build_routes(f.sidecar(), f.push_context(se)))
    assert [vh.name for vh in routes["81"].virtual_hosts] == ["x.example.com:81", "allow_any"]


def test_sniffed_port_with_service_addresses() -> None:
    """pilot's listener is shared by the port's services, whose TCP chains match their addresses:
    HTTP to an address gets an HTTP chain with the same addresses, other plaintext a raw_buffer copy
    of the TCP chain (Envoy never backtracks from the most specific destination)."""
    se = f.service_entry(
        "x", hosts=["x.example.com"], addresses=["10.0.0.7"], ports=[{"number": 81, "name": "web"}]
    )
    listener = listeners(se, view=f.sidecar(mode=InterceptionMode.REDIRECT))["0.0.0.0_81"]
    matches = [
        (
            [p.address_prefix for p in chain.filter_chain_match.prefix_ranges],
            chain.filter_chain_match.transport_protocol,
            list(chain.filter_chain_match.application_protocols),
            _filter_names(chain),
        )
        for chain in listener.filter_chains
    ]
    tcp, hcm = ["envoy.filters.network.tcp_proxy"], ["envoy.filters.network.http_connection_manager"]
    assert matches == [
        (["10.0.0.7"], "", [], tcp),
        (["10.0.0.7"], "raw_buffer", [], tcp),
        ([], "raw_buffer", ["http/1.1", "h2c"], hcm),
        (["10.0.0.7"], "raw_buffer", ["http/1.1", "h2c"], hcm),
    ]
    # Intercepted: what matches no chain passes through.
    default = tcp_proxy_pb2.TcpProxy()
    assert listener.default_filter_chain.filters[0].typed_config.Unpack(default)
    assert default.cluster == "PassthroughCluster"


def test_intercepted_port_listeners_do_not_bind() -> None:
    """virtualOutbound (capture_listeners.py) hands them traffic by port; they bind nothing."""
    out = listeners(f.http_service("reviews"), view=f.sidecar(mode=InterceptionMode.REDIRECT))
    assert sorted(out) == ["0.0.0.0_80"]
    assert out["0.0.0.0_80"].bind_to_port.value is False
    assert not listeners(f.http_service("reviews"))["0.0.0.0_80"].HasField("bind_to_port")


def test_routers_get_no_listeners_yet() -> None:
    assert listeners(f.http_service("reviews"), view=f.router()) == {}


def test_http_port_is_sniffed_as_istiod_does() -> None:
    """istiod's wildcard HTTP listener (listener.go, ListenerProtocolHTTP; its 2024 config dumps):
    the HTTP chain matches plaintext HTTP/1.1 and h2c, and an intercepted proxy passes other traffic
    (raw TCP, TLS) through instead of failing it in the HTTP codec."""
    redirect = listeners(f.http_service("reviews"), view=f.sidecar(mode=InterceptionMode.REDIRECT))[
        "0.0.0.0_80"
    ]
    (chain,) = redirect.filter_chains
    assert chain.filter_chain_match.transport_protocol == "raw_buffer"
    assert list(chain.filter_chain_match.application_protocols) == ["http/1.1", "h2c"]
    assert [lf.name for lf in redirect.listener_filters] == [
        "envoy.filters.listener.tls_inspector",
        "envoy.filters.listener.http_inspector",
    ]
    assert redirect.default_filter_chain.name == "PassthroughFilterChain"
    tcp = tcp_proxy_pb2.TcpProxy()
    assert redirect.default_filter_chain.filters[0].typed_config.Unpack(tcp)
    assert tcp.cluster == "PassthroughCluster"
    # Without interception the listener binds the port itself: passing through would loop back.
    assert not listeners(f.http_service("reviews"))["0.0.0.0_80"].HasField("default_filter_chain")
