"""Which security policies apply to a proxy: the one selection rule of AuthorizationPolicy,
RequestAuthentication and PeerAuthentication.

Istio's WorkloadPolicyMatcher.ShouldAttachPolicy (pilot/pkg/model/policyattachment.go), as
ListAuthorizationPolicies (authorization.go) and getConfigsForWorkload (authentication.go) call it:

- the policies of the proxy's namespace and of the root namespace (mesh-wide), each namespace's in
  istiod's precedence order (PushContext keeps them sorted); AuthorizationPolicies root namespace
  first (``lookupInNamespaces = [root, ns]``), the authentication policies the proxy's namespace
  first; a root-namespace policy with a selector applies to matching workloads of every namespace;
- a proxy that is not a Gateway API gateway (no label ``gateway.networking.k8s.io/gateway-name``)
  takes a policy whose ``selector`` is unset or a subset of its labels, and never one with a
  ``targetRef``;
- a Gateway API gateway takes, without targetRefs, a policy whose selector matches
  (ENABLE_SELECTOR_BASED_K8S_GATEWAY_POLICY, true by default), and otherwise a policy of its own
  namespace one of whose ``targetRef(s)`` is its Gateway (group ``gateway.networking.k8s.io``, kind
  ``Gateway``, the reference's namespace unset or its own);
- a targetRef to a ``Service``, a ``ServiceEntry`` or the ``istio-waypoint`` GatewayClass attaches
  only to waypoints. pilot serves no waypoint (no ambient mode), so such a policy selects no sidecar
  and no gateway, as in Istio (``pilot validate`` warns: pilot.config.validation.policy_target);
- PeerAuthentication has no targetRef: its selector alone decides.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TypeVar

from pilot._gen import security_pb2 as sec
from pilot.config.kinds import GATEWAY_API_GROUP
from pilot.config.objects import ConfigObject

GATEWAY_NAME_LABEL = "gateway.networking.k8s.io/gateway-name"

TargetablePolicy = sec.RequestAuthentication | sec.AuthorizationPolicy
P = TypeVar("P", sec.RequestAuthentication, sec.AuthorizationPolicy, sec.PeerAuthentication)


def target_refs(spec: TargetablePolicy) -> Sequence[sec.PolicyTargetReference]:
    """``targetRefs``, or the older single ``targetRef`` (Istio's GetTargetRefs)."""
    if len(spec.targetRefs):
        return spec.targetRefs
    return [spec.targetRef] if spec.HasField("targetRef") else []


def selector_matches(selector: sec.WorkloadSelector | None, labels: Mapping[str, str]) -> bool:
    """Istio's ``labels.Instance.SubsetOf``: an unset or empty selector matches every workload."""
    if selector is None:
        return True
    return all(labels.get(key) == value for key, value in selector.match_labels.items())


def _gateway_ref(ref: sec.PolicyTargetReference, gateway: str, namespace: str) -> bool:
    # Istio's matchesGroupKind compares canonical groups: "" is "core", never the Gateway API's.
    return (
        ref.group == GATEWAY_API_GROUP
        and ref.kind == "Gateway"
        and ref.name == gateway
        and ref.namespace in ("", namespace)
    )


def should_attach(
    spec: TargetablePolicy | sec.PeerAuthentication,
    policy_namespace: str,
    namespace: str,
    labels: Mapping[str, str],
) -> bool:
    """Whether a policy of ``policy_namespace`` applies to a workload of ``namespace`` with ``labels``
    (a non-waypoint proxy: pilot serves no waypoint)."""
    selector = spec.selector if spec.HasField("selector") else None
    if isinstance(spec, sec.PeerAuthentication):
        return selector_matches(selector, labels)
    refs = target_refs(spec)
    gateway = labels.get(GATEWAY_NAME_LABEL)
    if not refs:
        return selector_matches(selector, labels)
    if gateway is None or policy_namespace != namespace:
        return False
    return any(_gateway_ref(ref, gateway, namespace) for ref in refs)


def policies_for(
    policies: Iterable[ConfigObject[P]],
    namespace: str,
    labels: Mapping[str, str],
    root_namespace: str,
    *,
    root_first: bool = False,
) -> list[ConfigObject[P]]:
    """The policies that apply to a workload: its namespace's, then the root namespace's
    (``root_first``: the other way round, as for AuthorizationPolicies), each in the given order."""
    by_namespace: dict[str, list[ConfigObject[P]]] = {}
    for policy in policies:
        by_namespace.setdefault(policy.namespace, []).append(policy)
    lookup = dict.fromkeys((root_namespace, namespace) if root_first else (namespace, root_namespace))
    return [
        policy
        for ns in lookup
        for policy in by_namespace.get(ns, ())
        if should_attach(policy.spec, policy.namespace, namespace, labels)
    ]


__all__ = [
    "GATEWAY_API_GROUP",
    "GATEWAY_NAME_LABEL",
    "policies_for",
    "selector_matches",
    "should_attach",
    "target_refs",
]
