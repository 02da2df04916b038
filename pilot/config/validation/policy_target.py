"""Where a security policy applies: its ``selector`` or ``targetRef``/``targetRefs``, checked as Istio's
``validateWorkloadSelector`` and ``validatePolicyTargetReference(s)`` (pkg/config/validation/validation.go)
check them for PeerAuthentication, AuthorizationPolicy and RequestAuthentication.
"""

from __future__ import annotations

from collections.abc import Sequence

from pilot._gen import security_pb2 as sec
from pilot.config.kinds import GATEWAY_API_GROUP
from pilot.config.validation.common import Report, at, check_selector_labels, item

# The one GatewayClass a policy may attach to (Istio's constants.WaypointGatewayClassName).
WAYPOINT_CLASS = "istio-waypoint"
# The kinds a policy may target (Istio 1.22+): a Gateway API Gateway, a GatewayClass (mesh-wide for its
# gateways), and for waypoints a Service or ServiceEntry.
TARGET_KINDS = {
    GATEWAY_API_GROUP: ("Gateway", "GatewayClass"),
    "": ("Service",),
    "networking.istio.io": ("ServiceEntry",),
}


def check_policy_scope(
    selector: sec.WorkloadSelector | None,
    target_refs: Sequence[tuple[str, sec.PolicyTargetReference]],
    path: str,
    report: Report,
) -> None:
    """``selector`` (None when unset) and the ``(path, reference)`` of each set ``targetRef`` and
    ``targetRefs`` item of a policy."""
    if selector is not None:
        labels_path = at(at(path, "selector"), "matchLabels")
        report.check_all(labels_path, check_selector_labels(selector.match_labels))
    # validateOneOfSelectorType: at most one of selector, targetRef and targetRefs.
    fields = {where.rpartition("[")[0] or where for where, _ in target_refs}
    if (selector is not None) + len(fields) > 1:
        report.error(path, "only one of targetRefs or workloadSelector can be set")
    for where, ref in target_refs:
        if _target_ref(ref, where, report):
            _waypoint_only(ref, where, report)


def _waypoint_only(ref: sec.PolicyTargetReference, path: str, report: Report) -> None:
    """Istio's ShouldAttachPolicy (pilot/pkg/model/policyattachment.go) attaches a targetRef to a
    Service, a ServiceEntry or a GatewayClass only to waypoints (a GatewayClass only from the root
    namespace and only ``istio-waypoint``); pilot serves no waypoint, so such a reference selects
    no sidecar and no gateway here."""
    if ref.kind in ("Service", "ServiceEntry"):
        report.warn(
            path,
            f"a targetRef to a {ref.kind} attaches the policy only to the waypoints of {ref.name!r}; "
            "pilot serves no waypoint (no ambient mode), so it selects no sidecar and no gateway",
        )
    elif ref.kind == "GatewayClass" and ref.group == GATEWAY_API_GROUP:
        which = (
            "only to waypoints, from a policy in the root namespace; pilot serves no waypoint"
            if ref.name == WAYPOINT_CLASS
            else f"to nothing: only GatewayClass {WAYPOINT_CLASS!r} (waypoints) can be targeted"
        )
        report.warn(path, f"a targetRef to a GatewayClass attaches the policy {which}; it selects no proxy")


def _target_ref(ref: sec.PolicyTargetReference, path: str, report: Report) -> bool:
    """Istio's validatePolicyTargetReference, the same for AuthorizationPolicy and
    RequestAuthentication; whether the kind is one a policy may target."""
    if not ref.name:
        report.error(at(path, "name"), "name is required in targetRef")
    if ref.namespace:
        report.error(
            at(path, "namespace"),
            "targetRef namespace must not be set; cross namespace referencing is not supported",
        )
    # Istio compares canonical groups: "" is "core".
    allowed = TARGET_KINDS.get("" if ref.group == "core" else ref.group)
    if allowed is None or ref.kind not in allowed:
        kinds = ", ".join(
            f"{group or 'core'}/{kind}" for group, names in TARGET_KINDS.items() for kind in names
        )
        report.error(path, f"targetRef must be to one of {kinds} but was {ref.group}/{ref.kind}")
        return False
    return True


def target_refs_of(
    spec: sec.AuthorizationPolicy | sec.RequestAuthentication, path: str = ""
) -> list[tuple[str, sec.PolicyTargetReference]]:
    """The policy's targets with their paths: the older single ``targetRef``, then ``targetRefs``."""
    refs = [(at(path, "targetRef"), spec.targetRef)] if spec.HasField("targetRef") else []
    refs += [(item(at(path, "targetRefs"), index), ref) for index, ref in enumerate(spec.targetRefs)]
    return refs
