"""Which RequestAuthentications apply to a proxy (Istio's getConfigsForWorkload/ShouldAttachPolicy), and
where their jwt_authn filter lands: first in every inbound and gateway HTTP connection manager, nowhere
outbound."""

from __future__ import annotations

from typing import Any

import pytest
from envoy.extensions.filters.http.jwt_authn.v3 import config_pb2 as jwt_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from google.protobuf import json_format

from pilot._gen import security_pb2
from pilot.config.jwks import JwksKey, resolved_object
from pilot.config.objects import ConfigKey, ConfigObject
from pilot.translate.generators import build_listeners
from pilot.translate.policy_selection import GATEWAY_NAME_LABEL, policies_for
from pilot.translate.proxy import InterceptionMode, NodeType, ProxyView
from tests import factories as f
from tests.translate.gateway_factories import INGRESS, gw, server

GATEWAY_REF = {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "gw"}


def policy(name: str, namespace: str, **spec: Any) -> ConfigObject[security_pb2.RequestAuthentication]:
    spec.setdefault("jwtRules", [{"issuer": f"{namespace}/{name}", "jwks": '{"keys":[]}'}])
    message = json_format.ParseDict(spec, security_pb2.RequestAuthentication())
    return ConfigObject(
        ConfigKey("RequestAuthentication", namespace, name), "security.istio.io/v1", message, "t"
    )


POLICIES = [
    policy("mesh", "istio-system"),
    policy("mesh-httpbin", "istio-system", selector={"matchLabels": {"app": "httpbin"}}),
    policy("ns", "foo"),
    policy("httpbin", "foo", selector={"matchLabels": {"app": "httpbin"}}),
    policy("other-ns", "bar"),
    policy("gw", "foo", targetRef=GATEWAY_REF),
    policy("gws", "foo", targetRefs=[{**GATEWAY_REF, "name": "other"}, GATEWAY_REF]),
]


def names(namespace: str, labels: dict[str, str]) -> list[str]:
    return [p.name for p in policies_for(POLICIES, namespace, labels, "istio-system")]


def test_own_namespace_first_then_the_root_namespace_by_selector() -> None:
    assert names("foo", {}) == ["ns", "mesh"]
    assert names("foo", {"app": "httpbin", "version": "v1"}) == ["ns", "httpbin", "mesh", "mesh-httpbin"]
    assert names("baz", {"app": "httpbin"}) == ["mesh", "mesh-httpbin"]
    assert names("istio-system", {}) == ["mesh"]


def test_target_refs_select_only_a_gateway_api_gateway_of_their_namespace() -> None:
    gateway = {GATEWAY_NAME_LABEL: "gw", "app": "httpbin"}
    assert names("foo", gateway) == ["ns", "httpbin", "gw", "gws", "mesh", "mesh-httpbin"]
    assert names("foo", {GATEWAY_NAME_LABEL: "another"}) == ["ns", "mesh"]
    assert names("bar", {GATEWAY_NAME_LABEL: "gw"}) == ["other-ns", "mesh"]


WAYPOINT_REFS = [
    {"kind": "Service", "name": "httpbin"},
    {"group": "networking.istio.io", "kind": "ServiceEntry", "name": "httpbin"},
    {"group": "gateway.networking.k8s.io", "kind": "GatewayClass", "name": "istio-waypoint"},
]


@pytest.mark.parametrize("ref", WAYPOINT_REFS)
@pytest.mark.parametrize("namespace", ["foo", "istio-system"])
def test_waypoint_targets_select_no_sidecar_and_no_gateway(ref: dict[str, str], namespace: str) -> None:
    """Istio attaches Service, ServiceEntry and GatewayClass targetRefs to waypoints only; pilot
    serves none."""
    waypoint_only = [policy("waypoint", namespace, targetRefs=[ref])]
    for labels in (
        {},
        {"app": "httpbin"},
        {GATEWAY_NAME_LABEL: "gw"},
        {GATEWAY_NAME_LABEL: "istio-waypoint"},
    ):
        for workload_namespace in ("foo", "istio-system"):
            assert policies_for(waypoint_only, workload_namespace, labels, "istio-system") == []


def test_a_gateway_target_needs_the_gateway_api_group_and_the_policy_namespace() -> None:
    gateway = {GATEWAY_NAME_LABEL: "gw"}
    core = [policy("core", "foo", targetRef={"kind": "Gateway", "name": "gw"})]
    assert policies_for(core, "foo", gateway, "istio-system") == []
    other = [policy("elsewhere", "foo", targetRef={**GATEWAY_REF, "namespace": "bar"})]
    assert policies_for(other, "foo", gateway, "istio-system") == []
    mixed = [policy("mixed", "foo", targetRefs=[WAYPOINT_REFS[0], GATEWAY_REF])]
    assert [p.name for p in policies_for(mixed, "foo", gateway, "istio-system")] == ["mixed"]


