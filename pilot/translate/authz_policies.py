"""AuthorizationPolicies → the RBAC filters of one proxy, HTTP and network, in Istio's order.

Istio's pilot/pkg/model/authorization.go (``ListAuthorizationPolicies``: the root namespace's and the
proxy's namespace's policies that select it, pilot.translate.policy_selection; bucketed by action)
and pilot/pkg/security/authz/builder/builder.go (``build``):

- one ``envoy.filters.http.rbac`` (HTTP) / ``envoy.filters.network.rbac`` (TCP, ``stat_prefix: tcp.``)
  per action, in the order AUDIT (``LOG``), DENY, ALLOW, each only when it has policies (CUSTOM
  policies come before them all: pilot.translate.authz_custom);
- policies named ``ns[NS]-policy[NAME]-rule[N]``; a policy without rules is one never-matching policy
  ``…-rule[0]`` (an ALLOW ``spec: {}`` allows nothing, so it denies everything);
- ``istio.io/dry-run: "true"`` puts a policy's rules in ``shadow_rules`` (stat prefix
  ``istio_dry_run_allow_`` / ``istio_dry_run_deny_``), which Envoy evaluates without enforcing.

Fail closed: a policy that passed validation and still cannot be translated (a bug, or a value only
translation rejects) becomes a DENY of everything for the workloads it selects, named
``ns[NS]-policy[NAME]-untranslatable``, and is logged; it never opens access.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from envoy.config.rbac.v3 import rbac_pb2
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2 as http_rbac_pb2
from envoy.extensions.filters.network.rbac.v3 import rbac_pb2 as network_rbac_pb2

from pilot._gen import security_pb2 as sec
from pilot.config.objects import ConfigObject
from pilot.errors import TranslationError
from pilot.translate import authz_model
from pilot.translate import authz_rules as r
from pilot.translate.policy_selection import policies_for

log = logging.getLogger("pilot.translate.authz")

HTTP_RBAC_FILTER = "envoy.filters.http.rbac"
NETWORK_RBAC_FILTER = "envoy.filters.network.rbac"
TCP_STAT_PREFIX = "tcp."  # Istio's RBACTCPFilterStatPrefix
DRY_RUN_ANNOTATION = "istio.io/dry-run"
DRY_RUN_ALLOW_PREFIX = "istio_dry_run_allow_"
DRY_RUN_DENY_PREFIX = "istio_dry_run_deny_"

_NEVER = r.Policy(
    permissions=[rbac_pb2.Permission(not_rule=r.permission_any())],
    principals=[rbac_pb2.Principal(not_id=r.principal_any())],
)
_ALWAYS = r.Policy(permissions=[r.permission_any()], principals=[r.principal_any()])

AuthorizationPolicyObject = ConfigObject[sec.AuthorizationPolicy]


def policy_name(namespace: str, name: str, rule: int) -> str:
    return f"ns[{namespace}]-policy[{name}]-rule[{rule}]"


@dataclass(frozen=True, slots=True)
class Buckets:
    """The policies that apply to one proxy, by action, in the order they were given."""

    custom: tuple[AuthorizationPolicyObject, ...] = ()
    audit: tuple[AuthorizationPolicyObject, ...] = ()
    deny: tuple[AuthorizationPolicyObject, ...] = ()
    allow: tuple[AuthorizationPolicyObject, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.custom or self.audit or self.deny or self.allow)


def applicable(
    policies: Sequence[AuthorizationPolicyObject],
    namespace: str,
    labels: Iterable[tuple[str, str]],
    root_namespace: str,
) -> Buckets:
    """The policies that select a proxy (pilot.translate.policy_selection), by action."""
    chosen = policies_for(policies, namespace, dict(labels), root_namespace, root_first=True)
    by = sec.AuthorizationPolicy
    return Buckets(
        custom=tuple(p for p in chosen if p.spec.action == by.CUSTOM),
        audit=tuple(p for p in chosen if p.spec.action == by.AUDIT),
        deny=tuple(p for p in chosen if p.spec.action == by.DENY),
        allow=tuple(p for p in chosen if p.spec.action == by.ALLOW),
    )


@dataclass(slots=True)
class _Rules:
    """Istio's builtRule: the enforced and the dry-run policies of one action."""

    action: r.Action
    enforced: dict[str, r.Policy] = field(default_factory=dict)
    shadow: dict[str, r.Policy] = field(default_factory=dict)
    has_enforced: bool = False
    has_shadow: bool = False


