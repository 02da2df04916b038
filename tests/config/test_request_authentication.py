"""RequestAuthentication validation: Istio's cases (pkg/config/validation/validation_test.go,
TestValidateRequestAuthentication) and the CRD's rules, with the file, object and field of each error."""

from __future__ import annotations

import json
from typing import Any

import jwt
import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric import rsa

from pilot.config.objects import ConfigKey
from pilot.config.parse import parse_text

KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PUBLIC_JWK = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(KEY.public_key()))
PRIVATE_JWK = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(KEY))
URI = "https://foo.com/cert"


def problems(spec: dict[str, Any], namespace: str = "foo") -> set[tuple[str, str, str]]:
    document = {
        "apiVersion": "security.istio.io/v1",
        "kind": "RequestAuthentication",
        "metadata": {"name": "jwt", "namespace": namespace},
        "spec": spec,
    }
    result = parse_text(yaml.safe_dump(document), "policies.yaml")
    for error in result.errors:
        assert error.origin == "policies.yaml" and error.key == ConfigKey(
            "RequestAuthentication", namespace, "jwt"
        )
    return {(e.severity, e.path, e.message) for e in result.errors}


def errors(spec: dict[str, Any]) -> set[tuple[str, str]]:
    return {(path, message) for severity, path, message in problems(spec) if severity == "error"}


def rule(**fields: Any) -> dict[str, Any]:
    return {"jwtRules": [{"issuer": "foo.com", **fields}]}


VALID = [
    ("empty spec", {}),
    ("selector", {"selector": {"matchLabels": {"app": "httpbin"}}, **rule(jwksUri=URI)}),
    ("jwksUri without issuer", {"jwtRules": [{"jwksUri": URI}]}),
    ("issuer only (OpenID discovery)", {"jwtRules": [{"issuer": "https://accounts.google.com"}]}),
    (
        "good targetRef",
        {"targetRef": {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "gw"}, **rule()},
    ),
    (
        "every location and output",
        rule(
            jwksUri="https://foo.com:8443/cert",
            audiences=["a"],
            fromHeaders=[{"name": "x-jwt", "prefix": "Bearer "}],
            fromParams=["token"],
            fromCookies=["session"],
            outputPayloadToHeader="x-payload",
            outputClaimToHeaders=[{"header": "x-sub", "claim": "sub"}],
            forwardOriginalToken=True,
            timeout="1.5s",
            spaceDelimitedClaims=["roles"],
        ),
    ),
    ("inline jwks", rule(jwks=json.dumps({"keys": [PUBLIC_JWK]}))),
    ("inline single jwk", rule(jwks=json.dumps(PUBLIC_JWK))),
    ("inline empty set", rule(jwks='{"keys": []}')),
]


@pytest.mark.parametrize(("name", "spec"), VALID, ids=[name for name, _ in VALID])
def test_valid(name: str, spec: dict[str, Any]) -> None:
    assert errors(spec) == set()


R = "spec.jwtRules[0]"
INVALID = [
    (
        "empty issuer and jwksUri",
        {"jwtRules": [{}]},
        (f"{R}.issuer", "issuer or jwksUri must be non-empty string"),
    ),
    ("no scheme", rule(jwksUri="foo.com"), (f"{R}.jwksUri", "URI scheme '' is not supported")),
    ("ftp", rule(jwksUri="ftp://foo.com/k"), (f"{R}.jwksUri", "URI scheme 'ftp' is not supported")),
    (
        "port not a number",
        rule(jwksUri="https://foo.com:not-a-number"),
        (
            f"{R}.jwksUri",
            "invalid jwksUri 'https://foo.com:not-a-number': "
            "Port could not be cast to integer value as 'not-a-number'",
        ),
    ),
    ("no host", rule(jwksUri="https:///k"), (f"{R}.jwksUri", "invalid jwksUri 'https:///k': no host")),
    (
        "too long",
        rule(jwksUri="https://a.com/" + "k" * 2048),
        (f"{R}.jwksUri", "jwksUri must be at most 2048 characters"),
    ),
    (
        "jwks and jwksUri",
        rule(jwksUri=URI, jwks='{"keys":[]}'),
        (R, "only one of jwks or jwksUri can be set"),
    ),
    (
        "jwks not JSON",
        rule(jwks="not-json"),
        (f"{R}.jwks", "jwks parse error: Expecting value: line 1 column 1 (char 0)"),
    ),
    (
        "jwks not a set",
        rule(jwks="[1]"),
        (f"{R}.jwks", 'jwks parse error: not a JWK Set (an object with a "keys" array) nor a JWK'),
    ),
    (
        "jwks bad key",
        rule(jwks='{"keys":[{"kty":"RSA","n":"x"}]}'),
        (f"{R}.jwks", "jwks parse error: key at index 0: Not a public or private key"),
    ),
    ("empty audience", rule(audiences=["a", ""]), (f"{R}.audiences[1]", "audience must be non-empty string")),
    (
        "bad header location",
        rule(fromHeaders=[{"name": ""}]),
        (f"{R}.fromHeaders[0]", "location header name must be non-empty string"),
    ),
    (
        "bad param location",
        rule(fromParams=[""]),
        (f"{R}.fromParams[0]", "location query must be non-empty string"),
    ),
    (
        "bad cookie location",
        rule(fromCookies=[""]),
        (f"{R}.fromCookies[0]", "cookie name must be non-empty string"),
    ),
    (
        "claim to header without claim",
        rule(outputClaimToHeaders=[{"header": "x-a"}]),
        (
            f"{R}.outputClaimToHeaders[0]",
            "outputClaimToHeaders header and claim value must be non-empty string",
        ),
    ),
    (
        "claim to a bad header",
        rule(outputClaimToHeaders=[{"header": "x:a", "claim": "sub"}]),
        (f"{R}.outputClaimToHeaders[0].header", "header name x:a is not a valid header name"),
    ),
    (
        "payload to a bad header",
        rule(outputPayloadToHeader="x a"),
        (f"{R}.outputPayloadToHeader", "header name x a is not a valid header name"),
    ),
    ("timeout under 1ms", rule(timeout="0.0005s"), (f"{R}.timeout", "duration must be greater than 1ms")),
    (
        "too many space delimited claims",
        rule(spaceDelimitedClaims=[f"c{i}" for i in range(65)]),
        (f"{R}.spaceDelimitedClaims", "must have at most 64 items"),
    ),
    (
        "targetRef and selector",
        {
            "selector": {"matchLabels": {"app": "a"}},
            "targetRef": {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "gw"},
        },
        ("spec", "only one of targetRefs or workloadSelector can be set"),
    ),
]


@pytest.mark.parametrize(("name", "spec", "error"), INVALID, ids=[name for name, _, _ in INVALID])
def test_invalid_names_the_field(name: str, spec: dict[str, Any], error: tuple[str, str]) -> None:
    assert error in errors(spec)


def test_private_key_material_is_a_warning() -> None:
    found = problems(rule(jwks=json.dumps({"keys": [PUBLIC_JWK, PRIVATE_JWK]})))
    assert found == {
        (
            "warning",
            f"{R}.jwks",
            "jwks key at index 1 contains private key material; only public keys are used for verification",
        )
    }


def test_a_waypoint_target_warns_with_file_object_and_field() -> None:
    """The same targetRef rules as AuthorizationPolicy (pilot.config.validation.policy_target)."""
    found = problems({**rule(jwksUri=URI), "targetRefs": [{"kind": "Service", "name": "reviews"}]})
    ((severity, path, message),) = found
    assert (severity, path) == ("warning", "spec.targetRefs[0]")
    assert "selects no sidecar and no gateway" in message
