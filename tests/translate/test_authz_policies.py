"""AuthorizationPolicies → a proxy's RBAC filters: selection, Istio's order and names, allow-nothing,
deny-all, dry-run, TCP chains, and failing closed (CUSTOM: tests/translate/test_authz_custom.py)."""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format

from pilot._gen import security_pb2 as sec
from pilot.config.objects import ConfigKey, ConfigObject
from pilot.translate import authz_policies as ap
from pilot.translate import authz_rules as r

TRUST = r.TrustDomains(("cluster.local",))
ROOT = "istio-system"


def authz(
    name: str, spec: dict[str, Any], namespace: str = "foo", annotations: dict[str, str] | None = None
) -> ConfigObject[sec.AuthorizationPolicy]:
    return ConfigObject(
        key=ConfigKey("AuthorizationPolicy", namespace, name),
        api_version="security.istio.io/v1",
        spec=json_format.ParseDict(spec, sec.AuthorizationPolicy()),
        origin="test",
        annotations=tuple(sorted((annotations or {}).items())),
    )


def filters(
    *policies: ConfigObject[sec.AuthorizationPolicy], tcp: bool = False, labels=()
) -> list[dict[str, Any]]:
    buckets = ap.applicable(policies, "foo", labels, ROOT)
    rules = ap.action_rules(buckets, TRUST, for_tcp=tcp)
    configs = ap.network_filter_configs(rules) if tcp else ap.http_filter_configs(rules)
    return [json_format.MessageToDict(c) for c in configs]


def test_no_policy_no_filter():
    assert filters() == []


def test_allow_nothing_is_one_never_matching_policy_so_everything_is_denied():
    (only,) = filters(authz("allow-nothing", {}))
    assert only == {
        "rules": {
            "policies": {
                "ns[foo]-policy[allow-nothing]-rule[0]": {
                    "permissions": [{"notRule": {"any": True}}],
                    "principals": [{"notId": {"any": True}}],
                }
            }
        },
        # Istio's: the prefix of the shadow rules' action, ALLOW's when there are none.
        "shadowRulesStatPrefix": "istio_dry_run_allow_",
    }  # action ALLOW is the default, omitted in JSON


def test_deny_all_and_allow_all():
    deny, allow = filters(
        authz("deny-all", {"action": "DENY", "rules": [{}]}), authz("allow-all", {"rules": [{}]})
    )
    assert deny["rules"]["action"] == "DENY"
    assert list(deny["rules"]["policies"]) == ["ns[foo]-policy[deny-all]-rule[0]"]
    assert list(allow["rules"]["policies"]) == ["ns[foo]-policy[allow-all]-rule[0]"]


def test_order_is_audit_deny_allow_and_names_count_rules():
    got = filters(
        authz("a", {"rules": [{}, {"to": [{"operation": {"paths": ["/x"]}}]}]}),
        authz("d", {"action": "DENY", "rules": [{}]}),
        authz("au", {"action": "AUDIT", "rules": [{}]}),
        authz("c", {"action": "CUSTOM", "provider": {"name": "ext"}, "rules": [{}]}),
    )
    # CUSTOM policies are pilot.translate.authz_custom's, placed in front of these.
    assert [f["rules"].get("action", "ALLOW") for f in got] == ["LOG", "DENY", "ALLOW"]
    assert sorted(got[2]["rules"]["policies"]) == ["ns[foo]-policy[a]-rule[0]", "ns[foo]-policy[a]-rule[1]"]


def test_selection_by_namespace_root_namespace_and_selector():
    mine = authz("mine", {"rules": [{}]})
    root = authz("root", {"rules": [{}]}, namespace=ROOT)
    other = authz("other", {"rules": [{}]}, namespace="bar")
    selected = authz("sel", {"selector": {"matchLabels": {"app": "x"}}, "rules": [{}]})
    root_selected = authz(
        "rootsel", {"selector": {"matchLabels": {"app": "y"}}, "rules": [{}]}, namespace=ROOT
    )
    (allow,) = filters(mine, root, other, selected, root_selected, labels=(("app", "x"),))
    assert sorted(allow["rules"]["policies"]) == [
        "ns[foo]-policy[mine]-rule[0]",
        "ns[foo]-policy[sel]-rule[0]",
        f"ns[{ROOT}]-policy[root]-rule[0]",
    ]


def test_target_refs_select_the_gateways_pods_only():
    ref = authz(
        "gw",
        {
            "targetRefs": [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "ingress"}],
            "rules": [{}],
        },
    )
    assert filters(ref, labels=(("app", "x"),)) == []
    assert len(filters(ref, labels=(("gateway.networking.k8s.io/gateway-name", "ingress"),))) == 1
    assert filters(ref, labels=(("gateway.networking.k8s.io/gateway-name", "other"),)) == []


def test_dry_run_goes_to_shadow_rules():
    got = filters(
        authz("dry", {"action": "DENY", "rules": [{}]}, annotations={"istio.io/dry-run": "true"}),
    )
    assert got == [
        {
            "shadowRules": {
                "action": "DENY",
                "policies": {
                    "ns[foo]-policy[dry]-rule[0]": {
                        "permissions": [{"andRules": {"rules": [{"any": True}]}}],
                        "principals": [{"andIds": {"ids": [{"any": True}]}}],
                    }
                },
            },
            "shadowRulesStatPrefix": "istio_dry_run_deny_",
        }
    ]


def test_tcp_allow_with_only_http_rules_is_an_empty_allow_that_denies_everything():
    (only,) = filters(authz("paths", {"rules": [{"to": [{"operation": {"paths": ["/a"]}}]}]}), tcp=True)
    assert only == {"rules": {}, "statPrefix": "tcp.", "shadowRulesStatPrefix": "istio_dry_run_allow_"}


def test_tcp_deny_on_http_fields_denies_everything():
    (only,) = filters(
        authz("d", {"action": "DENY", "rules": [{"to": [{"operation": {"methods": ["GET"]}}]}]}), tcp=True
    )
    policy = only["rules"]["policies"]["ns[foo]-policy[d]-rule[0]"]
    assert policy["permissions"] == [{"andRules": {"rules": [{"any": True}]}}]


def test_an_untranslatable_policy_fails_closed_even_if_it_is_a_deny():
    bad = authz("bad", {"action": "DENY", "rules": [{"when": [{"key": "source.ip", "values": ["nope"]}]}]})
    ok = authz("ok", {"rules": [{}]})
    deny, allow = filters(bad, ok)
    assert deny["rules"] == {
        "action": "DENY",
        "policies": {
            "ns[foo]-policy[bad]-untranslatable": {
                "permissions": [{"any": True}],
                "principals": [{"any": True}],
            }
        },
    }
    assert list(allow["rules"]["policies"]) == ["ns[foo]-policy[ok]-rule[0]"]


def test_an_untranslatable_allow_adds_a_deny_filter_before_the_allow():
    bad = authz("bad", {"rules": [{"to": [{"operation": {"ports": ["x"]}}]}]})
    deny, allow = filters(bad)
    assert deny["rules"]["action"] == "DENY"
    assert list(deny["rules"]["policies"]) == ["ns[foo]-policy[bad]-untranslatable"]
    assert allow["rules"].get("policies", {}) == {}