def dry_run(policy: AuthorizationPolicyObject) -> bool:
    # Go's strconv.ParseBool, as Istio reads the annotation.
    return dict(policy.annotations).get(DRY_RUN_ANNOTATION, "") in ("1", "t", "T", "true", "TRUE", "True")


def _policy_rules(
    policy: AuthorizationPolicyObject,
    action: r.Action,
    trust: r.TrustDomains,
    for_tcp: bool,
    prefix: str,
    grpc: bool = False,
) -> dict[str, r.Policy]:
    """One policy's rules as RBAC policies by name; raises TranslationError when it cannot be taken.
    ``grpc``: for a proxyless gRPC server, without what gRPC cannot evaluate."""
    ns, name = policy.namespace, policy.name
    built: dict[str, r.Policy] = {}
    for i, rule in enumerate(policy.spec.rules):
        rule_name = prefix + policy_name(ns, name, i)
        try:
            built[rule_name] = authz_model.rule_policy(rule, ns, trust, for_tcp, action, grpc)
        except r.HttpOnlyError as err:
            where = "gRPC server" if grpc else "TCP filter chain"
            log.debug("skipped rule %s on %s: %s", rule_name, where, err)
    if not policy.spec.rules:
        built[prefix + policy_name(ns, name, 0)] = _NEVER
    return built


# The RBAC action each AuthorizationPolicy action is built as (CUSTOM: the bad-provider DENY).
_BUILT_AS: dict[int, r.Action] = {
    sec.AuthorizationPolicy.CUSTOM: r.DENY,
    sec.AuthorizationPolicy.AUDIT: r.LOG,
    sec.AuthorizationPolicy.DENY: r.DENY,
    sec.AuthorizationPolicy.ALLOW: r.ALLOW,
}


def untranslatable(
    policy: AuthorizationPolicyObject, trust: r.TrustDomains, grpc: bool = False
) -> str | None:
    """Why ``policy`` cannot be translated, for an HTTP or a TCP chain (with ``grpc``: for a proxyless
    gRPC server's RBAC filter), its workloads then getting ``ns[NS]-policy[NAME]-untranslatable``, a
    deny of everything; None when it can."""
    action = _BUILT_AS.get(policy.spec.action, r.ALLOW)
    for for_tcp in (False,) if grpc else (False, True):
        try:
            _policy_rules(policy, action, trust, for_tcp, "", grpc)
        except TranslationError as err:
            return str(err)
    return None


def untranslatable_name(namespace: str, name: str) -> str:
    """The deny-everything RBAC policy that stands for a policy translation could not take."""
    return f"ns[{namespace}]-policy[{name}]-untranslatable"


def _build(
    policies: Sequence[AuthorizationPolicyObject],
    action: r.Action,
    trust: r.TrustDomains,
    for_tcp: bool,
    prefix: str = "",
    grpc: bool = False,
) -> tuple[_Rules, dict[str, r.Policy]]:
    """The policies of one action, and the deny-everything policies of those that failed."""
    out = _Rules(action)
    failed: dict[str, r.Policy] = {}
    for policy in policies:
        dry = dry_run(policy)
        target = out.shadow if dry else out.enforced
        out.has_shadow |= dry
        out.has_enforced |= not dry
        try:
            built = _policy_rules(policy, action, trust, for_tcp, prefix, grpc)
        except TranslationError as err:
            # pilot.translate.problems carries the reason to /debug/configz and the metric.
            log.error(
                "AuthorizationPolicy %s/%s cannot be translated, its workloads deny all: %s",
                policy.namespace,
                policy.name,
                err,
            )
            failed[untranslatable_name(policy.namespace, policy.name)] = _ALWAYS
            continue
        target.update(built)
    return out, failed


