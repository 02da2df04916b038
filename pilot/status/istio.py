"""An Istio object's status as istiod writes it (istio.io/api meta/v1alpha1 IstioStatus):

- ``conditions``: the ``Reconciled`` condition of distribution tracking, "N/M proxies up to date.",
  True when every proxy that uses the object runs its current version (istiod's
  pilot/pkg/status/distribution/state.go ``ReconcileStatuses``). pilot adds what istiod cannot say:
  when a proxy rejected what the object produced (a NACK traced to it, pilot.push.holds), the
  condition is False with reason ``ProxyRejected`` and the proxy's error in its message;
- ``validationMessages``: the analyzers' findings on the object, as istiod's analysis controller
  writes them (AnalysisMessageBase: type name and code, level, documentation URL; the text stays in
  ``pilot analyze`` and /debug/configz, as Istio's does).

Times and generations are added where the status is written (pilot.sources.kube_status_fields).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pilot.inspect.messages import Message
from pilot.push.holds import ObjectRejection
from pilot.status.distribution import Progress

Json = dict[str, Any]

RECONCILED = "Reconciled"
PROXY_REJECTED = "ProxyRejected"
# istio pkg/url ConfigAnalysis, with the ref istiod's status controller adds.
ANALYSIS_DOCS = "https://istio.io/latest/docs/reference/config/analysis/{code}/?ref=status-controller"
# analysis/v1alpha1 AnalysisMessageBase.Level, as protojson writes the enum.
LEVELS = {"Error": "ERROR", "Warning": "WARNING", "Info": "INFO"}
# A condition's message is bounded by the Gateway API at 32 KiB; an Istio status has no bound, but a
# proxy's error can be long: keep it readable.
MAX_ERROR = 1024


def reconciled(progress: Progress, rejections: Sequence[ObjectRejection] = ()) -> Json:
    """The ``Reconciled`` condition of one object."""
    if not rejections:
        return {
            "type": RECONCILED,
            "status": "True" if progress.complete else "False",
            "message": str(progress),
        }
    first = rejections[0]
    error = first.error if len(first.error) <= MAX_ERROR else first.error[:MAX_ERROR] + " ..."
    others = f" (and {len(rejections) - 1} more proxies)" if len(rejections) > 1 else ""
    kind = first.type_url.rpartition(".")[2]
    message = f"{progress} Rejected by proxy {first.proxy}{others} in {kind} {first.resource}: {error}"
    return {"type": RECONCILED, "status": "False", "reason": PROXY_REJECTED, "message": message}


def validation_messages(messages: Sequence[Message]) -> list[Json]:
    """Each distinct (code, level) once, in the analyzers' order."""
    out: list[Json] = []
    seen: set[tuple[str, str]] = set()
    for message in messages:
        code, level = message.type.code, LEVELS[message.type.level]
        if (code, level) in seen:
            continue
        seen.add((code, level))
        item: Json = {"type": {"name": message.type.name, "code": code}, "level": level}
        if code.startswith("IST"):  # pilot's own codes have no page on istio.io
            item["documentationUrl"] = ANALYSIS_DOCS.format(code=code.lower())
        out.append(item)
    return out


def istio_status(
    progress: Progress, messages: Sequence[Message], rejections: Sequence[ObjectRejection] = ()
) -> Json:
    """The status of one Istio object, without times and generations."""
    status: Json = {"conditions": [reconciled(progress, rejections)]}
    found = validation_messages(messages)
    if found:
        status["validationMessages"] = found
    return status


__all__ = ["PROXY_REJECTED", "RECONCILED", "istio_status", "reconciled", "validation_messages"]
