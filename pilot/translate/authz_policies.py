"""AuthorizationPolicies → the RBAC filters of one proxy, HTTP and network, in Istio's order.

Istio's pilot/pkg/model/authorization.go (``ListAuthorizationPolicies``: the root namespace's and the
proxy's namespace's policies whose ``selector`` the proxy's labels satisfy, or whose ``targetRef(s)``
name its Gateway; bucketed by action) and pilot/pkg/security/authz/builder/builder.go (``build``):

- one ``envoy.filters.http.rbac`` (HTTP) / ``envoy.filters.network.rbac`` (TCP, ``stat_prefix: tcp.``)
  per action, in the order CUSTOM, AUDIT (``LOG``), DENY, ALLOW, each only when it has policies;
- policies named ``ns[NS]-policy[NAME]-rule[N]``; a policy without rules is one never-matching policy
  ``…-rule[0]`` (an ALLOW ``spec: {}`` allows nothing, so it denies everything);
- ``istio.io/dry-run: "true"`` puts a policy's rules in ``shadow_rules`` (stat prefix
  ``istio_dry_run_allow_`` / ``istio_dry_run_deny_``), which Envoy evaluates without enforcing.

CUSTOM: pilot translates no ``extensionProviders`` (its MeshConfig has no ext_authz provider), so every
CUSTOM policy takes Istio's bad-provider path (``getBadCustomDenyRules``): a DENY filter first, whose
policies are the CUSTOM rules named ``istio-ext-authz-ns[NS]-policy[NAME]-rule[N]`` +
``-deny-due-to-bad-CUSTOM-action``: what the policy would send to the provider is denied.

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

log = logging.getLogger("pilot.translate.authz")

HTTP_RBAC_FILTER = "envoy.filters.http.rbac"
NETWORK_RBAC_FILTER = "envoy.filters.network.rbac"
TCP_STAT_PREFIX = "tcp."  # Istio's RBACTCPFilterStatPrefix
DRY_RUN_ANNOTATION = "istio.io/dry-run"
DRY_RUN_ALLOW_PREFIX = "istio_dry_run_allow_"
DRY_RUN_DENY_PREFIX = "istio_dry_run_deny_"
EXT_AUTHZ_PREFIX = "istio-ext-authz-"
BAD_CUSTOM_SUFFIX = "-deny-due-to-bad-CUSTOM-action"
# The labels a Kubernetes Gateway's deployment carries (Istio's gateway-name labels), which a
# ``targetRef`` to that Gateway selects.
GATEWAY_NAME_LABELS = ("gateway.networking.k8s.io/gateway-name", "istio.io/gateway-name")
GATEWAY_API_GROUP = "gateway.networking.k8s.io"

_NEVER = r.Policy(
    permissions=[rbac_pb2.Permission(not_rule=r.permission_any())],
    principals=[rbac_pb2.Principal(not_id=r.principal_any())],
)
_ALWAYS = r.Policy(permissions=[r.permission_any()], principals=[r.principal_any()])

AuthorizationPolicyObject = ConfigObject[sec.AuthorizationPolicy]


def policy_name(namespace: str, name: str, rule: int) -> str:
    return f"ns[{namespace}]-policy[{name}]-rule[{rule}]"


def selects(
    policy: AuthorizationPolicyObject, namespace: str, labels: Iterable[tuple[str, str]], root_namespace: str
) -> bool:
    """Whether ``policy`` applies to a proxy of ``namespace`` with ``labels`` (Istio's selection):
    its own namespace's or the root namespace's; ``targetRef(s)`` to a Gateway select that Gateway's
    pods in the policy's namespace; else a ``selector`` its labels satisfy; else every workload."""
    if policy.namespace not in (namespace, root_namespace):
        return False
    spec = policy.spec
    refs = [*spec.targetRefs, *([spec.targetRef] if spec.HasField("targetRef") else [])]
    have = dict(labels)
    if refs:
        return policy.namespace == namespace and any(
            ref.kind == "Gateway"
            and ref.group in ("", GATEWAY_API_GROUP)
            and any(have.get(label) == ref.name for label in GATEWAY_NAME_LABELS)
            for ref in refs
        )
    wanted = spec.selector.match_labels
    return all(have.get(k) == v for k, v in wanted.items())


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
    chosen = [p for p in policies if selects(p, namespace, tuple(labels), root_namespace)]
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


def _dry_run(policy: AuthorizationPolicyObject) -> bool:
    # Go's strconv.ParseBool, as Istio reads the annotation.
    return dict(policy.annotations).get(DRY_RUN_ANNOTATION, "") in ("1", "t", "T", "true", "TRUE", "True")


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
        dry = _dry_run(policy)
        target = out.shadow if dry else out.enforced
        out.has_shadow |= dry
        out.has_enforced |= not dry
        ns, name = policy.namespace, policy.name
        built: dict[str, r.Policy] = {}
        try:
            for i, rule in enumerate(policy.spec.rules):
                rule_name = prefix + policy_name(ns, name, i)
                try:
                    built[rule_name] = authz_model.rule_policy(rule, ns, trust, for_tcp, action, grpc)
                except r.HttpOnlyError as err:
                    where = "gRPC server" if grpc else "TCP filter chain"
                    log.debug("skipped rule %s on %s: %s", rule_name, where, err)
        except TranslationError as err:
            log.error(
                "AuthorizationPolicy %s/%s cannot be translated, its workloads deny all: %s", ns, name, err
            )
            failed[f"ns[{ns}]-policy[{name}]-untranslatable"] = _ALWAYS
            continue
        if not policy.spec.rules:
            built[prefix + policy_name(ns, name, 0)] = _NEVER
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
    """The RBAC configurations of one proxy's chain, in Istio's order: bad CUSTOM, AUDIT, DENY, ALLOW.
    Policies that failed translation join the DENY filter (one is made if needed). ``grpc``: for a
    proxyless gRPC server (pilot.translate.grpc_authz), rules built without what gRPC cannot evaluate."""
    out: list[ActionRules] = []
    failed: dict[str, r.Policy] = {}
    if buckets.custom:
        custom, bad = _build(buckets.custom, r.DENY, trust, for_tcp, EXT_AUTHZ_PREFIX)
        failed.update(bad)
        denied = {k + BAD_CUSTOM_SUFFIX: v for k, v in sorted((custom.enforced | custom.shadow).items())}
        out.append(ActionRules(rbac_pb2.RBAC(action=r.DENY, policies=denied), None))
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
    "http_filter_configs",
    "network_filter_configs",
    "policy_name",
    "selects",
]
