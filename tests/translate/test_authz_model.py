"""One AuthorizationPolicy rule → one Envoy RBAC policy, per rule shape (Istio's
pilot/pkg/security/authz/model generator tests and builder testdata, as dicts of the Envoy JSON)."""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf import json_format

from pilot._gen import security_pb2 as sec
from pilot.errors import TranslationError
from pilot.translate import authz_rules as r
from pilot.translate.authz_model import rule_policy

TRUST = r.TrustDomains(("cluster.local",))
JWT = "envoy.filters.http.jwt_authn"


def rule(spec: dict[str, Any]) -> sec.Rule:
    return json_format.ParseDict(spec, sec.Rule())


def policy(
    spec: dict[str, Any], tcp: bool = False, action: r.Action = r.ALLOW, trust: r.TrustDomains = TRUST
) -> dict[str, Any]:
    return json_format.MessageToDict(rule_policy(rule(spec), "foo", trust, tcp, action))


def principal(spec: dict[str, Any], **kw: Any) -> dict[str, Any]:
    (only,) = policy(spec, **kw)["principals"]
    return only


def permission(spec: dict[str, Any], **kw: Any) -> dict[str, Any]:
    (only,) = policy(spec, **kw)["permissions"]
    return only


def auth(matcher: dict[str, Any]) -> dict[str, Any]:
    return {"authenticated": {"principalName": matcher}}


ANY_PRINCIPAL = {"andIds": {"ids": [{"any": True}]}}
ANY_PERMISSION = {"andRules": {"rules": [{"any": True}]}}


def test_an_empty_rule_matches_everything():
    assert policy({}) == {"permissions": [ANY_PERMISSION], "principals": [ANY_PRINCIPAL]}


@pytest.mark.parametrize(
    ("value", "matcher"),
    [
        ("cluster.local/ns/foo/sa/bar", {"exact": "spiffe://cluster.local/ns/foo/sa/bar"}),
        ("cluster.local/ns/foo/*", {"prefix": "spiffe://cluster.local/ns/foo/"}),
        ("*/sa/bar", {"safeRegex": {"regex": "spiffe://.*/sa/bar"}}),
        ("*", {"safeRegex": {"regex": ".+"}}),
    ],
)
def test_principals_match_the_peer_certificate_spiffe_uri_with_istio_wildcards(value, matcher):
    assert principal({"from": [{"source": {"principals": [value]}}]}) == {
        "andIds": {"ids": [{"orIds": {"ids": [auth(matcher)]}}]}
    }


def test_not_principals_are_not_of_the_or():
    got = principal({"from": [{"source": {"notPrincipals": ["a/ns/b/sa/c", "x/ns/y/sa/z"]}}]})
    ids = got["andIds"]["ids"]
    assert ids == [
        {
            "notId": {
                "orIds": {
                    "ids": [
                        auth({"exact": "spiffe://a/ns/b/sa/c"}),
                        auth({"exact": "spiffe://x/ns/y/sa/z"}),
                    ]
                }
            }
        }
    ]


def test_cluster_local_principals_take_the_mesh_trust_domain_and_its_aliases():
    trust = r.TrustDomains(("td1", "old-td"))
    got = principal(
        {"from": [{"source": {"principals": ["cluster.local/ns/a/sa/b", "other/ns/a/sa/b"]}}]}, trust=trust
    )
    exacts = [i["authenticated"]["principalName"]["exact"] for i in got["andIds"]["ids"][0]["orIds"]["ids"]]
    assert exacts == ["spiffe://td1/ns/a/sa/b", "spiffe://old-td/ns/a/sa/b", "spiffe://other/ns/a/sa/b"]


def test_namespaces_ip_blocks_and_remote_ip_blocks_in_istios_and_order():
    got = principal(
        {
            "from": [
                {
                    "source": {
                        "ipBlocks": ["10.0.0.1", "10.1.0.0/16"],
                        "remoteIpBlocks": ["2001:db8::/32"],
                        "namespaces": ["ns-*"],
                        "principals": ["td/ns/a/sa/b"],
                    }
                }
            ]
        }
    )
    ids = got["andIds"]["ids"]
    assert [next(iter(i["orIds"]["ids"][0])) for i in ids] == [
        "authenticated",
        "authenticated",
        "remoteIp",
        "directRemoteIp",
    ]
    assert ids[1]["orIds"]["ids"][0] == auth({"safeRegex": {"regex": ".*/ns/ns-.*/.*"}})
    assert ids[2]["orIds"]["ids"][0] == {"remoteIp": {"addressPrefix": "2001:db8::", "prefixLen": 32}}
    assert ids[3]["orIds"]["ids"] == [
        {"directRemoteIp": {"addressPrefix": "10.0.0.1", "prefixLen": 32}},
        {"directRemoteIp": {"addressPrefix": "10.1.0.0", "prefixLen": 16}},
    ]


