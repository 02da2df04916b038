"""The conditions of one AuthorizationPolicy rule, assembled into an Envoy RBAC ``Policy``.

Istio's pilot/pkg/security/authz/model/model.go (``New``, ``Generate``, ``checkError``); the value
generators are pilot/translate/authz_rules.py. ``rule_policy`` raises ``HttpOnlyError`` when an ALLOW
rule cannot be evaluated on a TCP chain (the caller drops the rule, as Istio does), or, with
``grpc``, by a proxyless gRPC server (pilot.translate.grpc_rbac_support); and ``TranslationError``
for a value it cannot translate at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from pilot._gen import security_pb2 as sec
from pilot.errors import TranslationError
from pilot.translate import authz_rules as r
from pilot.translate import grpc_rbac_support
from pilot.translate.authz_rules import Permission, Principal

_T = TypeVar("_T", Principal, Permission)


@dataclass(frozen=True, slots=True)
class Condition(Generic[_T]):
    """One key of a rule with its values and not-values, and how a value (or, for Istio's extended
    generators, the whole list) becomes an Envoy matcher."""

    key: str
    values: Sequence[str]
    not_values: Sequence[str]
    one: r.PrincipalOf | r.PermissionOf | None = None
    many: r.PrincipalsOf | r.PermissionsOf | None = None


# ``when`` keys → (is a principal, generator). Istio's model.go ``New`` switch.
_WHEN_PERMISSION = {
    "destination.ip": r.destination_ip,
    "destination.port": r.destination_port,
    "connection.sni": r.connection_sni,
}
_WHEN_PRINCIPAL = {
    "source.ip": r.source_ip,
    "remote.ip": r.remote_ip,
    "source.namespace": r.source_namespace,
}
_WHEN_PRINCIPALS = {
    "request.auth.principal": r.request_principals,
    "request.auth.audiences": r.claim(("aud",)),
    "request.auth.presenter": r.claim(("azp",)),
}


def _when(
    condition: sec.Condition, namespace: str, trust: r.TrustDomains
) -> tuple[bool, Condition[Principal] | Condition[Permission]]:
    key, values, nots = condition.key, condition.values, condition.not_values
    if key == "source.principal":  # trust-domain rewritten, as ``principals``
        return True, Condition(key, trust.rewrite(values), trust.rewrite(nots), one=r.source_principal)
    if key in _WHEN_PERMISSION:
        return False, Condition(key, values, nots, one=_WHEN_PERMISSION[key])
    if key.startswith("experimental.envoy.filters."):
        return False, Condition(key, values, nots, many=r.envoy_filter)
    if key in _WHEN_PRINCIPAL:
        return True, Condition(key, values, nots, one=_WHEN_PRINCIPAL[key])
    if key == "source.serviceAccount":
        return True, Condition(key, values, nots, one=r.service_account(namespace))
    if key in _WHEN_PRINCIPALS:
        return True, Condition(key, values, nots, many=_WHEN_PRINCIPALS[key])
    if key.startswith("request.headers"):
        return True, Condition(key, values, nots, one=r.request_header)
    if key.startswith("request.auth.claims"):
        return True, Condition(key, values, nots, many=r.request_claims)
    raise TranslationError(f"unknown attribute {key}")


def _source(source: sec.Source, namespace: str, trust: r.TrustDomains) -> list[Condition[Principal]]:
    """A ``from`` entry's fields in Istio's AND order (source.principal values trust-domain rewritten)."""
    s = source
    out: list[Condition[Principal]] = [
        Condition(
            "source.principal",
            trust.rewrite(s.principals),
            trust.rewrite(s.not_principals),
            one=r.source_principal,
        ),
        Condition(
            "request.auth.principal",
            s.request_principals,
            s.not_request_principals,
            many=r.request_principals,
        ),
        Condition(
            "source.serviceAccount",
            s.service_accounts,
            s.not_service_accounts,
            one=r.service_account(namespace),
        ),
        Condition("source.trustDomain", s.trust_domains, s.not_trust_domains, one=r.trust_domain),
        Condition("source.namespace", s.namespaces, s.not_namespaces, one=r.source_namespace),
        Condition("remote.ip", s.remote_ip_blocks, s.not_remote_ip_blocks, one=r.remote_ip),
        Condition("source.ip", s.ip_blocks, s.not_ip_blocks, one=r.source_ip),
    ]
    return [c for c in out if c.values or c.not_values]


def _operation(operation: sec.Operation) -> list[Condition[Permission]]:
    o = operation
    out: list[Condition[Permission]] = [
        Condition(":authority", o.hosts, o.not_hosts, one=r.hosts),
        Condition(":method", o.methods, o.not_methods, one=r.methods),
        Condition("path-matcher", o.paths, o.not_paths, one=r.paths),
        Condition("destination.port", o.ports, o.not_ports, one=r.destination_port),
    ]
    return [c for c in out if c.values or c.not_values]


def _generate(
    condition: Condition[_T], values: Sequence[str], tcp: bool, action: r.Action, grpc: bool = False
) -> list[_T]:
    """The matchers of ``values``. A key is HTTP-only or not whatever its value, so on TCP all of them
    raise: for ALLOW the error goes on (the caller drops the rule), for DENY/AUDIT the condition
    yields nothing (Istio's ``checkError``). With ``grpc`` the matchers take the shapes gRPC reads, and
    a condition a gRPC server cannot evaluate (any of its values) is treated the same way, so a deny
    only widens."""
    try:
        if condition.many is not None:
            out = [condition.many(condition.key, values, tcp)]
        else:
            assert condition.one is not None
            out = [condition.one(condition.key, value, tcp) for value in values]
        return grpc_rbac_support.for_grpc(condition.key, out) if grpc else out
    except r.HttpOnlyError:
        if action == r.ALLOW:
            raise
        return []


def _principal(
    conditions: list[Condition[Principal]], tcp: bool, action: r.Action, grpc: bool = False
) -> Principal:
    ands: list[Principal] = []
    for c in conditions:
        ors = _generate(c, c.values, tcp, action, grpc) if c.values else []
        if ors:
            ands.append(ors[0] if c.many is not None else r.principal_or(ors))
        nots = _generate(c, c.not_values, tcp, action, grpc) if c.not_values else []
        if nots:
            ands.append(Principal(not_id=nots[0] if c.many is not None else r.principal_or(nots)))
    return r.principal_and(ands or [r.principal_any()])


def _permission(
    conditions: list[Condition[Permission]], tcp: bool, action: r.Action, grpc: bool = False
) -> Permission:
    ands: list[Permission] = []
    for c in conditions:
        ors = _generate(c, c.values, tcp, action, grpc) if c.values else []
        if ors:
            ands.append(ors[0] if c.many is not None else r.permission_or(ors))
        nots = _generate(c, c.not_values, tcp, action, grpc) if c.not_values else []
        if nots:
            ands.append(Permission(not_rule=nots[0] if c.many is not None else r.permission_or(nots)))
    return r.permission_and(ands or [r.permission_any()])


def rule_policy(
    rule: sec.Rule,
    namespace: str,
    trust: r.TrustDomains,
    for_tcp: bool,
    action: r.Action,
    grpc: bool = False,
) -> r.Policy:
    """One rule as an Envoy RBAC policy: a principal per ``from``, a permission per ``to``; with
    ``grpc``, for a proxyless gRPC server's RBAC filter."""
    when_principals: list[Condition[Principal]] = []
    when_permissions: list[Condition[Permission]] = []
    for condition in rule.when:
        is_principal, built = _when(condition, namespace, trust)
        if is_principal:
            when_principals.append(built)
        else:
            when_permissions.append(built)
    principal_sets = [
        _source(f.source, namespace, trust) + when_principals for f in getattr(rule, "from")
    ] or [when_principals]
    permission_sets = [_operation(t.operation) + when_permissions for t in rule.to] or [when_permissions]
    return r.Policy(
        permissions=[_permission(p, for_tcp, action, grpc) for p in permission_sets],
        principals=[_principal(p, for_tcp, action, grpc) for p in principal_sets],
    )


__all__ = ["Condition", "rule_policy"]
