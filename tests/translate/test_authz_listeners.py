"""Where the RBAC filters go: after jwt_authn and before the router in an inbound connection manager,
right before tcp_proxy on a TCP chain, nowhere on outbound listeners or the loop guard chain."""

from __future__ import annotations

from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2 as http_rbac_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from envoy.extensions.filters.network.rbac.v3 import rbac_pb2 as network_rbac_pb2

from pilot.config.parse import parse_text
from pilot.config.protocols import Protocol
from pilot.translate import authz_policies as ap
from pilot.translate import authz_rules as r
from pilot.translate import generators, inbound
from pilot.translate.authz_listeners import AuthorizationFilters
from pilot.translate.proxy import InterceptionMode
from tests import factories
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


GATEWAY_AND_POLICIES = """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["*"]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ingress, namespace: istio-system}
spec:
  selector: {matchLabels: {istio: ingressgateway}}
  action: DENY
  rules: [{from: [{source: {remoteIpBlocks: ["192.0.2.0/24"]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: other-workload, namespace: istio-system}
spec:
  selector: {matchLabels: {app: other}}
  rules: [{}]
"""


def _objects(text: str) -> list:
    result = parse_text(text, "test.yaml")
    assert not [e for e in result.errors if e.severity == "error"], result.errors
    return list(result.objects)


def test_a_router_gets_the_policies_that_select_it_in_its_gateway_listeners():
    context = factories.push_context(*_objects(GATEWAY_AND_POLICIES))
    (name, listener), *_ = generators.build_listeners(factories.router(), context)
    (chain,) = listener.filter_chains
    manager = hcm_pb2.HttpConnectionManager()
    chain.filters[0].typed_config.Unpack(manager)
    assert [f.name for f in manager.http_filters][0] == "envoy.filters.http.rbac"
    config = http_rbac_pb2.RBAC()
    manager.http_filters[0].typed_config.Unpack(config)
    assert list(config.rules.policies) == ["ns[istio-system]-policy[ingress]-rule[0]"]
    assert config.rules.action == r.DENY


def test_a_sidecar_gets_root_namespace_policies_on_virtual_inbound_only():
    text = GATEWAY_AND_POLICIES.replace("{istio: ingressgateway}}", "{}}")  # mesh-wide
    context = factories.push_context(*_objects(text))
    view = factories.sidecar("default", InterceptionMode.REDIRECT)
    built = dict(generators.build_listeners(view, context))
    inbound = built["virtualInbound"]
    rbac = [f.name for chain in inbound.filter_chains for f in chain.filters if "rbac" in f.name]
    assert rbac == ["envoy.filters.network.rbac"]  # the passthrough TCP chain; HTTP ones inside HCMs
    outbound = [n for n, listener in built.items() if listener.traffic_direction != base_pb2.INBOUND]
    assert outbound and all("rbac" not in str(built[n]) for n in outbound)
