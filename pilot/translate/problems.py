"""What translation could not take as written, per view: config key → reasons, carried on the view's
Snapshot (``Snapshot.problems``) so ``/debug/configz`` shows them on their objects, and counted in
``pilot_translation_failures_total{kind}``.

Each problem is one translation already handled safely (security fails closed): an
AuthorizationPolicy that passed validation and cannot be translated becomes, for the workloads it
selects, a DENY of everything named ``ns[NS]-policy[NAME]-untranslatable``
(pilot.translate.authz_policies). Whether a policy translates depends on the policy and the mesh's
trust domains only, so it is found once per push context, not once per view.
"""

from __future__ import annotations

from collections.abc import Hashable
from functools import partial
from types import MappingProxyType

from pilot import metrics
from pilot.cache.snapshot import Problems
from pilot.translate import authz_policies as ap
from pilot.translate import authz_rules as r
from pilot.translate.context import PushContext
from pilot.translate.proxy import ProxyView

NONE: Problems = MappingProxyType({})


def _authorization_problem(policy: ap.AuthorizationPolicyObject, trust: r.TrustDomains) -> str | None:
    reason = ap.untranslatable(policy, trust)
    if reason is None:
        return None
    metrics.translation_failures.labels(policy.kind).inc()
    return (
        f"cannot be translated ({reason}): the workloads it selects deny every request "
        f"(RBAC policy {ap.untranslatable_name(policy)})"
    )


def translation_problems(view: ProxyView, context: PushContext) -> Problems:
    """The config objects (by ConfigKey) that apply to ``view`` and that translation could not take,
    with why."""
    if not context.authorization_policies or view.proxyless_grpc:
        # Proxyless gRPC applications get their RBAC from pilot.translate.grpc_* (not built here).
        return NONE
    mesh = context.mesh
    trust = r.TrustDomains((mesh.trust_domain, *mesh.trust_domain_aliases))
    buckets = ap.applicable(context.authorization_policies, view.namespace, view.labels, mesh.root_namespace)
    found: dict[Hashable, tuple[str, ...]] = {}
    for policy in (*buckets.custom, *buckets.audit, *buckets.deny, *buckets.allow):
        key = ("untranslatable", policy.key)
        reason = context.derived(key, partial(_authorization_problem, policy, trust))
        if reason is not None:
            found[policy.key] = (reason,)
    return MappingProxyType(found) if found else NONE


__all__ = ["NONE", "Problems", "translation_problems"]
