"""CUSTOM AuthorizationPolicies: the ext_authz providers of the mesh config resolved to Envoy's
ext_authz configs (pilot.translate.ext_authz), and the RBAC shadow + ext_authz filter pairs placed in
front of the other authorization filters (pilot.translate.authz_custom, authz_listeners), as istiod's
builder makes them."""

from __future__ import annotations

from typing import Any

from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from google.protobuf import json_format
from google.protobuf.message import Message

from pilot._gen import networking_pb2 as nw
from pilot.translate import authz_custom
from pilot.translate import authz_policies as ap
from pilot.translate import authz_rules as r
from pilot.translate import ext_authz as ea
from pilot.translate.authz_listeners import AuthorizationFilters
from pilot.translate.context import PushContext
from pilot.translate.proxy import InterceptionMode
from pilot.translate.snapshot import generate_messages
from pilot.xds import types
from tests import factories
from tests.translate.test_authz_listeners import GATEWAY_AND_POLICIES, _listener, _objects
from tests.translate.test_authz_policies import authz

TRUST = r.TrustDomains(("cluster.local",))
HOST = "ext-authz.foo.svc.cluster.local"
ONLY_ADMIN = {"to": [{"operation": {"paths": ["/admin/*"]}}]}


def providers(
    *entries: dict[str, Any], services: tuple[Any, ...] | None = None
) -> dict[str, ea.ExtAuthzProvider]:
    mesh = json_format.ParseDict({"extensionProviders": list(entries)}, nw.MeshConfig())
    found = services if services is not None else (factories.http_service("ext-authz", "foo", port=8000),)
    return ea.resolve_providers(
        tuple(mesh.extension_providers), PushContext.build(factories.store_snapshot(found)).services
    )


def http_provider(name: str = "ext", **extra: Any) -> dict[str, Any]:
    return {"name": name, "envoyExtAuthzHttp": {"service": HOST, "port": 8000, **extra}}


def grpc_provider(name: str = "grpc", **extra: Any) -> dict[str, Any]:
    return {"name": name, "envoyExtAuthzGrpc": {"service": HOST, "port": 8000, **extra}}


def custom(name: str = "c", provider: str = "ext", rules: list[dict[str, Any]] | None = None, **kw: Any):
    return authz(
        name, {"action": "CUSTOM", "provider": {"name": provider}, "rules": rules or [ONLY_ADMIN]}, **kw
    )


def as_dict(message: Message) -> dict[str, Any]:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def unpacked(filters: list[Any]) -> list[tuple[str, dict[str, Any]]]:
    """(name, config) of each filter; the config as a dict without its ``@type``."""
    out = []
    for f in filters:
        config = as_dict(f.typed_config)
        config.pop("@type")
        out.append((f.name, config))
    return out


# --- providers -------------------------------------------------------------------------------


def test_an_http_provider_becomes_istios_ext_authz_http_config():
    (only,) = providers(
        http_provider(
            timeout="2s",
            pathPrefix="/check",
            failOpen=True,
            statusOnError="503",
            includeRequestHeadersInCheck=["x-user", "x-pre*", "*-suffix"],
            includeAdditionalHeadersInCheck={"x-b": "2", "x-a": "1"},
            headersToUpstreamOnAllow=["x-verdict"],
            headersToDownstreamOnDeny=["x-reason"],
            headersToDownstreamOnAllow=["x-ok"],
            includeRequestBodyInCheck={"maxRequestBytes": 1024, "allowPartialMessage": True},
        )
    ).values()
    assert only.error == "" and only.tcp is None and only.http is not None
    assert as_dict(only.http) == {
        "http_service": {
            "server_uri": {"uri": f"http://{HOST}", "cluster": f"outbound|8000||{HOST}", "timeout": "2s"},
            "path_prefix": "/check",
            "authorization_request": {
                "headers_to_add": [{"key": "x-a", "value": "1"}, {"key": "x-b", "value": "2"}]
            },
            "authorization_response": {
                "allowed_upstream_headers": {"patterns": [{"exact": "x-verdict", "ignore_case": True}]},
                "allowed_client_headers": {"patterns": [{"exact": "x-reason", "ignore_case": True}]},
                "allowed_client_headers_on_success": {"patterns": [{"exact": "x-ok", "ignore_case": True}]},
            },
        },
        "failure_mode_allow": True,
        "transport_api_version": "V3",
        "status_on_error": {"code": "ServiceUnavailable"},
        "with_request_body": {"max_request_bytes": 1024, "allow_partial_message": True},
        "allowed_headers": {
            "patterns": [
                {"exact": "x-user", "ignore_case": True},
                {"prefix": "x-pre", "ignore_case": True},
                {"suffix": "-suffix", "ignore_case": True},
            ]
        },
    }


def test_defaults_fail_closed_with_a_600s_timeout_and_no_status():
    config = providers(http_provider())["ext"].http
    assert config is not None
    assert config.http_service.server_uri.timeout.seconds == 600
    assert not config.failure_mode_allow and not config.HasField("status_on_error")


