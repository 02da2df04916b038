"""AuthorizationPolicy on proxyless gRPC servers: the RBAC filters of the server listeners
(Istio's grpcgen ``buildInboundFilterChain``), and what gRPC cannot evaluate failing closed."""

from __future__ import annotations

import re
from typing import Any

from envoy.extensions.filters.http.rbac.v3 import rbac_pb2 as http_rbac_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from google.protobuf import json_format

from pilot.translate import authz_rules as r
from pilot.translate import grpc_listeners, grpc_rbac_support, views
from pilot.translate.context import PushContext
from pilot.translate.grpc_authz import ALLOW_FILTER, DENY_FILTER
from pilot.translate.listeners import ROUTER_FILTER
from pilot.translate.proxy import Proxy
from pilot.xds import types
from tests import factories as f
from tests.translate.test_authz_policies import authz
from tests.translate.test_grpc_translate import generated, reviews

SERVER = f"{grpc_listeners.SERVER_LISTENER_PREFIX}0.0.0.0:9080"
CLIENT = "cluster.local/ns/default/sa/client"


def policy(name: str, spec: dict[str, Any], **annotations: str):  # noqa: ANN201
    return authz(name, spec, "default", annotations)


def _paths(*paths: str) -> list[dict[str, Any]]:
    """A permission of Istio's shape for ``paths`` (hosts, methods, paths, ports, when ANDed)."""
    ors = [{"urlPath": {"path": {"exact": p}}} for p in paths]
    return [{"andRules": {"rules": [{"orRules": {"rules": ors}}]}}]


def server_filters(*policies) -> list[tuple[str, dict[str, Any]]]:  # noqa: ANN002
    """(name, RBAC config as JSON) of the server listener's HTTP filters, the router last."""
    context: PushContext = f.push_context(*reviews(), *policies)
    proxy = Proxy.from_node("sidecar~10.0.0.1~r.default~default.svc.cluster.local", {"GENERATOR": "grpc"})
    listeners = generated(context, views.view_of(proxy, context))[types.LISTENER]
    managers = []
    for name in (SERVER, f"{grpc_listeners.SERVER_LISTENER_PREFIX}[::1]:9080"):
        manager = hcm_pb2.HttpConnectionManager()
        listeners[name].filter_chains[0].filters[0].typed_config.Unpack(manager)
        managers.append(manager)
    assert managers[0] == managers[1]  # every address of the port gets the same filters
    *rbac, router = managers[0].http_filters
    assert router.name == ROUTER_FILTER
    out = []
    for http_filter in rbac:
        config = http_rbac_pb2.RBAC()
        assert http_filter.typed_config.Unpack(config)
        out.append((http_filter.name, json_format.MessageToDict(config.rules)))
    return out


def test_no_policy_only_the_router() -> None:
    assert server_filters() == []


def test_deny_before_allow_with_the_peer_certificates_uri_san() -> None:
    allow = policy("allow-client", {"rules": [{"from": [{"source": {"principals": [CLIENT]}}]}]})
    deny = policy(
        "deny-peer",
        {"action": "DENY", "rules": [{"to": [{"operation": {"paths": ["/pilot.test.Echo/Peer"]}}]}]},
    )
    (deny_name, deny_rules), (allow_name, allow_rules) = server_filters(allow, deny)
    assert (deny_name, allow_name) == (DENY_FILTER, ALLOW_FILTER)
    assert deny_rules == {
        "action": "DENY",
        "policies": {
            "ns[default]-policy[deny-peer]-rule[0]": {
                "permissions": [
                    {
                        "andRules": {
                            "rules": [
                                {
                                    "orRules": {
                                        "rules": [{"urlPath": {"path": {"exact": "/pilot.test.Echo/Peer"}}}]
                                    }
                                }
                            ]
                        }
                    }
                ],
                "principals": [{"andIds": {"ids": [{"any": True}]}}],
            }
        },
    }
    assert allow_rules["policies"]["ns[default]-policy[allow-client]-rule[0]"]["principals"] == [
        {
            "andIds": {
                "ids": [
                    {
                        "orIds": {
                            "ids": [{"authenticated": {"principalName": {"exact": f"spiffe://{CLIENT}"}}}]
                        }
                    }
                ]
            }
        }
    ]
    assert "action" not in allow_rules  # ALLOW, the default


def test_custom_and_audit_are_not_sent() -> None:
    custom = policy("ext", {"action": "CUSTOM", "provider": {"name": "opa"}, "rules": [{}]})
    audit = policy("audit", {"action": "AUDIT", "rules": [{}]})
    assert server_filters(custom, audit) == []


def test_allow_nothing_denies_everything() -> None:
    [(name, rules)] = server_filters(policy("allow-nothing", {}))
    assert name == ALLOW_FILTER
    assert rules["policies"]["ns[default]-policy[allow-nothing]-rule[0]"]["principals"] == [
        {"notId": {"any": True}}
    ]