def test_authorization_policies_take_the_root_namespace_first() -> None:
    """ListAuthorizationPolicies looks up [root, namespace]; getConfigsForWorkload the other way."""
    found = policies_for(POLICIES, "foo", {"app": "httpbin"}, "istio-system", root_first=True)
    assert [p.name for p in found] == ["mesh", "mesh-httpbin", "ns", "httpbin"]


def test_peer_authentication_is_selected_by_its_selector_alone() -> None:
    def peer(name: str, namespace: str, **spec: Any) -> ConfigObject[security_pb2.PeerAuthentication]:
        message = json_format.ParseDict(spec, security_pb2.PeerAuthentication())
        return ConfigObject(
            ConfigKey("PeerAuthentication", namespace, name), "security.istio.io/v1", message, "t"
        )

    peers = [peer("mesh", "istio-system"), peer("app", "foo", selector={"matchLabels": {"app": "httpbin"}})]
    assert [p.name for p in policies_for(peers, "foo", {"app": "httpbin"}, "istio-system")] == ["app", "mesh"]
    gateway = {GATEWAY_NAME_LABEL: "gw"}
    assert [p.name for p in policies_for(peers, "foo", gateway, "istio-system")] == ["mesh"]


def rule(issuer: str) -> dict[str, Any]:
    return {"issuer": issuer, "jwksUri": "https://idp.test/jwks.json"}


def http_filters(listener: Any) -> list[list[str]]:
    """The HTTP filter names of each HTTP connection manager of a listener."""
    out = []
    for chain in listener.filter_chains:
        for network_filter in chain.filters:
            manager = hcm_pb2.HttpConnectionManager()
            if network_filter.typed_config.Unpack(manager):
                out.append([h.name for h in manager.http_filters])
    return out


def jwt_config(listener: Any) -> jwt_pb2.JwtAuthentication:
    chain = next(
        c for c in listener.filter_chains if any(f.name.endswith("connection_manager") for f in c.filters)
    )
    manager = hcm_pb2.HttpConnectionManager()
    assert chain.filters[0].typed_config.Unpack(manager)
    config = jwt_pb2.JwtAuthentication()
    assert manager.http_filters[0].typed_config.Unpack(config)
    return config


JWT, FAULT, CORS, ROUTER = (
    "envoy.filters.http.jwt_authn",
    "envoy.filters.http.fault",
    "envoy.filters.http.cors",
    "envoy.filters.http.router",
)


def test_sidecar_inbound_chains_get_jwt_authn_first_and_outbound_none() -> None:
    keys = resolved_object_for("https://idp.test/jwks.json", "default-issuer")
    context = f.push_context(
        f.http_service("reviews"), policy("jwt", "default", jwtRules=[rule("default-issuer")]), keys
    )
    view = ProxyView(NodeType.SIDECAR, "default", InterceptionMode.REDIRECT)
    out = dict(build_listeners(view, context))
    inbound = http_filters(out["virtualInbound"])
    assert inbound and all(filters == [JWT, FAULT, CORS, ROUTER] for filters in inbound)
    assert all(
        JWT not in filters
        for name, lst in out.items()
        if name != "virtualInbound"
        for filters in http_filters(lst)
    )
    provider = jwt_config(out["virtualInbound"]).providers["origins-0"]
    assert provider.local_jwks.inline_string == '{"keys":[{"kid":"fetched"}]}'
    assert not provider.clear_route_cache
    # A sidecar of another namespace is not selected.
    other = dict(build_listeners(ProxyView(NodeType.SIDECAR, "other", InterceptionMode.REDIRECT), context))
    assert all(JWT not in filters for filters in http_filters(other["virtualInbound"]))


def resolved_object_for(uri: str, issuer: str) -> ConfigObject:
    return resolved_object(JwksKey(uri, issuer), '{"keys":[{"kid":"fetched"}]}')


def test_gateway_connection_managers_get_jwt_authn_first_clearing_the_route_cache() -> None:
    context_objects = [
        gw("ingress", server(80), server(443, "HTTPS", tls={"mode": "SIMPLE", "credentialName": "c"})),
        policy(
            "ingress-jwt",
            "istio-system",
            selector={"matchLabels": {"istio": "ingressgateway"}},
            jwtRules=[rule("gw-issuer")],
        ),
    ]
    out = dict(build_listeners(INGRESS, f.push_context(*context_objects)))
    for name in ("0.0.0.0_80", "0.0.0.0_443"):
        assert http_filters(out[name]) == [[JWT, FAULT, CORS, ROUTER]], name
        assert jwt_config(out[name]).providers["origins-0"].clear_route_cache
    # Keys never fetched: istiod's public-only set, so every token fails.
    assert "0xObjM0UvS" in jwt_config(out["0.0.0.0_80"]).providers["origins-0"].local_jwks.inline_string
