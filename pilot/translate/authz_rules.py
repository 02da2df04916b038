"""One AuthorizationPolicy rule → one Envoy RBAC ``Policy``.

Istio's pilot/pkg/security/authz/model (model.go ``New``/``Generate``, generator.go, principal.go,
permission.go; ISTIO-SIDECAR-AND-SECURITY.md §7): each ``from`` becomes one principal and each ``to``
one permission (ORed by Envoy); inside one, the fields are ANDed, the values of a field ORed, and a
``notX`` field is NOT(OR). ``when`` conditions are ANDed into every principal (source keys) or
permission (destination keys). The AND order is Istio's: principal = principals, requestPrincipals,
serviceAccounts, trustDomains, namespaces, remoteIpBlocks, ipBlocks, when; permission = hosts,
methods, paths, ports, when.

On a TCP filter chain the HTTP-only fields (hosts, methods, paths, requestPrincipals, request.*)
cannot be evaluated. Istio's ``checkError``: for ALLOW the whole rule is dropped (the allow is
narrower); for DENY and AUDIT only that condition is dropped (the deny is wider).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeAlias

from envoy.config.core.v3 import extension_pb2
from envoy.config.rbac.v3 import rbac_pb2
from envoy.extensions.path.match.uri_template.v3 import uri_template_match_pb2
from google.protobuf import any_pb2

from pilot.errors import TranslationError
from pilot.translate import authz_matchers as m

Principal: TypeAlias = rbac_pb2.Principal
Permission: TypeAlias = rbac_pb2.Permission
Policy: TypeAlias = rbac_pb2.Policy
Action: TypeAlias = rbac_pb2.RBAC.Action.ValueType

ALLOW: Action = rbac_pb2.RBAC.ALLOW
DENY: Action = rbac_pb2.RBAC.DENY
LOG: Action = rbac_pb2.RBAC.LOG

URI_TEMPLATE_EXTENSION = "uri-template"  # Istio's PathTemplateMatcher extension name


class HttpOnlyError(Exception):
    """A condition only an HTTP filter can evaluate, met while building for a TCP chain."""


@dataclass(frozen=True, slots=True)
class TrustDomains:
    """Istio's trustdomain.Bundle: the mesh trust domain first, then its aliases."""

    domains: tuple[str, ...]

    def rewrite(self, principals: Sequence[str]) -> list[str]:
        """``ReplaceTrustDomainAliases``: a ``TD/ns/NS/sa/SA`` principal whose trust domain is one of
        the bundle's (or ``cluster.local``, which means the local one) is repeated for every trust
        domain of the bundle; one that does not enforce a trust domain (``*/ns/..``), or names
        another, stays as written."""
        out: list[str] = []
        for principal in principals:
            parts = principal.split("/")
            domain = parts[0]
            shaped = len(parts) == 5 and parts[1] == "ns" and parts[3] == "sa"
            ours = any(_suffix_match(d, domain) for d in self.domains) or domain == "cluster.local"
            if not shaped or domain == "*" or not ours:
                out.append(principal)
                continue
            rest = "/".join(parts[1:])
            for td in self.domains:
                written = principal if _suffix_match(td, domain) else f"{td}/{rest}"
                if written not in out:
                    out.append(written)
        return out


def _suffix_match(domain: str, pattern: str) -> bool:
    if pattern.startswith("*"):
        return domain.endswith(pattern[1:])
    return domain == pattern


# -- Envoy shapes (Istio's principal.go / permission.go) ---------------------------------------------


def principal_any() -> Principal:
    return Principal(any=True)


def principal_and(ids: list[Principal]) -> Principal:
    return Principal(and_ids=Principal.Set(ids=ids))


def principal_or(ids: list[Principal]) -> Principal:
    return Principal(or_ids=Principal.Set(ids=ids))


def authenticated(matcher: m.StringMatcher) -> Principal:
    return Principal(authenticated=Principal.Authenticated(principal_name=matcher))


def permission_any() -> Permission:
    return Permission(any=True)


def permission_and(rules: list[Permission]) -> Permission:
    return Permission(and_rules=Permission.Set(rules=rules))


def permission_or(rules: list[Permission]) -> Permission:
    return Permission(or_rules=Permission.Set(rules=rules))


# -- generators: one value of one key → a principal or a permission -----------------------------------

PrincipalOf = Callable[[str, str, bool], Principal]
PermissionOf = Callable[[str, str, bool], Permission]
# Keys whose values are translated together (Istio's extendedGenerator): a value list → one matcher.
PrincipalsOf = Callable[[str, Sequence[str], bool], Principal]
PermissionsOf = Callable[[str, Sequence[str], bool], Permission]


def _http_only(key: str, for_tcp: bool) -> None:
    if for_tcp:
        raise HttpOnlyError(f'"{key}" is HTTP only')


def source_principal(_key: str, value: str, _tcp: bool) -> Principal:
    """The peer certificate's URI SAN, ``spiffe://`` + the value (Istio's srcPrincipalGenerator)."""
    return authenticated(m.string_matcher(value, m.SPIFFE_PREFIX))


def source_namespace(_key: str, value: str, _tcp: bool) -> Principal:
    return authenticated(m.regex(".*/ns/{}/.*".format(value.replace("*", ".*"))))


def source_ip(_key: str, value: str, _tcp: bool) -> Principal:
    return Principal(direct_remote_ip=m.cidr_range(value))


def remote_ip(_key: str, value: str, _tcp: bool) -> Principal:
    return Principal(remote_ip=m.cidr_range(value))


