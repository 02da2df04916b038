"""RequestAuthentication checks, as Istio's ``ValidateRequestAuthentication`` and ``validateJwtRule``
(pkg/config/validation/validation.go) do, plus the CRD's own rules (manifests/charts/base/files/
crd-all.gen.yaml: one of ``jwks``/``jwksUri``, ``jwksUri`` at most 2048 characters with scheme http or
https, a ``timeout`` of at least 1ms, at most 64 ``spaceDelimitedClaims``), and a header name for
``outputPayloadToHeader`` that Envoy would otherwise reject (a NACK).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

import jwt

from pilot._gen import security_pb2 as sec
from pilot.config.validation.common import Report, at, check_duration, item
from pilot.config.validation.http import check_header_name
from pilot.config.validation.policy_target import check_policy_scope, target_refs_of

MAX_JWKS_URI_LENGTH = 2048
MAX_SPACE_DELIMITED_CLAIMS = 64
# JWK members that only a private (or a symmetric) key has (RFC 7518 §6.2.2, §6.3.2, §6.4; RFC 8037).
_PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "k")


def validate_request_authentication(
    spec: sec.RequestAuthentication, namespace: str, path: str, report: Report
) -> None:
    selector = spec.selector if spec.HasField("selector") else None
    check_policy_scope(selector, target_refs_of(spec, path), path, report)
    for index, rule in enumerate(spec.jwt_rules):
        validate_jwt_rule(rule, item(at(path, "jwtRules"), index), report)


def validate_jwt_rule(rule: sec.JWTRule, path: str, report: Report) -> None:
    for index, audience in enumerate(rule.audiences):
        if not audience:
            report.error(item(at(path, "audiences"), index), "audience must be non-empty string")
    if not rule.issuer and not rule.jwks_uri:
        report.error(at(path, "issuer"), "issuer or jwksUri must be non-empty string")
    if rule.jwks_uri:
        report.check(at(path, "jwksUri"), check_jwks_uri(rule.jwks_uri))
        if rule.jwks:
            report.error(path, "only one of jwks or jwksUri can be set")
    if rule.jwks:
        _jwks(rule.jwks, at(path, "jwks"), report)
    for index, header in enumerate(rule.from_headers):
        if not header.name:
            where = item(at(path, "fromHeaders"), index)
            report.error(where, "location header name must be non-empty string")
    for index, param in enumerate(rule.from_params):
        if not param:
            report.error(item(at(path, "fromParams"), index), "location query must be non-empty string")
    for index, cookie in enumerate(rule.from_cookies):
        if not cookie:
            report.error(item(at(path, "fromCookies"), index), "cookie name must be non-empty string")
    for index, output in enumerate(rule.output_claim_to_headers):
        where = item(at(path, "outputClaimToHeaders"), index)
        if not output.claim or not output.header:
            report.error(where, "outputClaimToHeaders header and claim value must be non-empty string")
            continue
        report.check(at(where, "header"), check_header_name(output.header))
    if rule.output_payload_to_header:
        report.check(at(path, "outputPayloadToHeader"), check_header_name(rule.output_payload_to_header))
    if rule.HasField("timeout"):
        report.check(at(path, "timeout"), check_duration(rule.timeout))
    if len(rule.space_delimited_claims) > MAX_SPACE_DELIMITED_CLAIMS:
        report.error(
            at(path, "spaceDelimitedClaims"), f"must have at most {MAX_SPACE_DELIMITED_CLAIMS} items"
        )
    for index, claim in enumerate(rule.space_delimited_claims):
        if not claim:
            report.error(item(at(path, "spaceDelimitedClaims"), index), "claim name must be non-empty string")


def check_jwks_uri(uri: str) -> str | None:
    """Istio's ParseJwksURI (scheme http or https, a numeric port) and the CRD's bounds; a host,
    since pilot fetches it."""
    if len(uri) > MAX_JWKS_URI_LENGTH:
        return f"jwksUri must be at most {MAX_JWKS_URI_LENGTH} characters"
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in 0..65535
    except ValueError as err:
        return f"invalid jwksUri {uri!r}: {err}"
    if parts.scheme not in ("http", "https"):
        return f"URI scheme {parts.scheme!r} is not supported"
    if not parts.hostname:
        return f"invalid jwksUri {uri!r}: no host"
    return None


def _jwks(text: str, path: str, report: Report) -> None:
    """A JWK Set, or a single JWK (as Istio's jwk.Parse takes), each key one pyjwt can use; a key
    with private material is a warning (warnPrivateJwksKeys): Envoy needs only public keys."""
    try:
        document: Any = json.loads(text)
    except ValueError as err:
        report.error(path, f"jwks parse error: {err}")
        return
    if isinstance(document, dict) and "keys" not in document and "kty" in document:
        keys: Any = [document]
    elif isinstance(document, dict) and isinstance(document.get("keys"), list):
        keys = document["keys"]
    else:
        report.error(path, 'jwks parse error: not a JWK Set (an object with a "keys" array) nor a JWK')
        return
    for index, key in enumerate(keys):
        if not isinstance(key, dict):
            report.error(path, f"jwks parse error: key at index {index} is not an object")
            continue
        try:
            jwt.PyJWK(key)
        except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError) as err:
            report.error(path, f"jwks parse error: key at index {index}: {err}")
            continue
        if any(member in key for member in _PRIVATE_MEMBERS):
            report.warn(
                path,
                f"jwks key at index {index} contains private key material; "
                "only public keys are used for verification",
            )
