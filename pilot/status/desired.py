"""ObjectStatuses: the status pilot wants on every Kubernetes config object, at one moment.

- a Gateway API object: the status its conversion gives it (pilot.config.gateway_api.convert, the
  same ``Conversion.status`` /debug/configz shows; the conversion keeps its last answer while its
  inputs are the same objects, so this costs nothing between edits);
- an Istio object read from Kubernetes (origin ``kube:``): its ``Reconciled`` condition (how many of
  the proxies that use it run its current version, and a proxy's rejection) and the analyzers'
  messages (pilot.status.istio). An object the API server holds but pilot rejected (no version of it
  is served) still gets its validation messages.

The analyzers run once per store revision (and set of errors), not once per round.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from pilot.config import kinds
from pilot.config.gateway_api.convert import convert as convert_gateway_api
from pilot.config.objects import ConfigKey, FieldError
from pilot.config.store import StoreSnapshot
from pilot.inspect.analyzers import analyze
from pilot.inspect.mesh import Mesh
from pilot.inspect.messages import Message
from pilot.push.holds import ObjectRejection
from pilot.status.distribution import Progress, ProxyProgress, progress
from pilot.status.istio import Json, istio_status

KUBE_ORIGIN = "kube:"
_ISTIO_GROUPS = frozenset({kinds.NETWORKING_GROUP, kinds.SECURITY_GROUP})
_ISTIO_KINDS = frozenset(info.kind for info in kinds.KINDS.values() if info.group in _ISTIO_GROUPS)


class ObjectStatuses:
    """Computes the wanted statuses; keeps the analyzers' last answer."""

    def __init__(self) -> None:
        self._analyzed: tuple[int, tuple[FieldError, ...], dict[ConfigKey, list[Message]]] | None = None

    def compute(
        self,
        snapshot: StoreSnapshot,
        errors: Sequence[FieldError],
        rejections: Sequence[ObjectRejection],
        proxies: Iterable[ProxyProgress],
    ) -> dict[ConfigKey, Json]:
        out: dict[ConfigKey, Json] = dict(convert_gateway_api(snapshot.objects).status)
        istio = {
            key: obj
            for key, obj in snapshot.objects.items()
            if key.kind in _ISTIO_KINDS and obj.origin.startswith(KUBE_ORIGIN)
        }
        rejected: dict[ConfigKey, list[ObjectRejection]] = {}
        for rejection in rejections:
            rejected.setdefault(rejection.key, []).append(rejection)
        held = {key: frozenset(r.proxy for r in found) for key, found in rejected.items()}
        counts = progress(proxies, istio, held)
        messages = self._messages(snapshot, errors)
        # Rejected by validation, with no version served: named only by its origin's errors.
        unserved = {e.key for e in errors if e.key is not None and e.origin.startswith(KUBE_ORIGIN)}
        keys = set(istio) | {key for key in messages if key.kind in _ISTIO_KINDS and key in unserved}
        for key in keys:
            found = counts.get(key, Progress(0, 0))
            out[key] = istio_status(found, messages.get(key, ()), rejected.get(key, ()))
        return out

    def _messages(
        self, snapshot: StoreSnapshot, errors: Sequence[FieldError]
    ) -> dict[ConfigKey, list[Message]]:
        frozen = tuple(errors)
        if self._analyzed is not None and self._analyzed[:2] == (snapshot.revision, frozen):
            return self._analyzed[2]
        by_key: dict[ConfigKey, list[Message]] = {}
        for message in analyze(Mesh(list(snapshot.objects.values()), frozen)):
            if message.key is not None:
                by_key.setdefault(message.key, []).append(message)
        self._analyzed = (snapshot.revision, frozen, by_key)
        return by_key


__all__ = ["KUBE_ORIGIN", "ObjectStatuses"]
