"""Which security policies (RequestAuthentication, AuthorizationPolicy) apply to a proxy.

Istio's getConfigsForWorkload (pilot/pkg/model/authentication.go, authorization.go) with
WorkloadPolicyMatcher.ShouldAttachPolicy (pilot/pkg/model/policyattachment.go), waypoints aside:

- the policies of the proxy's namespace, then those of the root namespace (mesh-wide), each in
  istiod's precedence order (PushContext keeps them sorted);
- a proxy that is not a Gateway API gateway takes a policy whose ``selector`` is unset or a subset of
  its labels, and never one with a ``targetRef``;
- a Gateway API gateway (label ``gateway.networking.k8s.io/gateway-name``) takes a policy of its own
  namespace whose ``targetRef(s)`` name its Gateway (group ``gateway.networking.k8s.io``, kind
  ``Gateway``), and, without targetRefs, one whose selector matches
  (ENABLE_SELECTOR_BASED_K8S_GATEWAY_POLICY, true by default).

A root-namespace policy with a selector applies to matching workloads of every namespace, as in Istio.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TypeVar

from pilot._gen import security_pb2 as sec
from pilot.config.objects import ConfigObject

GATEWAY_NAME_LABEL = "gateway.networking.k8s.io/gateway-name"
GATEWAY_API_GROUP = "gateway.networking.k8s.io"

TargetablePolicy = sec.RequestAuthentication | sec.AuthorizationPolicy
P = TypeVar("P", sec.RequestAuthentication, sec.AuthorizationPolicy)


def target_refs(spec: TargetablePolicy) -> Sequence[sec.PolicyTargetReference]:
    """``targetRefs``, or the older single ``targetRef`` (Istio's GetTargetRefs)."""
    if len(spec.targetRefs):
        return spec.targetRefs
    return [spec.targetRef] if spec.HasField("targetRef") else []


def _selected(spec: TargetablePolicy, labels: Mapping[str, str]) -> bool:
    if not spec.HasField("selector"):
        return True
    return all(labels.get(key) == value for key, value in spec.selector.match_labels.items())


def should_attach(
    spec: TargetablePolicy, policy_namespace: str, namespace: str, labels: Mapping[str, str]
) -> bool:
    """Whether a policy of ``policy_namespace`` applies to a workload of ``namespace`` with ``labels``."""
    refs = target_refs(spec)
    gateway = labels.get(GATEWAY_NAME_LABEL)
    if gateway is None:
        return not refs and _selected(spec, labels)
    if not refs:
        return _selected(spec, labels)
    if policy_namespace != namespace:
        return False
    return any(
        ref.group == GATEWAY_API_GROUP
        and ref.kind == "Gateway"
        and ref.name == gateway
        and ref.namespace in ("", namespace)
        for ref in refs
    )


def policies_for(
    policies: Iterable[ConfigObject[P]], namespace: str, labels: Mapping[str, str], root_namespace: str
) -> list[ConfigObject[P]]:
    """The policies that apply to a workload, its namespace's first, then the root namespace's."""
    by_namespace: dict[str, list[ConfigObject[P]]] = {}
    for policy in policies:
        by_namespace.setdefault(policy.namespace, []).append(policy)
    lookup = [namespace] if namespace == root_namespace else [namespace, root_namespace]
    return [
        policy
        for ns in lookup
        for policy in by_namespace.get(ns, ())
        if should_attach(policy.spec, policy.namespace, namespace, labels)
    ]