def trust_domain(_key: str, value: str, _tcp: bool) -> Principal:
    prefix = m.SPIFFE_PREFIX if value == "*" else f"{m.SPIFFE_PREFIX}{value}/"
    return authenticated(m.StringMatcher(prefix=prefix))


def service_account(namespace: str) -> PrincipalOf:
    """``NS/SA`` or ``SA`` (the policy's namespace): Istio's ``serviceAccountRegex``."""

    def generate(_key: str, value: str, _tcp: bool) -> Principal:
        ns, slash, sa = value.partition("/")
        if not slash:
            ns, sa = namespace, value
        return authenticated(m.regex(f"spiffe://.+/ns/{ns}/(.+/|)sa/{sa}(/.+)?"))

    return generate


def request_header(key: str, value: str, tcp: bool) -> Principal:
    _http_only(key, tcp)
    (header,) = _one_bracketed(key.removeprefix("request.headers"))
    return Principal(header=m.header_matcher(header, value))


def _one_bracketed(text: str) -> list[str]:
    names = m.bracketed(text)
    if len(names) != 1:
        raise TranslationError(f"expected one [name], got {text!r}")
    return names


_ANY = m.regex(".+")


def request_principals(key: str, values: Sequence[str], tcp: bool) -> Principal:
    """``ISS/SUB`` split at the last ``/`` (an issuer may be a URL), each half matched on the JWT
    payload in jwt_authn's metadata (Istio's requestPrincipalGenerator)."""
    _http_only(key, tcp)
    ors = []
    for value in values:
        idx = value.rfind("/")
        found = idx >= 0
        iss, sub = (value[:idx], value[idx + 1 :]) if found else (value, "")
        if value == "*":
            match_iss, match_sub = _ANY, _ANY
        elif value.startswith("*"):
            if found:
                match_iss = _ANY if iss == "*" else m.StringMatcher(suffix=iss[1:])
                match_sub = m.StringMatcher(exact=sub)
            else:
                match_iss, match_sub = _ANY, m.StringMatcher(suffix=value[1:])
        elif value.endswith("*"):
            if found:
                match_iss = m.StringMatcher(exact=iss)
                match_sub = _ANY if sub == "*" else m.StringMatcher(prefix=sub[:-1])
            else:
                match_iss, match_sub = m.StringMatcher(prefix=value[:-1]), _ANY
        else:
            match_iss, match_sub = m.StringMatcher(exact=iss), m.StringMatcher(exact=sub)
        ors.append(
            principal_and(
                [
                    Principal(metadata=m.jwt_claim_string("iss", match_iss)),
                    Principal(metadata=m.jwt_claim_string("sub", match_sub)),
                ]
            )
        )
    return ors[0] if len(ors) == 1 else principal_or(ors)


def claim(claims: Sequence[str]) -> PrincipalsOf:
    def generate(key: str, values: Sequence[str], tcp: bool) -> Principal:
        _http_only(key, tcp)
        return Principal(metadata=m.jwt_claim_list(claims, m.string_or(values)))

    return generate


def request_claims(key: str, values: Sequence[str], tcp: bool) -> Principal:
    return claim(m.bracketed(key.removeprefix("request.auth.claims")))(key, values, tcp)


def hosts(key: str, value: str, tcp: bool) -> Permission:
    _http_only(key, tcp)
    return Permission(header=m.header_matcher(":authority", value, ignore_case=True))


def methods(key: str, value: str, tcp: bool) -> Permission:
    _http_only(key, tcp)
    return Permission(header=m.header_matcher(":method", value))


_TEMPLATE = re.compile(r"\{\*\*?\}")


def paths(key: str, value: str, tcp: bool) -> Permission:
    """Exact, ``x*``, ``*x``, ``*``; a path with ``{*}``/``{**}`` is a URI template."""
    _http_only(key, tcp)
    if _TEMPLATE.search(value):
        config = any_pb2.Any()
        # Istio's PathTemplateMatcher: Envoy's template syntax has no braces.
        template = value.replace("{**}", "**").replace("{*}", "*")
        config.Pack(uri_template_match_pb2.UriTemplateMatchConfig(path_template=template))
        return Permission(
            uri_template=extension_pb2.TypedExtensionConfig(name=URI_TEMPLATE_EXTENSION, typed_config=config)
        )
    return Permission(url_path=m.path_matcher(value))


def destination_port(_key: str, value: str, _tcp: bool) -> Permission:
    if not value.isdigit() or int(value) > 65535:
        raise TranslationError(f"invalid port {value!r}")
    return Permission(destination_port=int(value))


def destination_ip(_key: str, value: str, _tcp: bool) -> Permission:
    return Permission(destination_ip=m.cidr_range(value))


def connection_sni(_key: str, value: str, _tcp: bool) -> Permission:
    return Permission(requested_server_name=m.string_matcher(value))


def envoy_filter(key: str, values: Sequence[str], _tcp: bool) -> Permission:
    """``experimental.envoy.filters.a.b[c]``: metadata of filter ``envoy.filters.a.b``, key ``c``, any
    of ``values`` (``[v]``: a list holding ``v``); Istio's extended envoyFilterGenerator."""
    name, bracket, rest = key.removeprefix("experimental.").partition("[")
    if not bracket or not rest.endswith("]"):
        raise TranslationError(f"invalid key {key!r}")
    return Permission(metadata=m.filter_metadata(name, rest[:-1], values))


__all__ = [
    "ALLOW",
    "DENY",
    "LOG",
    "HttpOnlyError",
    "TrustDomains",
    "permission_and",
    "permission_any",
    "principal_and",
    "principal_any",
]