@dataclass(frozen=True, slots=True)
class ActionRules:
    """One RBAC filter's configuration: enforced rules (None: none) and dry-run rules."""

    rules: rbac_pb2.RBAC | None
    shadow: rbac_pb2.RBAC | None
    shadow_prefix: str = ""


def action_rules(
    buckets: Buckets, trust: r.TrustDomains, for_tcp: bool, grpc: bool = False
) -> list[ActionRules]:
    """The RBAC configurations of one proxy's chain, in Istio's order: AUDIT, DENY, ALLOW (CUSTOM:
    pilot.translate.authz_custom). Policies that failed translation join the DENY filter (one is
    made if needed). ``grpc``: for a proxyless gRPC server (pilot.translate.grpc_authz), rules built
    without what gRPC cannot evaluate."""
    out: list[ActionRules] = []
    failed: dict[str, r.Policy] = {}
    built: list[tuple[r.Action, _Rules]] = []
    for action, policies in ((r.LOG, buckets.audit), (r.DENY, buckets.deny), (r.ALLOW, buckets.allow)):
        if policies:
            rules, bad = _build(policies, action, trust, for_tcp, grpc=grpc)
            failed.update(bad)
            built.append((action, rules))
    if failed and not any(action == r.DENY for action, _ in built):
        built.append((r.DENY, _Rules(r.DENY)))
        built.sort(key=lambda pair: (r.LOG, r.DENY, r.ALLOW).index(pair[0]))
    for action, rules in built:
        enforced = dict(rules.enforced)
        if action == r.DENY:
            enforced |= failed
        has_enforced = rules.has_enforced or (action == r.DENY and bool(failed))
        # Istio's shadowRuleStatPrefix reads the action of the shadow rules, ALLOW when there are none
        # (a nil RBAC's GetAction), so every filter without dry-run policies says the allow prefix.
        shadow_action = action if rules.has_shadow else r.ALLOW
        out.append(
            ActionRules(
                rbac_pb2.RBAC(action=action, policies=enforced) if has_enforced else None,
                rbac_pb2.RBAC(action=action, policies=rules.shadow) if rules.has_shadow else None,
                {r.ALLOW: DRY_RUN_ALLOW_PREFIX, r.DENY: DRY_RUN_DENY_PREFIX}.get(shadow_action, ""),
            )
        )
    return out


def build_rules(
    policies: Sequence[AuthorizationPolicyObject],
    action: r.Action,
    trust: r.TrustDomains,
    for_tcp: bool,
    prefix: str,
) -> tuple[dict[str, r.Policy], dict[str, r.Policy]]:
    """The enforced (not dry-run) policies of ``policies`` as RBAC policies named with ``prefix``,
    and the deny-everything policies of those that failed translation (pilot.translate.authz_custom)."""
    rules, failed = _build(policies, action, trust, for_tcp, prefix)
    return rules.enforced, failed


_Config = TypeVar("_Config", http_rbac_pb2.RBAC, network_rbac_pb2.RBAC)


def _fill(config: _Config, rule: ActionRules) -> _Config:
    """The fields the HTTP and the network RBAC filter share."""
    config.shadow_rules_stat_prefix = rule.shadow_prefix
    if rule.rules is not None:
        config.rules.CopyFrom(rule.rules)
    if rule.shadow is not None:
        config.shadow_rules.CopyFrom(rule.shadow)
    return config


def http_filter_configs(rules: Sequence[ActionRules]) -> list[http_rbac_pb2.RBAC]:
    return [_fill(http_rbac_pb2.RBAC(), rule) for rule in rules]


def network_filter_configs(rules: Sequence[ActionRules]) -> list[network_rbac_pb2.RBAC]:
    return [_fill(network_rbac_pb2.RBAC(stat_prefix=TCP_STAT_PREFIX), rule) for rule in rules]


__all__ = [
    "HTTP_RBAC_FILTER",
    "NETWORK_RBAC_FILTER",
    "ActionRules",
    "Buckets",
    "action_rules",
    "applicable",
    "build_rules",
    "dry_run",
    "http_filter_configs",
    "network_filter_configs",
    "policy_name",
    "untranslatable",
    "untranslatable_name",
]