def test_a_grpc_provider_has_an_http_and_a_network_config():
    found = providers(grpc_provider(timeout="0.5s", failOpen=True, statusOnError="403"))["grpc"]
    assert found.http is not None and found.tcp is not None
    grpc = {"envoy_grpc": {"cluster_name": f"outbound|8000||{HOST}", "authority": HOST}, "timeout": "0.500s"}
    assert as_dict(found.http) == {
        "grpc_service": grpc,
        "failure_mode_allow": True,
        "transport_api_version": "V3",
        "status_on_error": {"code": "Forbidden"},
    }
    assert as_dict(found.tcp) == {
        "stat_prefix": "tcp.",
        "grpc_service": grpc,
        "failure_mode_allow": True,
        "transport_api_version": "V3",
    }


def test_the_service_is_looked_up_like_istios_lookup_cluster():
    two = (
        factories.service_entry("a", "foo", hosts=["ext.example"], ports=[{"number": 80, "name": "http"}]),
        factories.service_entry("a", "bar", hosts=["ext.example"], ports=[{"number": 80, "name": "http"}]),
    )
    bare = providers(http_provider(service="ext.example"), services=two)["ext"]
    assert "namespaces ['bar', 'foo']" in bare.error
    by_namespace = providers(http_provider(service="bar/ext.example"), services=two)["ext"]
    assert by_namespace.http is not None and not by_namespace.error
    assert by_namespace.http.http_service.server_uri.cluster == "outbound|8000||ext.example"
    unknown = providers(http_provider(service="nowhere.example"))["ext"]
    assert unknown.http is None and "no ServiceEntry or Service defines nowhere.example" in unknown.error
    wrong_namespace = providers(http_provider(service=f"bar/{HOST}"))["ext"]
    assert "no ServiceEntry or Service defines" in wrong_namespace.error


def test_providers_with_problems_and_other_kinds():
    found = providers(
        http_provider("Bad_Name"),
        http_provider("star", includeRequestHeadersInCheck=["*"]),
        {"name": "zipkin", "zipkin": {"service": "z.example", "port": 9411}},
    )
    assert set(found) == {"Bad_Name", "star"}  # a tracing provider is no ext_authz provider
    assert "invalid provider name" in found["Bad_Name"].error
    assert "single wildcard" in found["star"].error


# --- filters ---------------------------------------------------------------------------------


def test_http_a_shadow_rbac_filter_then_ext_authz_enabled_by_its_policies():
    filters = authz_custom.http_filters([custom()], TRUST, providers(http_provider()))
    (rbac_name, rbac), (ext_name, ext) = unpacked(filters)
    assert (rbac_name, ext_name) == ("envoy.filters.http.rbac", "envoy.filters.http.ext_authz")
    assert "rules" not in rbac  # enforces nothing
    assert rbac["shadow_rules_stat_prefix"] == "istio_ext_authz_"
    assert rbac["shadow_rules"]["action"] == "DENY"
    assert list(rbac["shadow_rules"]["policies"]) == ["istio-ext-authz-ext-ns[foo]-policy[c]-rule[0]"]
    assert ext["filter_enabled_metadata"] == {
        "filter": "envoy.filters.http.rbac",
        "path": [{"key": "istio_ext_authz_shadow_effective_policy_id"}],
        "value": {"string_match": {"prefix": "istio-ext-authz-ext"}},
    }
    assert ext["http_service"]["server_uri"]["cluster"] == f"outbound|8000||{HOST}"


def test_tcp_only_a_grpc_provider_has_filters():
    tcp_rule = [{"to": [{"operation": {"ports": ["9000"]}}]}]
    assert authz_custom.network_filters([custom(rules=tcp_rule)], TRUST, providers(http_provider())) == []
    filters = authz_custom.network_filters(
        [custom(provider="grpc", rules=tcp_rule)], TRUST, providers(grpc_provider())
    )
    (rbac_name, rbac), (ext_name, ext) = unpacked(filters)
    assert (rbac_name, ext_name) == ("envoy.filters.network.rbac", "envoy.filters.network.ext_authz")
    assert rbac["stat_prefix"] == "tcp." and rbac["shadow_rules_stat_prefix"] == "istio_ext_authz_"
    assert list(rbac["shadow_rules"]["policies"]) == ["istio-ext-authz-grpc-ns[foo]-policy[c]-rule[0]"]
    assert ext["filter_enabled_metadata"]["filter"] == "envoy.filters.network.rbac"
    assert ext["filter_enabled_metadata"]["value"] == {"string_match": {"prefix": "istio-ext-authz-grpc"}}
    assert ext["grpc_service"]["envoy_grpc"]["cluster_name"] == f"outbound|8000||{HOST}"


