"""Where the RBAC filters go: after jwt_authn and before the router in an inbound connection manager,
right before tcp_proxy on a TCP chain, nowhere on outbound listeners or the loop guard chain."""

from __future__ import annotations

from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from envoy.extensions.filters.network.rbac.v3 import rbac_pb2 as network_rbac_pb2

from pilot.config.protocols import Protocol
from pilot.translate import authz_policies as ap
from pilot.translate import authz_rules as r
from pilot.translate import inbound
from pilot.translate.authz_listeners import AuthorizationFilters
from tests.translate.test_authz_policies import authz

TRUST = r.TrustDomains(("cluster.local",))


def _listener(direction: int = base_pb2.INBOUND) -> listener_pb2.Listener:
    http = inbound.port_chains(inbound.InboundPort(8080, 80, "h.foo.svc.cluster.local", Protocol.HTTP))
    tcp = inbound.port_chains(inbound.InboundPort(9000, 9000, "t.foo.svc.cluster.local", Protocol.TCP))
    return listener_pb2.Listener(
        name="virtualInbound",
        traffic_direction=direction,
        filter_chains=[inbound.blackhole_chain(), *http, *tcp],
    )


def _filters(*specs: dict) -> AuthorizationFilters:
    policies = [authz(f"p{i}", spec) for i, spec in enumerate(specs)]
    return AuthorizationFilters(ap.applicable(policies, "foo", (), "istio-system"), TRUST)


def _http_filter_names(chain) -> list[str]:
    manager = hcm_pb2.HttpConnectionManager()
    chain.filters[0].typed_config.Unpack(manager)
    return [f.name for f in manager.http_filters]


def test_http_chains_get_rbac_before_fault_cors_and_router_in_action_order():
    listener = _listener()
    _filters({"action": "DENY", "rules": [{}]}, {}).apply([listener])
    blackhole, http, tcp = listener.filter_chains
    assert [f.name for f in blackhole.filters] == ["envoy.filters.network.tcp_proxy"]
    assert _http_filter_names(http) == [
        "envoy.filters.http.rbac",
        "envoy.filters.http.rbac",
        "envoy.filters.http.fault",
        "envoy.filters.http.cors",
        "envoy.filters.http.router",
    ]
    assert [f.name for f in tcp.filters] == [
        "envoy.filters.network.rbac",
        "envoy.filters.network.rbac",
        "envoy.filters.network.tcp_proxy",
    ]
    config = network_rbac_pb2.RBAC()
    tcp.filters[0].typed_config.Unpack(config)
    assert config.stat_prefix == "tcp."
    assert config.rules.action == r.DENY


def test_rbac_goes_after_jwt_authn():
    listener = _listener()
    http = listener.filter_chains[1]
    manager = hcm_pb2.HttpConnectionManager()
    http.filters[0].typed_config.Unpack(manager)
    manager.http_filters.insert(0, hcm_pb2.HttpFilter(name="envoy.filters.http.jwt_authn"))
    http.filters[0].typed_config.Pack(manager)
    _filters({}).apply([listener])
    assert _http_filter_names(listener.filter_chains[1])[:2] == [
        "envoy.filters.http.jwt_authn",
        "envoy.filters.http.rbac",
    ]


def test_outbound_listeners_and_proxies_without_policies_are_untouched():
    outbound = _listener(base_pb2.OUTBOUND)
    before = outbound.SerializeToString()
    _filters({}).apply([outbound])
    assert outbound.SerializeToString() == before
    plain = _listener()
    before = plain.SerializeToString()
    _filters().apply([plain])
    assert plain.SerializeToString() == before


def test_router_listeners_take_them_whatever_their_direction():
    gateway = _listener(base_pb2.UNSPECIFIED)
    _filters({}).apply([gateway], inbound_only=False)
    assert "envoy.filters.http.rbac" in _http_filter_names(gateway.filter_chains[1])
