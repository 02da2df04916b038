"""The JSON Web Key Sets pilot fetched for RequestAuthentication ``jwtRules``, as store objects.

istiod resolves a rule's ``jwksUri`` (or, without one, its issuer's OpenID discovery document)
itself and inlines the keys into Envoy's ``jwt_authn`` config (``PILOT_JWT_ENABLE_REMOTE_JWKS=false``,
pilot/pkg/model/jwks_resolver.go). pilot does the same in two halves: ``pilot.sources.jwks`` fetches
(I/O, outside translation) and writes each good key set into the config store as a ``Jwks`` object
of origin ``JWKS_ORIGIN``; ``PushContext`` reads them back with ``resolved_keys``, so translation
reads keys from the frozen push context and a change of keys is a store change that triggers a push.

A key set is identified as in istiod (``jwtKey{jwksURI, issuer}``): by the pair, since two rules
with one URI and different issuers are fetched apart when the URI is empty (OpenID discovery).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from google.protobuf import struct_pb2

from pilot._gen import security_pb2
from pilot.config.objects import ConfigKey, ConfigObject

# What the resolver (pilot.sources.jwks, which may not import pilot._gen) reads.
RequestAuthenticationObject = ConfigObject[security_pb2.RequestAuthentication]

JWKS_KIND = "Jwks"
JWKS_ORIGIN = "jwks-resolver"
# istiod's default JWTRule.timeout (policy_applier.go): how long one fetch of the keys may take.
DEFAULT_FETCH_TIMEOUT_SECONDS = 5.0
# https://openid.net/specs/openid-connect-discovery-1_0.html: the issuer's discovery document.
OPENID_DISCOVERY_SUFFIX = "/.well-known/openid-configuration"


@dataclass(frozen=True, slots=True, order=True)
class JwksKey:
    """The key set of one (jwksUri, issuer) pair; an empty ``jwks_uri`` is found by OpenID discovery."""

    jwks_uri: str
    issuer: str

    @property
    def name(self) -> str:
        return f"{self.jwks_uri}|{self.issuer}"

    @property
    def config_key(self) -> ConfigKey:
        return ConfigKey(JWKS_KIND, "", self.name)

    def discovery_url(self) -> str:
        """Where the issuer's OpenID configuration is (istiod trims a trailing ``/`` first)."""
        return self.issuer.removesuffix("/") + OPENID_DISCOVERY_SUFFIX


def key_of(rule: security_pb2.JWTRule) -> JwksKey | None:
    """The key set a rule needs fetched; None when it carries its keys inline (``jwks``) or names
    neither a URI nor an issuer (validation rejects that)."""
    if rule.jwks or not (rule.jwks_uri or rule.issuer):
        return None
    return JwksKey(rule.jwks_uri, rule.issuer)


def fetch_timeout(rule: security_pb2.JWTRule) -> float:
    if rule.HasField("timeout"):
        return rule.timeout.ToTimedelta().total_seconds()
    return DEFAULT_FETCH_TIMEOUT_SECONDS


def wanted_keys(specs: Iterable[security_pb2.RequestAuthentication]) -> dict[JwksKey, float]:
    """Every key set the RequestAuthentications need fetched, with the shortest fetch timeout any
    of their rules gives it."""
    wanted: dict[JwksKey, float] = {}
    for spec in specs:
        for rule in spec.jwt_rules:
            key = key_of(rule)
            if key is not None:
                timeout = fetch_timeout(rule)
                wanted[key] = min(timeout, wanted.get(key, timeout))
    return wanted


def resolved_object(key: JwksKey, jwks: str) -> ConfigObject[struct_pb2.Struct]:
    """The store object of one fetched key set (``jwks``: the JWKS document as fetched)."""
    spec = struct_pb2.Struct()
    spec.update({"jwksUri": key.jwks_uri, "issuer": key.issuer, "jwks": jwks})
    return ConfigObject(key.config_key, "", spec, JWKS_ORIGIN)


def resolved_keys(objects: Iterable[ConfigObject]) -> Mapping[JwksKey, str]:
    """The fetched key sets among ``objects``, by key."""
    out: dict[JwksKey, str] = {}
    for obj in objects:
        if obj.kind != JWKS_KIND or not isinstance(obj.spec, struct_pb2.Struct):
            continue
        fields = obj.spec.fields
        key = JwksKey(fields["jwksUri"].string_value, fields["issuer"].string_value)
        out[key] = fields["jwks"].string_value
    return out