def _jwt(claim: str, matcher: dict[str, Any]) -> dict[str, Any]:
    return {
        "metadata": {
            "filter": JWT,
            "path": [{"key": "payload"}, {"key": claim}],
            "value": {"stringMatch": matcher},
        }
    }


ANY = {"safeRegex": {"regex": ".+"}}


@pytest.mark.parametrize(
    ("value", "iss", "sub"),
    [
        ("https://issuer.example/sub-1", {"exact": "https://issuer.example"}, {"exact": "sub-1"}),
        ("*", ANY, ANY),
        ("*/sub-1", ANY, {"exact": "sub-1"}),
        ("*.example/sub-1", {"suffix": ".example"}, {"exact": "sub-1"}),
        ("*sub", ANY, {"suffix": "sub"}),
        ("iss/*", {"exact": "iss"}, ANY),
        ("iss/su*", {"exact": "iss"}, {"prefix": "su"}),
        ("iss*", {"prefix": "iss"}, ANY),
    ],
)
def test_request_principals_match_iss_and_sub_of_the_jwt_payload(value, iss, sub):
    got = principal({"from": [{"source": {"requestPrincipals": [value]}}]})
    assert got == {"andIds": {"ids": [{"andIds": {"ids": [_jwt("iss", iss), _jwt("sub", sub)]}}]}}


def test_claims_match_a_string_or_a_list_at_the_nested_path():
    got = principal({"when": [{"key": "request.auth.claims[groups][team]", "values": ["a", "b*"]}]})
    value = {
        "orMatch": {"valueMatchers": [{"stringMatch": {"exact": "a"}}, {"stringMatch": {"prefix": "b"}}]}
    }
    assert got == {
        "andIds": {
            "ids": [
                {
                    "metadata": {
                        "filter": JWT,
                        "path": [{"key": "payload"}, {"key": "groups"}, {"key": "team"}],
                        "value": {"orMatch": {"valueMatchers": [{"listMatch": {"oneOf": value}}, value]}},
                    }
                }
            ]
        }
    }


def test_audiences_and_presenter_are_aud_and_azp():
    got = principal(
        {
            "when": [
                {"key": "request.auth.audiences", "values": ["aud1"]},
                {"key": "request.auth.presenter", "notValues": ["bad"]},
            ]
        }
    )
    aud, azp = got["andIds"]["ids"]
    assert aud["metadata"]["path"][1] == {"key": "aud"}
    assert azp["notId"]["metadata"]["path"][1] == {"key": "azp"}


@pytest.mark.parametrize(
    ("value", "header"),
    [
        ("v", {"name": "x-a", "stringMatch": {"exact": "v"}}),
        ("v*", {"name": "x-a", "stringMatch": {"prefix": "v"}}),
        ("*v", {"name": "x-a", "stringMatch": {"suffix": "v"}}),
        ("*", {"name": "x-a", "presentMatch": True}),
    ],
)
def test_request_headers(value, header):
    got = principal({"when": [{"key": "request.headers[x-a]", "values": [value]}]})
    assert got == {"andIds": {"ids": [{"orIds": {"ids": [{"header": header}]}}]}}


def test_operation_fields_in_istios_and_order_hosts_case_insensitive():
    got = permission(
        {
            "to": [
                {
                    "operation": {
                        "ports": ["8080"],
                        "paths": ["/api/*", "*.js", "/exact", "*"],
                        "methods": ["GET"],
                        "hosts": ["Example.COM"],
                    }
                }
            ]
        }
    )
    rules = got["andRules"]["rules"]
    assert rules[0] == {
        "orRules": {
            "rules": [
                {
                    "header": {
                        "name": ":authority",
                        "stringMatch": {"exact": "Example.COM", "ignoreCase": True},
                    }
                }
            ]
        }
    }
    assert rules[1] == {
        "orRules": {"rules": [{"header": {"name": ":method", "stringMatch": {"exact": "GET"}}}]}
    }
    assert [p["urlPath"]["path"] for p in rules[2]["orRules"]["rules"]] == [
        {"prefix": "/api/"},
        {"suffix": ".js"},
        {"exact": "/exact"},
        ANY,
    ]
    assert rules[3] == {"orRules": {"rules": [{"destinationPort": 8080}]}}


def test_path_templates_become_uri_template_matchers():
    got = permission({"to": [{"operation": {"paths": ["/foo/{*}/bar/{**}"]}}]})
    template = got["andRules"]["rules"][0]["orRules"]["rules"][0]["uriTemplate"]
    assert template["name"] == "uri-template"
    assert template["typedConfig"]["pathTemplate"] == "/foo/*/bar/**"  # Envoy's syntax has no braces


