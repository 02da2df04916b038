"""RequestAuthentication → jwt_authn, against the shapes of Istio's policy_applier_test.go
(TestJwtFilter, TestConvertToEnvoyJwtConfig)."""

from __future__ import annotations

import json
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from envoy.extensions.filters.http.jwt_authn.v3 import config_pb2 as jwt_pb2
from google.protobuf import json_format

from pilot._gen import security_pb2
from pilot.config.jwks import JwksKey
from pilot.translate import jwt_authn
from pilot.translate.jwt_authn import PUBLIC_ONLY_JWKS, jwt_authn_filter

FETCHED = '{"keys":[{"kty":"RSA","kid":"fetched"}]}'
URI = "https://secret.foo.com/oauth2/v3/certs"


def policy(*rules: dict[str, Any]) -> security_pb2.RequestAuthentication:
    return json_format.ParseDict({"jwtRules": list(rules)}, security_pb2.RequestAuthentication())


def config_of(*policies: security_pb2.RequestAuthentication, **kwargs: Any) -> dict[str, Any]:
    resolved = kwargs.pop("resolved", {JwksKey(URI, "https://secret.foo.com"): FETCHED})
    found = jwt_authn_filter(policies, resolved, **kwargs)
    assert found is not None
    assert found.name == "envoy.filters.http.jwt_authn"
    config = jwt_pb2.JwtAuthentication()
    assert found.typed_config.Unpack(config)
    return json_format.MessageToDict(config)


def or_missing(name: str) -> dict[str, Any]:
    return {"requiresAny": {"requirements": [{"providerName": name}, {"allowMissing": {}}]}}


DEFAULT_PROVIDER = {
    "payloadInMetadata": "payload",
    "normalizePayloadInMetadata": {"spaceDelimitedClaims": ["permission", "scope"]},
}


def test_no_policy_or_no_rules_gives_no_filter() -> None:
    assert jwt_authn_filter([], {}) is None
    assert jwt_authn_filter([security_pb2.RequestAuthentication()], {}) is None


def test_single_rule_allows_missing_and_inlines_the_fetched_keys() -> None:
    assert config_of(policy({"issuer": "https://secret.foo.com", "jwksUri": URI})) == {
        "providers": {
            "origins-0": {
                "issuer": "https://secret.foo.com",
                "localJwks": {"inlineString": FETCHED},
                **DEFAULT_PROVIDER,
            }
        },
        "rules": [{"match": {"prefix": "/"}, "requires": or_missing("origins-0")}],
        "bypassCorsPreflight": True,
    }


def test_multi_policies_merge_sorted_by_issuer_with_istios_or_of_and() -> None:
    """Istio's "Multi JWTs policy": an empty policy in between adds nothing; bar sorts first."""
    config = config_of(
        policy({"issuer": "https://secret.foo.com", "jwksUri": URI}),
        security_pb2.RequestAuthentication(),
        policy({"issuer": "https://secret.bar.com", "jwks": "jwks-inline-data"}),
    )
    assert config["providers"]["origins-0"]["issuer"] == "https://secret.bar.com"
    assert config["providers"]["origins-0"]["localJwks"] == {"inlineString": "jwks-inline-data"}
    assert config["providers"]["origins-1"]["localJwks"] == {"inlineString": FETCHED}
    assert config["rules"] == [
        {
            "match": {"prefix": "/"},
            "requires": {
                "requiresAny": {
                    "requirements": [
                        {"providerName": "origins-0"},
                        {"providerName": "origins-1"},
                        {"requiresAll": {"requirements": [or_missing("origins-0"), or_missing("origins-1")]}},
                    ]
                }
            },
        }
    ]


def test_every_field_of_a_rule() -> None:
    rule = {
        "issuer": "issuer-1",
        "audiences": ["a", "b"],
        "jwks": '{"keys":[]}',
        "fromHeaders": [{"name": "x-jwt", "prefix": "Bearer "}, {"name": "x-other"}],
        "fromParams": ["token"],
        "fromCookies": ["session"],
        "forwardOriginalToken": True,
        "outputPayloadToHeader": "x-payload",
        "outputClaimToHeaders": [{"header": "x-sub", "claim": "sub"}],
        "spaceDelimitedClaims": ["roles", "scope"],
        "timeout": "2s",
    }
    assert config_of(policy(rule), clear_route_cache=True)["providers"]["origins-0"] == {
        "issuer": "issuer-1",
        "audiences": ["a", "b"],
        "localJwks": {"inlineString": '{"keys":[]}'},
        "forward": True,
        "fromHeaders": [{"name": "x-jwt", "valuePrefix": "Bearer "}, {"name": "x-other"}],
        "fromParams": ["token"],
        "fromCookies": ["session"],
        "forwardPayloadHeader": "x-payload",
        "payloadInMetadata": "payload",
        "normalizePayloadInMetadata": {"spaceDelimitedClaims": ["permission", "roles", "scope"]},
        "claimToHeaders": [{"headerName": "x-sub", "claimName": "sub"}],
        "clearRouteCache": True,
    }


def test_keys_never_fetched_fail_closed_with_istios_public_only_set() -> None:
    """Istio's "JWT policy with bad Jwks URI" and "Empty Jwks URI" (discovery that failed)."""
    config = config_of(
        policy({"issuer": "https://secret.foo.com", "jwksUri": "http://xyz"}, {"issuer": "issuer-only"}),
        resolved={},
    )
    for name in ("origins-0", "origins-1"):
        assert config["providers"][name]["localJwks"] == {"inlineString": PUBLIC_ONLY_JWKS}


def test_discovery_keys_are_found_by_issuer() -> None:
    config = config_of(policy({"issuer": "issuer-only"}), resolved={JwksKey("", "issuer-only"): FETCHED})
    assert config["providers"]["origins-0"]["localJwks"] == {"inlineString": FETCHED}


def test_public_only_set_verifies_no_token() -> None:
    """The fail-closed set is a public key only, and a token signed by any other key fails on it."""
    (key,) = json.loads(PUBLIC_ONLY_JWKS)["keys"]
    assert "d" not in key and key["kty"] == "RSA"
    public = jwt.PyJWK(key).key
    mine = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = jwt.encode({"iss": "a", "sub": "b"}, mine, algorithm="RS256")
    try:
        jwt.decode(token, public, algorithms=["RS256"])
    except jwt.InvalidSignatureError:
        pass
    else:  # pragma: no cover - a bug
        raise AssertionError("a token verified against the public-only JWKS")


def test_metadata_names_are_where_rbac_reads_them() -> None:
    assert jwt_authn.JWT_AUTHN_FILTER == "envoy.filters.http.jwt_authn"
    assert jwt_authn.JWT_PAYLOAD_METADATA_KEY == "payload"
