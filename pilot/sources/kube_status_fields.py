"""A status as pilot computes it → the status to write on one Kubernetes object: what the API adds.

pilot computes statuses without times or generations (pilot.status, and the Gateway API conversion's
``Conversion.status``). Before a write they are finished against the status the object holds now:

- every condition gets ``observedGeneration`` (the object's ``metadata.generation``: the spec pilot
  judged) and ``lastTransitionTime``, kept from the object's condition of the same type while its
  ``status`` is the same (metav1.Condition: "the last time the condition transitioned from one status
  to another"); Istio's conditions also get ``lastProbeTime``, kept while nothing in them changed;
- an Istio object's status gets the top-level ``observedGeneration`` (Istio's IstioStatus);
- a route's ``parents`` written by other controllers (another ``controllerName``) are kept: the
  Gateway API lets several controllers share one route (RouteParentStatus), each owning its entries;
- listeners and parents are matched to the current ones by ``name`` and by ``parentRef``.

The finished status equals the current one exactly when nothing but time would change, so comparing
the two is how the writer knows not to write (pilot.sources.kube_status).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from pilot.config import kinds

Json = dict[str, Any]

CONTROLLER_NAME = "istio.io/gateway-controller"


def finish(
    desired: Mapping[str, Any], current: Mapping[str, Any], generation: int, group: str, now: str
) -> Json:
    """``desired`` with times and generations filled in against ``current`` (see the module docstring)."""
    out: Json = copy.deepcopy(dict(desired))
    istio = group in (kinds.NETWORKING_GROUP, kinds.SECURITY_GROUP)
    if "conditions" in out:
        out["conditions"] = _conditions(out["conditions"], current.get("conditions"), generation, now, istio)
    if "listeners" in out:
        olds = {item.get("name"): item for item in _dicts(current.get("listeners"))}
        for listener in out["listeners"]:
            old = olds.get(listener.get("name"), {})
            listener["conditions"] = _conditions(
                listener.get("conditions", []), old.get("conditions"), generation, now, istio
            )
    if "parents" in out:
        ours = []
        olds_by_ref = {
            _ref_key(item.get("parentRef")): item
            for item in _dicts(current.get("parents"))
            if item.get("controllerName") == CONTROLLER_NAME
        }
        for parent in out["parents"]:
            old = olds_by_ref.get(_ref_key(parent.get("parentRef")), {})
            parent["conditions"] = _conditions(
                parent.get("conditions", []), old.get("conditions"), generation, now, istio
            )
            ours.append(parent)
        others = [p for p in _dicts(current.get("parents")) if p.get("controllerName") != CONTROLLER_NAME]
        out["parents"] = [*others, *ours]
    if istio:
        out["observedGeneration"] = generation
    return out


def _conditions(new: Sequence[Json], old: Any, generation: int, now: str, istio: bool) -> list[Json]:
    olds = {item.get("type"): item for item in _dicts(old)}
    out = []
    for condition in new:
        item = {**condition, "observedGeneration": generation}
        before = olds.get(item.get("type"))
        same_status = before is not None and before.get("status") == item.get("status")
        item["lastTransitionTime"] = before.get("lastTransitionTime", now) if before and same_status else now
        if istio:
            unchanged = before is not None and all(before.get(field) == item.get(field) for field in _PROBED)
            item["lastProbeTime"] = before.get("lastProbeTime", now) if before and unchanged else now
        out.append(item)
    return out


# An Istio condition's probe time moves when any of these does.
_PROBED = ("status", "reason", "message", "observedGeneration")


def _dicts(value: Any) -> list[Json]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _ref_key(ref: Any) -> tuple[Any, ...]:
    """A parentRef's identity: its fields with the spec's defaults (group, kind Gateway)."""
    ref = ref if isinstance(ref, dict) else {}
    return (
        ref.get("group", kinds.GATEWAY_API_GROUP),
        ref.get("kind", "Gateway"),
        ref.get("namespace"),
        ref.get("name"),
        ref.get("sectionName"),
        ref.get("port"),
    )


__all__ = ["CONTROLLER_NAME", "Json", "finish"]