def _bad_deny(filters: list[Any]) -> list[str]:
    ((name, config),) = unpacked(filters)
    assert name in ("envoy.filters.http.rbac", "envoy.filters.network.rbac")
    assert config["rules"]["action"] == "DENY" and "shadow_rules" not in config
    return list(config["rules"]["policies"])


def test_a_missing_provider_or_service_denies_what_the_rules_match():
    bad = ["istio-ext-authz-ext-ns[foo]-policy[c]-rule[0]-deny-due-to-bad-CUSTOM-action"]
    assert _bad_deny(authz_custom.http_filters([custom()], TRUST, {})) == bad
    no_service = providers(http_provider(service="nowhere.example"))
    assert _bad_deny(authz_custom.http_filters([custom()], TRUST, no_service)) == bad
    grpc_bad = providers(grpc_provider("ext", service="nowhere.example"))
    tcp_rule = [{"to": [{"operation": {"ports": ["9000"]}}]}]
    assert _bad_deny(authz_custom.network_filters([custom(rules=tcp_rule)], TRUST, grpc_bad)) == bad


def test_two_providers_on_one_workload_deny_both():
    both = providers(http_provider("a"), http_provider("b"))
    filters = authz_custom.http_filters([custom("x", "b"), custom("y", "a")], TRUST, both)
    assert [_bad_deny([f]) for f in filters] == [
        ["istio-ext-authz-a-ns[foo]-policy[y]-rule[0]-deny-due-to-bad-CUSTOM-action"],
        ["istio-ext-authz-b-ns[foo]-policy[x]-rule[0]-deny-due-to-bad-CUSTOM-action"],
    ]


def test_a_dry_run_custom_policy_is_neither_sent_nor_enforced():
    dry = custom(annotations={"istio.io/dry-run": "true"})
    assert authz_custom.http_filters([dry], TRUST, providers(http_provider())) == []
    ((_, deny),) = unpacked(authz_custom.http_filters([dry], TRUST, {}))
    assert deny["rules"] == {"action": "DENY"}  # Istio's empty bad-provider filter: denies nothing


def _names(listener: listener_pb2.Listener) -> tuple[list[str], list[str]]:
    _, http, tcp = listener.filter_chains
    manager = hcm_pb2.HttpConnectionManager()
    http.filters[0].typed_config.Unpack(manager)
    return [f.name for f in manager.http_filters], [f.name for f in tcp.filters]


def test_custom_comes_before_jwt_authn_deny_and_allow():
    listener = _listener()
    _, http, _ = listener.filter_chains
    manager = hcm_pb2.HttpConnectionManager()
    http.filters[0].typed_config.Unpack(manager)
    manager.http_filters.insert(0, hcm_pb2.HttpFilter(name="envoy.filters.http.jwt_authn"))
    http.filters[0].typed_config.Pack(manager)
    policies = [
        authz("allow", {"rules": [{}]}),
        authz("deny", {"action": "DENY", "rules": [ONLY_ADMIN]}),
        custom(provider="grpc", rules=[{}]),
    ]
    buckets = ap.applicable(policies, "foo", (), "istio-system")
    AuthorizationFilters(buckets, TRUST, providers(grpc_provider())).apply([listener])
    http_names, tcp_names = _names(listener)
    assert http_names == [
        "envoy.filters.http.rbac",  # CUSTOM, shadow
        "envoy.filters.http.ext_authz",
        "envoy.filters.http.jwt_authn",
        "envoy.filters.http.rbac",  # DENY
        "envoy.filters.http.rbac",  # ALLOW
        "envoy.filters.http.fault",
        "envoy.filters.http.cors",
        "envoy.filters.http.router",
    ]
    assert tcp_names == [
        "envoy.filters.network.rbac",
        "envoy.filters.network.ext_authz",
        "envoy.filters.network.rbac",
        "envoy.filters.network.rbac",
        "envoy.filters.network.tcp_proxy",
    ]


MESH = {"extensionProviders": [http_provider(), grpc_provider()]}


def _listener_text(view: Any, *objects: Any) -> str:
    messages = generate_messages(view, factories.push_context(*objects))
    return str(messages[types.LISTENER])


def test_sidecars_inbound_and_routers_get_the_filters_from_the_mesh_config():
    service = factories.http_service("ext-authz", "foo", port=8000)
    mesh = factories.mesh_config(**MESH)
    policy = custom(namespace="istio-system")  # the root namespace's: every workload's
    gateway = _objects(GATEWAY_AND_POLICIES)[0]
    sidecar = factories.sidecar("default", InterceptionMode.REDIRECT)
    for view in (sidecar, factories.router()):
        text = _listener_text(view, mesh, service, policy, gateway)
        assert "envoy.filters.http.ext_authz" in text, view  # inside the packed connection managers
        assert f"outbound|8000||{HOST}" in text and "istio-ext-authz-ext-ns[istio-system]-policy[c]" in text
    without_mesh = _listener_text(sidecar, service, policy)
    assert "ext_authz" not in without_mesh and "deny-due-to-bad-CUSTOM-action" in without_mesh
