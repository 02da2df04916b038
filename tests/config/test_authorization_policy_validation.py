"""AuthorizationPolicy validation with Istio's rules and messages (ValidateAuthorizationPolicy)."""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf import json_format

from pilot._gen import security_pb2 as sec
from pilot.config.validation.authorization_policy import (
    DENY_ON_TCP_WARNING,
    validate_authorization_policy,
)
from pilot.config.validation.common import Report


def problems(spec: dict[str, Any]) -> list[tuple[str, str, str]]:
    report = Report()
    validate_authorization_policy(
        json_format.ParseDict(spec, sec.AuthorizationPolicy()), "foo", "spec", report
    )
    return report.items


def errors(spec: dict[str, Any]) -> list[tuple[str, str]]:
    return [(path, message) for path, message, severity in problems(spec) if severity == "error"]


@pytest.mark.parametrize(
    "spec",
    [
        {},
        {"rules": [{}]},
        {
            "action": "DENY",
            "rules": [
                {"from": [{"source": {"notNamespaces": ["x"]}}], "to": [{"operation": {"ports": ["80"]}}]}
            ],
        },
        {
            "selector": {"matchLabels": {"app": "x"}},
            "rules": [
                {
                    "from": [
                        {
                            "source": {
                                "principals": ["cluster.local/ns/a/sa/b"],
                                "ipBlocks": ["10.0.0.0/8", "1.2.3.4"],
                            }
                        }
                    ],
                    "to": [{"operation": {"paths": ["/api/*", "/v1/{*}/x/{**}"], "methods": ["GET"]}}],
                    "when": [
                        {"key": "request.headers[x-a]", "values": ["v"]},
                        {"key": "request.auth.claims[groups][x]", "notValues": ["v"]},
                        {"key": "destination.port", "values": ["8080"]},
                        {
                            "key": "experimental.envoy.filters.network.mysql_proxy[db.table]",
                            "values": ["[x]"],
                        },
                    ],
                }
            ],
        },
        {
            "targetRefs": [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "gw"}],
            "rules": [{}],
        },
    ],
)
def test_valid_policies_have_no_errors(spec):
    assert errors(spec) == []


@pytest.mark.parametrize(
    ("spec", "path", "message"),
    [
        ({"action": "DENY"}, "spec.rules", "DENY action without `rules` is meaningless"),
        ({"action": "CUSTOM"}, "spec.rules", "CUSTOM action without `rules` is meaningless"),
        ({"action": "CUSTOM", "rules": [{}]}, "spec.provider.name", "`provider.name` must not be empty"),
        (
            {"provider": {"name": "x"}},
            "spec.provider",
            "`provider` must not be with non CUSTOM action, found ALLOW",
        ),
        (
            {"rules": [{"from": [{}]}]},
            "spec.rules[0].from[0]",
            "`from.source` must not be nil, found at rule 0",
        ),
        (
            {"rules": [{"from": [{"source": {}}]}]},
            "spec.rules[0].from[0].source",
            "`from.source` must not be empty",
        ),
        (
            {"rules": [{"to": [{"operation": {}}]}]},
            "spec.rules[0].to[0].operation",
            "`to.operation` must not be empty",
        ),
        (
            {"rules": [{"from": [{"source": {"ipBlocks": ["10.0.0.300"]}}]}]},
            "spec.rules[0].from[0].source.ipBlocks",
            "bad IP address (10.0.0.300)",
        ),
        (
            {"rules": [{"to": [{"operation": {"ports": ["http"]}}]}]},
            "spec.rules[0].to[0].operation.ports",
            "bad port (http)",
        ),
        (
            {"rules": [{"to": [{"operation": {"paths": ["/a/{**}/{*}"]}}]}]},
            "spec.rules[0].to[0].operation.paths",
            "{**} is not the last operator",
        ),
        (
            {"rules": [{"from": [{"source": {"principals": [""]}}]}]},
            "spec.rules[0].from[0].source.principals",
            "empty value not allowed, found in Principals",
        ),
        (
            {"rules": [{"when": [{"key": "request.headers", "values": ["x"]}]}]},
            "spec.rules[0].when[0].values",
            "invalid `value` for `key` request.headers: bad key (request.headers): should have format a[b]",
        ),
        (
            {"rules": [{"when": [{"key": "source.nope", "values": ["x"]}]}]},
            "spec.rules[0].when[0].values",
            "unknown attribute: source.nope",
        ),
        ({"rules": [{"when": [{"key": "source.ip"}]}]}, "spec.rules[0].when[0]", "at least one of `values`"),
        (
            {
                "selector": {"matchLabels": {"a": "b"}},
                "targetRef": {"kind": "Gateway", "group": "gateway.networking.k8s.io", "name": "g"},
            },
            "spec",
            "only one of targetRefs or workloadSelector can be set",
        ),
        (
            {"targetRefs": [{"kind": "Gateway", "name": "g"}]},
            "spec.targetRefs[0]",
            "targetRef must be to one of",
        ),
        (
            {"rules": [{"from": [{"source": {"serviceAccounts": ["a"], "namespaces": ["b"]}}]}]},
            "spec.rules[0].from[0].source",
            "cannot set serviceAccounts with namespaces or principals",
        ),
        (
            {
                "action": "CUSTOM",
                "provider": {"name": "p"},
                "rules": [{"from": [{"source": {"principals": ["a"]}}]}],
            },
            "spec.rules[0].from[0]",
            "From.Principals is currently not supported with CUSTOM action",
        ),
    ],
)
def test_istio_errors_name_the_field(spec, path, message):
    found = errors(spec)
    assert any(p == path and message in m for p, m in found), found


