"""RequestAuthentication ``jwtRules`` → Envoy's ``envoy.filters.http.jwt_authn`` HTTP filter.

Istio's pilot/pkg/security/authn/policy_applier.go (``convertToEnvoyJwtConfig``); shapes in
ISTIO-SIDECAR-AND-SECURITY.md §8. The rules of every RequestAuthentication that applies to a proxy
are merged and sorted by issuer; each becomes a provider ``origins-<i>`` with its keys inline
(``local_jwks``: istiod's default, PILOT_JWT_ENABLE_REMOTE_JWKS=false). The one requirement lets a
request with a valid token of some provider, or with no token at all, through, and answers 401 to an
invalid one: requiring a token is AuthorizationPolicy's job (``requestPrincipals``), which reads the
verified payload this filter leaves in dynamic metadata.

Keys: a rule's inline ``jwks``; else the key set pilot fetched for its (jwksUri, issuer)
(pilot.config.jwks, read from the push context); else, as istiod's ``BuildLocalJwks`` on a failed
fetch, ``PUBLIC_ONLY_JWKS``, a public key whose private half nobody has, so every token fails (fail
closed) while a request without a token still passes, exactly as with a good key set.

Envoy strips the token from the request after verifying it unless the provider's ``forward`` is set
(https://www.envoyproxy.io/docs/envoy/latest/api-v3/extensions/filters/http/jwt_authn/v3/config.proto,
``JwtProvider.forward``): that is how Istio removes the Authorization header unless
``forwardOriginalToken``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from envoy.config.core.v3 import base_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.filters.http.jwt_authn.v3 import config_pb2 as jwt_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from google.protobuf import any_pb2, empty_pb2

from pilot._gen import security_pb2
from pilot.config.jwks import JwksKey, key_of
from pilot.translate.context import PushContext
from pilot.translate.policy_selection import policies_for
from pilot.translate.proxy import ProxyView

# The filter's name, and the dynamic-metadata key its providers put the verified payload under
# (``payload_in_metadata``). Together they are where AuthorizationPolicy's RBAC matchers read
# ``requestPrincipals`` (``iss``/``sub``) and ``request.auth.claims``: metadata namespace
# JWT_AUTHN_FILTER, path [JWT_PAYLOAD_METADATA_KEY, claim...]. Istio's filters.EnvoyJwtFilterName and
# filters.EnvoyJwtFilterPayload (pilot/pkg/xds/filters/filters.go).
JWT_AUTHN_FILTER = "envoy.filters.http.jwt_authn"
JWT_PAYLOAD_METADATA_KEY = "payload"

PROVIDER_PREFIX = "origins-"  # Istio: fmt.Sprintf("origins-%d", i)
# Claims Envoy splits at spaces in the metadata payload so RBAC can match one value of them
# (buildSpaceDelimitedClaims): always these two, plus a rule's spaceDelimitedClaims.
DEFAULT_SPACE_DELIMITED_CLAIMS = ("permission", "scope")

# istiod's PublicOnlyJwks (pilot/pkg/model/jwks_resolver.go): an RSA public key whose private key was
# discarded when it was made, inlined when a rule's keys could never be fetched, so no token verifies.
PUBLIC_ONLY_JWKS = (
    '{"keys":[{"kty":"RSA","e":"AQAB","n":"0xObjM0UvS_oaazjpEYlAbwctEJ4L8pH3OuTb7qth7gUwqet-EzQB4dgFdvS'
    "dMgrLnSncQGRjpEYz3F3viIbH-3EN3TxSlPNviHxeOdyiBVfumN8dMxbLvVJUpfNOnvmMxJcl-8NNjAwcOjk4otSALaYgYYyOPy"
    "vKtgVdrQr-FoubWX4yrjxW-MJ2-7OBeepUUNOsVwGV23YX03sVkkyvY3otRflkBcY3_HKpBxJl9wk2GyOShN4_PNUF9-vwfnvOXM"
    'bCDX-w4PTef4geeb_GiT40YCKHTKMSPVanGRn5GExIWmki-mmqh94-mPTJyBR74ShspL3BxPZitDL574T1w"}]}'
)


def merged_rules(
    policies: Iterable[security_pb2.RequestAuthentication],
) -> list[security_pb2.JWTRule]:
    """Every rule of the policies that apply, sorted by issuer (stable: ties keep policy order), as
    newPolicyApplier does to make the config deterministic."""
    rules = [rule for spec in policies for rule in spec.jwt_rules]
    return sorted(rules, key=lambda rule: rule.issuer)


def space_delimited_claims(rule: security_pb2.JWTRule) -> list[str]:
    """Istio's buildSpaceDelimitedClaims: the defaults, or with a rule's own, the sorted union."""
    if not rule.space_delimited_claims:
        return list(DEFAULT_SPACE_DELIMITED_CLAIMS)
    return sorted({*rule.space_delimited_claims, *DEFAULT_SPACE_DELIMITED_CLAIMS})


def local_jwks(rule: security_pb2.JWTRule, resolved: Mapping[JwksKey, str]) -> str:
    """The keys inlined for ``rule`` (module docstring: inline, fetched, or the fail-closed set)."""
    if rule.jwks:
        return rule.jwks
    key = key_of(rule)
    found = resolved.get(key) if key is not None else None
    return found if found else PUBLIC_ONLY_JWKS


def provider(
    rule: security_pb2.JWTRule, resolved: Mapping[JwksKey, str], clear_route_cache: bool
) -> jwt_pb2.JwtProvider:
    return jwt_pb2.JwtProvider(
        issuer=rule.issuer,
        audiences=rule.audiences,
        forward=rule.forward_original_token,
        forward_payload_header=rule.output_payload_to_header,
        payload_in_metadata=JWT_PAYLOAD_METADATA_KEY,
        normalize_payload_in_metadata=jwt_pb2.JwtProvider.NormalizePayload(
            space_delimited_claims=space_delimited_claims(rule)
        ),
        clear_route_cache=clear_route_cache,
        claim_to_headers=[
            jwt_pb2.JwtClaimToHeader(header_name=c.header, claim_name=c.claim)
            for c in rule.output_claim_to_headers
        ],
        from_headers=[jwt_pb2.JwtHeader(name=h.name, value_prefix=h.prefix) for h in rule.from_headers],
        from_params=rule.from_params,
        from_cookies=rule.from_cookies,
        local_jwks=base_pb2.DataSource(inline_string=local_jwks(rule, resolved)),
    )


def _provider_requirement(name: str) -> jwt_pb2.JwtRequirement:
    return jwt_pb2.JwtRequirement(provider_name=name)


def _or_missing(name: str) -> jwt_pb2.JwtRequirement:
    """``{provider OR allow_missing}``: a token of this provider's location must verify, if present."""
    either = [_provider_requirement(name), jwt_pb2.JwtRequirement(allow_missing=empty_pb2.Empty())]
    return jwt_pb2.JwtRequirement(requires_any=jwt_pb2.JwtRequirementOrList(requirements=either))