def test_an_allow_rule_grpc_cannot_evaluate_is_dropped() -> None:
    """A JWT request principal is Envoy metadata, which gRPC never matches (and a NOT of it always
    would): the rule is dropped, the others stay, and an allow with no rule left allows nothing."""
    jwt = {"from": [{"source": {"notRequestPrincipals": ["issuer/sub"]}}]}
    client = {"from": [{"source": {"principals": [CLIENT]}}]}
    [(_, rules)] = server_filters(policy("allow", {"rules": [jwt, client]}))
    assert list(rules["policies"]) == ["ns[default]-policy[allow]-rule[1]"]
    [(_, only_jwt)] = server_filters(policy("allow", {"rules": [jwt]}))
    assert only_jwt == {}  # an ALLOW filter without policies: nothing is allowed


def test_a_deny_condition_grpc_cannot_evaluate_widens_the_deny() -> None:
    """DENY from a request principal to a path: gRPC cannot see the principal, so every caller of
    the path is denied (Istio's grpcgen would send a metadata matcher that never denies)."""
    spec = {
        "action": "DENY",
        "rules": [
            {
                "from": [{"source": {"requestPrincipals": ["issuer/sub"]}}],
                "to": [{"operation": {"paths": ["/pilot.test.Echo/Who"]}}],
                "when": [{"key": "connection.sni", "values": ["x.example"]}],
            }
        ],
    }
    [(name, rules)] = server_filters(policy("deny", spec))
    assert name == DENY_FILTER
    [built] = rules["policies"].values()
    assert built["principals"] == [{"andIds": {"ids": [{"any": True}]}}]
    assert built["permissions"] == [
        {
            "andRules": {
                "rules": [{"orRules": {"rules": [{"urlPath": {"path": {"exact": "/pilot.test.Echo/Who"}}}]}}]
            }
        }
    ]


def test_grpc_headers_would_be_nacked_so_they_are_left_out() -> None:
    header = {"when": [{"key": "request.headers[grpc-timeout]", "values": ["1S"]}]}
    plain = {"to": [{"operation": {"methods": ["POST"]}}]}
    [(_, rules)] = server_filters(policy("allow", {"rules": [header, plain]}))
    assert list(rules["policies"]) == ["ns[default]-policy[allow]-rule[1]"]


def test_path_templates_are_sent_as_envoys_regex() -> None:
    """gRPC NACKs ``uri_template``; the template goes as the expression Envoy compiles it to."""
    spec = {"rules": [{"to": [{"operation": {"paths": ["/{*}/Who", "/pilot.test.Echo/{**}"]}}]}]}
    [(_, rules)] = server_filters(policy("allow", spec))
    [built] = rules["policies"].values()
    [ors] = built["permissions"][0]["andRules"]["rules"]
    one, rest = (rule["urlPath"]["path"]["safeRegex"]["regex"] for rule in ors["orRules"]["rules"])
    assert re.fullmatch(one, "/pilot.test.Echo/Who") and not re.fullmatch(one, "/a/b/Who")
    assert not re.fullmatch(one, "//Who") and not re.fullmatch(one, "/pilot.test.Echo/Peer")
    assert re.fullmatch(rest, "/pilot.test.Echo/") and re.fullmatch(rest, "/pilot.test.Echo/a/b")
    assert not re.fullmatch(rest, "/pilot.test.Other/Who")


def test_dry_run_is_not_enforced() -> None:
    dry = policy("dry", {"action": "DENY", "rules": [{}]}, **{"istio.io/dry-run": "true"})
    [(name, rules)] = server_filters(dry)
    assert name == DENY_FILTER and rules == {}  # shadow rules only, which gRPC does not read


def test_what_grpc_evaluates() -> None:
    principal = r.principal_and([r.Principal(metadata={"filter": "f"}), r.principal_any()])
    assert "metadata" in (grpc_rbac_support.problem(r.Principal(not_id=principal)) or "")
    assert grpc_rbac_support.problem(r.Principal(direct_remote_ip={"address_prefix": "10.0.0.0"})) is None
    sni = r.Permission(requested_server_name={"exact": "a"})
    assert "requested_server_name" in (grpc_rbac_support.problem(r.permission_or([sni])) or "")
    assert grpc_rbac_support.problem(r.Permission(destination_port=80)) is None


def test_an_untranslatable_policy_denies_everything() -> None:
    bad = policy("bad", {"rules": [{"from": [{"source": {"ipBlocks": ["not-an-address"]}}]}]})
    (deny_name, deny_rules), (allow_name, allow_rules) = server_filters(bad)
    assert (deny_name, allow_name) == (DENY_FILTER, ALLOW_FILTER)
    assert deny_rules["policies"] == {
        "ns[default]-policy[bad]-untranslatable": {
            "permissions": [{"any": True}],
            "principals": [{"any": True}],
        }
    }
    assert allow_rules == {}