def test_a_deny_rule_of_only_http_attributes_warns_that_it_denies_tcp_ports():
    found = problems({"action": "DENY", "rules": [{"to": [{"operation": {"methods": ["GET"]}}]}]})
    assert ("spec.rules[0]", DENY_ON_TCP_WARNING, "warning") in found
    assert not [
        p
        for p in problems({"action": "DENY", "rules": [{"to": [{"operation": {"ports": ["1"]}}]}]})
        if p[2] == "warning"
    ]


@pytest.mark.parametrize(
    ("ref", "says"),
    [
        ({"kind": "Service", "name": "reviews"}, "only to the waypoints of 'reviews'"),
        ({"group": "networking.istio.io", "kind": "ServiceEntry", "name": "ext"}, "only to the waypoints"),
        (
            {"group": "gateway.networking.k8s.io", "kind": "GatewayClass", "name": "istio-waypoint"},
            "only to waypoints, from a policy in the root namespace",
        ),
        (
            {"group": "gateway.networking.k8s.io", "kind": "GatewayClass", "name": "istio"},
            "only GatewayClass 'istio-waypoint'",
        ),
    ],
)
def test_waypoint_only_targets_warn_that_they_select_no_proxy(ref: dict[str, str], says: str) -> None:
    found = problems(
        {"targetRefs": [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "g"}, ref]}
    )
    assert [(path, severity) for path, _, severity in found] == [("spec.targetRefs[1]", "warning")]
    assert says in found[0][1] and "select" in found[0][1]


def test_a_gateway_target_does_not_warn() -> None:
    assert (
        problems({"targetRef": {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "g"}}) == []
    )


GATEWAY = {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "g"}


@pytest.mark.parametrize(
    ("spec", "path", "message"),
    [
        (
            {"targetRef": {**GATEWAY, "namespace": "foo"}},
            "spec.targetRef.namespace",
            "targetRef namespace must not be set; cross namespace referencing is not supported",
        ),
        (
            {"targetRef": GATEWAY, "targetRefs": [GATEWAY]},
            "spec",
            "only one of targetRefs or workloadSelector can be set",
        ),
    ],
)
def test_istio_target_reference_rules(spec: dict[str, Any], path: str, message: str) -> None:
    """validatePolicyTargetReference and validateOneOfSelectorType (pkg/config/validation), the same for
    AuthorizationPolicy and RequestAuthentication."""
    assert (path, message) in errors(spec)


def test_the_core_group_may_be_spelled_out() -> None:
    assert errors({"targetRefs": [{"group": "core", "kind": "Service", "name": "reviews"}]}) == []


def test_a_custom_policy_alone_has_no_problem():
    # Whether the mesh config defines its provider is a question between objects
    # (tests/config/test_extension_providers.py).
    assert problems({"action": "CUSTOM", "provider": {"name": "ext"}, "rules": [{}]}) == []