def requirement(names: Sequence[str]) -> jwt_pb2.JwtRequirement:
    """One provider: ``requires_any[p, allow_missing]``. Several: ``requires_any[p1 … pn,
    requires_all[requires_any[pi, allow_missing] …]]``: the inner AND makes every token present
    verify, the outer OR lets providers that share a token location through (where the AND always
    fails, since one token cannot verify for two issuers)."""
    if len(names) == 1:
        return _or_missing(names[0])
    inner = jwt_pb2.JwtRequirement(
        requires_all=jwt_pb2.JwtRequirementAndList(requirements=[_or_missing(n) for n in names])
    )
    outer = [*(_provider_requirement(n) for n in names), inner]
    return jwt_pb2.JwtRequirement(requires_any=jwt_pb2.JwtRequirementOrList(requirements=outer))


def jwt_authentication(
    rules: Sequence[security_pb2.JWTRule], resolved: Mapping[JwksKey, str], clear_route_cache: bool = False
) -> jwt_pb2.JwtAuthentication | None:
    """Istio's convertToEnvoyJwtConfig over ``rules`` (already merged and sorted); None without rules.
    ``clear_route_cache``: on gateways, so routes can match on the claims the filter outputs."""
    if not rules:
        return None
    providers = {
        f"{PROVIDER_PREFIX}{i}": provider(rule, resolved, clear_route_cache) for i, rule in enumerate(rules)
    }
    rule = jwt_pb2.RequirementRule(match=rc.RouteMatch(prefix="/"), requires=requirement(list(providers)))
    return jwt_pb2.JwtAuthentication(providers=providers, rules=[rule], bypass_cors_preflight=True)


def jwt_authn_filter(
    policies: Iterable[security_pb2.RequestAuthentication],
    resolved: Mapping[JwksKey, str],
    clear_route_cache: bool = False,
) -> hcm_pb2.HttpFilter | None:
    """The HTTP filter for the RequestAuthentications that apply to a proxy; None when no rule does."""
    config = jwt_authentication(merged_rules(policies), resolved, clear_route_cache)
    if config is None:
        return None
    packed = any_pb2.Any()
    packed.Pack(config)
    return hcm_pb2.HttpFilter(name=JWT_AUTHN_FILTER, typed_config=packed)


def jwt_filter_for(view: ProxyView, context: PushContext, gateway: bool = False) -> hcm_pb2.HttpFilter | None:
    """The jwt_authn filter of a proxy's inbound (or, for a router, its gateway) HTTP connection
    managers: the RequestAuthentications that apply to it (pilot.translate.policy_selection), keys
    from the push context. Istio clears the route cache on gateways only, so a route there can
    match on a claim the filter copied into a header."""
    policies = policies_for(
        context.request_authentications, view.namespace, dict(view.labels), context.mesh.root_namespace
    )
    return jwt_authn_filter((policy.spec for policy in policies), context.jwks, clear_route_cache=gateway)


__all__ = [
    "JWT_AUTHN_FILTER",
    "JWT_PAYLOAD_METADATA_KEY",
    "PUBLIC_ONLY_JWKS",
    "jwt_authentication",
    "jwt_authn_filter",
    "jwt_filter_for",
    "merged_rules",
]
