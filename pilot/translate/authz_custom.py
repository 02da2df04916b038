"""CUSTOM AuthorizationPolicies → per provider, an RBAC filter in shadow mode and an ext_authz filter.

Istio's pilot/pkg/security/authz/builder/builder.go with ``IsCustomBuilder`` (``build``,
``buildHTTP``, ``buildTCP``, ``getBadCustomDenyRules``, ``policyName``):

- the CUSTOM policies are grouped by ``provider.name``, in name order; each rule is an RBAC policy of
  action DENY named ``istio-ext-authz-<provider>-ns[NS]-policy[NAME]-rule[N]``;
- a usable provider gets an RBAC filter whose ``shadow_rules`` are those policies
  (``shadow_rules_stat_prefix: istio_ext_authz_``): it enforces nothing and records the policy that
  matched, and the provider's ext_authz filter right after it runs only when that record starts with
  ``istio-ext-authz-<provider>`` (pilot.translate.ext_authz). A request no CUSTOM policy matches never
  reaches the authorizer;
- on a TCP chain only gRPC providers have a filter (``envoy.filters.network.ext_authz``); an HTTP
  provider's policies are left out there, as Istio does;
- a provider that is missing, has errors, or whose service is not in the registry, and every
  provider when a workload's CUSTOM policies name more than one (Istio's default, without
  ``PILOT_ENABLE_MULTIPLE_CUSTOM_AUTHZ_PROVIDERS``), gets a DENY filter of those policies named
  ``…-deny-due-to-bad-CUSTOM-action``: what would have been sent to it is denied.

Two choices of pilot's: a dry-run (``istio.io/dry-run``) CUSTOM policy is left out, neither sent to the
provider nor enforced (Istio 1.26 drops it; later Istio puts it in the RBAC filter's enforced
``rules``, where its DENY would enforce); and a CUSTOM policy that cannot be translated denies
everything for its workloads (``ns[NS]-policy[NAME]-untranslatable``), as other actions do
(pilot.translate.authz_policies), instead of being skipped.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from envoy.config.listener.v3 import listener_components_pb2 as lc
from envoy.config.rbac.v3 import rbac_pb2
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2 as http_rbac_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from envoy.extensions.filters.network.rbac.v3 import rbac_pb2 as network_rbac_pb2

from pilot.translate import authz_policies as ap
from pilot.translate import authz_rules as r
from pilot.translate import ext_authz as ea
from pilot.translate.listeners import typed

log = logging.getLogger("pilot.translate.authz")

BAD_CUSTOM_SUFFIX = "-deny-due-to-bad-CUSTOM-action"


def _by_provider(
    policies: Sequence[ap.AuthorizationPolicyObject],
) -> dict[str, list[ap.AuthorizationPolicyObject]]:
    groups: dict[str, list[ap.AuthorizationPolicyObject]] = {}
    for policy in policies:
        groups.setdefault(policy.spec.provider.name, []).append(policy)
    return dict(sorted(groups.items()))


class _Plan:
    """What each provider of one chain gets: its rules and its provider, or the deny of them."""

    def __init__(
        self,
        policies: Sequence[ap.AuthorizationPolicyObject],
        trust: r.TrustDomains,
        providers: Mapping[str, ea.ExtAuthzProvider],
        for_tcp: bool,
    ) -> None:
        self.failed: dict[str, r.Policy] = {}
        self.groups: list[tuple[ea.ExtAuthzProvider, dict[str, r.Policy]]] = []
        groups = _by_provider(policies)
        several = len(groups) > 1
        for name, group in groups.items():
            rules, failed = ap.build_rules(group, r.DENY, trust, for_tcp, ea.policy_prefix(name))
            self.failed |= failed
            provider = providers.get(name) or ea.missing(name, providers)
            if several:
                provider = ea.ExtAuthzProvider(
                    name, error=f"a workload may use one CUSTOM provider, found {sorted(groups)}"
                )
            if provider.error:
                log.debug(
                    "CUSTOM action of provider %s denies what its rules match: %s", name, provider.error
                )
            self.groups.append((provider, rules))


def _bad(rules: Mapping[str, r.Policy]) -> rbac_pb2.RBAC:
    return rbac_pb2.RBAC(action=r.DENY, policies={k + BAD_CUSTOM_SUFFIX: v for k, v in sorted(rules.items())})


def _shadow(rules: Mapping[str, r.Policy]) -> rbac_pb2.RBAC:
    return rbac_pb2.RBAC(action=r.DENY, policies=dict(sorted(rules.items())))


def http_filters(
    policies: Sequence[ap.AuthorizationPolicyObject],
    trust: r.TrustDomains,
    providers: Mapping[str, ea.ExtAuthzProvider],
) -> list[hcm_pb2.HttpFilter]:
    """The HTTP filters of the CUSTOM ``policies`` of one proxy, in order."""
    if not policies:
        return []
    plan = _Plan(policies, trust, providers, for_tcp=False)
    out: list[hcm_pb2.HttpFilter] = []
    if plan.failed:
        out.append(_http_rbac(http_rbac_pb2.RBAC(rules=rbac_pb2.RBAC(action=r.DENY, policies=plan.failed))))
    for provider, rules in plan.groups:
        config = ea.http_filter_config(provider)
        if provider.error or config is None:
            out.append(_http_rbac(http_rbac_pb2.RBAC(rules=_bad(rules))))
        elif rules:
            rbac = http_rbac_pb2.RBAC(
                shadow_rules=_shadow(rules), shadow_rules_stat_prefix=ea.EXT_AUTHZ_SHADOW_STAT_PREFIX
            )
            out.append(_http_rbac(rbac))
            out.append(hcm_pb2.HttpFilter(name=ea.HTTP_EXT_AUTHZ_FILTER, typed_config=typed(config)))
    return out


def network_filters(
    policies: Sequence[ap.AuthorizationPolicyObject],
    trust: r.TrustDomains,
    providers: Mapping[str, ea.ExtAuthzProvider],
) -> list[lc.Filter]:
    """The network filters of the CUSTOM ``policies`` of one proxy, in order, for a TCP chain."""
    if not policies:
        return []
    plan = _Plan(policies, trust, providers, for_tcp=True)
    out: list[lc.Filter] = []
    if plan.failed:
        failed = rbac_pb2.RBAC(action=r.DENY, policies=plan.failed)
        out.append(_network_rbac(network_rbac_pb2.RBAC(rules=failed, stat_prefix=ap.TCP_STAT_PREFIX)))
    for provider, rules in plan.groups:
        if provider.error:
            out.append(
                _network_rbac(network_rbac_pb2.RBAC(rules=_bad(rules), stat_prefix=ap.TCP_STAT_PREFIX))
            )
            continue
        config = ea.network_filter_config(provider)
        if config is None or not rules:
            continue  # an HTTP provider has no TCP filter (Istio ignores its policies on TCP chains)
        rbac = network_rbac_pb2.RBAC(
            shadow_rules=_shadow(rules),
            stat_prefix=ap.TCP_STAT_PREFIX,
            shadow_rules_stat_prefix=ea.EXT_AUTHZ_SHADOW_STAT_PREFIX,
        )
        out.append(_network_rbac(rbac))
        out.append(lc.Filter(name=ea.NETWORK_EXT_AUTHZ_FILTER, typed_config=typed(config)))
    return out


def _http_rbac(config: http_rbac_pb2.RBAC) -> hcm_pb2.HttpFilter:
    return hcm_pb2.HttpFilter(name=ap.HTTP_RBAC_FILTER, typed_config=typed(config))


def _network_rbac(config: network_rbac_pb2.RBAC) -> lc.Filter:
    return lc.Filter(name=ap.NETWORK_RBAC_FILTER, typed_config=typed(config))


__all__ = ["BAD_CUSTOM_SUFFIX", "http_filters", "network_filters"]