def test_when_destination_keys_are_anded_into_every_permission():
    got = policy(
        {
            "to": [{"operation": {"methods": ["GET"]}}, {"operation": {"methods": ["POST"]}}],
            "when": [
                {"key": "destination.port", "values": ["80"]},
                {"key": "destination.ip", "values": ["10.0.0.0/8"]},
                {"key": "connection.sni", "values": ["*.example.com"]},
                {
                    "key": "experimental.envoy.filters.network.mysql_proxy[db.table]",
                    "values": ["[update]", "x*"],
                    "notValues": ["y"],
                },
            ],
        }
    )
    assert len(got["permissions"]) == 2
    for perm in got["permissions"]:
        rules = perm["andRules"]["rules"]
        kinds = [next(iter(rule["orRules"]["rules"][0])) for rule in rules[:4]]
        assert kinds == ["header", "destinationPort", "destinationIp", "requestedServerName"]
    # Istio's extended generator: one metadata matcher for all the values, NOT of one for notValues.
    metadata, not_metadata = got["permissions"][0]["andRules"]["rules"][4:]
    assert metadata["metadata"] == {
        "filter": "envoy.filters.network.mysql_proxy",
        "path": [{"key": "db.table"}],
        "value": {
            "orMatch": {
                "valueMatchers": [
                    {"listMatch": {"oneOf": {"stringMatch": {"exact": "update"}}}},
                    {"stringMatch": {"prefix": "x"}},
                ]
            }
        },
    }
    assert not_metadata["notRule"]["metadata"]["value"] == {"stringMatch": {"exact": "y"}}


def test_service_accounts_and_trust_domains():
    got = principal(
        {"from": [{"source": {"serviceAccounts": ["sa1", "other/sa2"], "trustDomains": ["td", "*"]}}]}
    )
    accounts, domains = got["andIds"]["ids"]
    assert [i["authenticated"]["principalName"]["safeRegex"]["regex"] for i in accounts["orIds"]["ids"]] == [
        "spiffe://.+/ns/foo/(.+/|)sa/sa1(/.+)?",
        "spiffe://.+/ns/other/(.+/|)sa/sa2(/.+)?",
    ]
    assert [i["authenticated"]["principalName"]["prefix"] for i in domains["orIds"]["ids"]] == [
        "spiffe://td/",
        "spiffe://",
    ]


HTTP_ONLY_RULE = {
    "from": [{"source": {"principals": ["td/ns/a/sa/b"], "requestPrincipals": ["iss/sub"]}}],
    "to": [{"operation": {"ports": ["9000"], "methods": ["GET"]}}],
}


def test_on_tcp_an_allow_rule_with_http_only_fields_is_dropped():
    with pytest.raises(r.HttpOnlyError):
        policy(HTTP_ONLY_RULE, tcp=True, action=r.ALLOW)


def test_on_tcp_a_deny_rule_drops_only_its_http_only_conditions():
    got = policy(HTTP_ONLY_RULE, tcp=True, action=r.DENY)
    assert got["principals"] == [
        {"andIds": {"ids": [{"orIds": {"ids": [auth({"exact": "spiffe://td/ns/a/sa/b"})]}}]}}
    ]
    assert got["permissions"] == [
        {"andRules": {"rules": [{"orRules": {"rules": [{"destinationPort": 9000}]}}]}}
    ]


def test_on_tcp_a_deny_rule_of_only_http_fields_denies_everything():
    got = policy({"to": [{"operation": {"paths": ["/admin"]}}]}, tcp=True, action=r.DENY)
    assert got == {"permissions": [ANY_PERMISSION], "principals": [ANY_PRINCIPAL]}


def test_the_same_rule_on_http_keeps_every_condition():
    got = policy(HTTP_ONLY_RULE, tcp=False, action=r.ALLOW)
    assert len(got["principals"][0]["andIds"]["ids"]) == 2
    assert len(got["permissions"][0]["andRules"]["rules"]) == 2


@pytest.mark.parametrize(
    "when",
    [
        {"key": "source.ip", "values": ["not-an-ip"]},
        {"key": "destination.port", "values": ["99999"]},
        {"key": "request.headers", "values": ["x"]},
        {"key": "no.such.attribute", "values": ["x"]},
    ],
)
def test_untranslatable_values_raise(when):
    with pytest.raises(TranslationError):
        policy({"when": [when]})


def test_when_source_principal_takes_the_trust_domain_aliases_too():
    trust = r.TrustDomains(("td1", "old-td"))
    got = principal(
        {"when": [{"key": "source.principal", "notValues": ["cluster.local/ns/a/sa/b"]}]}, trust=trust
    )
    ids = got["andIds"]["ids"][0]["notId"]["orIds"]["ids"]
    assert [i["authenticated"]["principalName"]["exact"] for i in ids] == [
        "spiffe://td1/ns/a/sa/b",
        "spiffe://old-td/ns/a/sa/b",
    ]
