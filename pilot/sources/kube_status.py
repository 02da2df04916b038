"""StatusWriter: pilot's view of each config object written to the object's ``status`` subresource.

What is written comes from elsewhere, as a mapping ConfigKey → status (a Gateway API object's
conditions, computed by the conversion that /debug/configz shows; an Istio object's ``Reconciled``
condition and validation messages, pilot.status). The writer only decides when and how, as istiod's
status controller does (pilot/pkg/status, pilot/pkg/config/kube/gateway/status.go):

- **only on change.** The status is finished against the one the object holds now (times and
  generations, pilot.sources.kube_status_fields) and written only when they differ, so a restart
  or a status-only watch event writes nothing;
- **rate-limited, coalescing.** One object is written at most once per ``min_interval``; a change
  that comes sooner waits, and only the newest status goes out when the interval has passed (each
  round computes the statuses afresh). At most ``max_writes`` writes per round;
- **conflicts and errors.** A write is a PUT of the object's status at the resourceVersion last
  seen; a 409 Conflict (someone wrote the object meanwhile) reads the object again and retries it
  after a backoff, as does any other error; 404 (deleted meanwhile) drops it;
- **off the push path.** ``run`` is a task of its own; the writes are blocking HTTP in a worker
  thread. A slow or failing API server delays statuses, never a push.

Which objects: those the source has seen (``seen``: the watched Istio and Gateway API objects, each
with its resource, resourceVersion, generation and current status). Time is a parameter (``clock``
for intervals, ``wall`` for condition timestamps), so tests drive ``write_round`` with no sleeping.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pilot import metrics
from pilot.config.objects import ConfigKey
from pilot.sources.kube_api import ApiError, Resource, WatchOptions, describe
from pilot.sources.kube_status_fields import Json, finish
from pilot.sources.kube_writes import get_object, send_json

log = logging.getLogger("pilot.sources.kube_status")

# Called on the event loop each round: takes what it needs of the loop's state and returns the
# computation of the statuses, which runs in the writer's thread (it may take a while: analyzers).
Desired = Callable[[], Callable[[], Mapping[ConfigKey, Json]]]


def utc_now() -> str:
    """RFC 3339 UTC at second precision, as metav1.Time serializes."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class SeenObject:
    """What the writer needs of one watched object, as last seen (from the watch, or a write's answer)."""

    resource: Resource
    kind: str  # the object's own kind (Gateway, not pilot's Gateway.gateway.networking.k8s.io)
    namespace: str  # "" for a cluster-scoped object
    name: str
    resource_version: str
    generation: int
    status: Json

    @classmethod
    def of(cls, resource: Resource, obj: Mapping[str, Any]) -> SeenObject:
        metadata = obj.get("metadata") or {}
        status = obj.get("status")
        return cls(
            resource,
            str(obj.get("kind") or resource.kind),
            str(metadata.get("namespace") or ""),
            str(metadata.get("name") or ""),
            str(metadata.get("resourceVersion") or ""),
            int(metadata.get("generation") or 0),
            status if isinstance(status, dict) else {},
        )

    @property
    def path(self) -> str:
        """The object's URL path (its status subresource is ``path + "/status"``)."""
        return f"{self.resource.path(self.namespace or None)}/{self.name}"


@dataclass(frozen=True, slots=True)
class StatusOptions:
    """How often statuses are compared and written."""

    interval: float = 1.0  # seconds between two rounds
    min_interval: float = 5.0  # one object is written at most once per this many seconds
    max_writes: int = 100  # per round; the rest waits for the next
    watch: WatchOptions = field(default_factory=WatchOptions)  # request timeouts and the backoff


@dataclass(frozen=True, slots=True)
class RoundResult:
    """What one round did, by object."""

    written: tuple[ConfigKey, ...] = ()
    unchanged: int = 0
    waiting: tuple[ConfigKey, ...] = ()  # rate-limited or backing off
    conflicts: tuple[ConfigKey, ...] = ()
    failed: tuple[ConfigKey, ...] = ()


@dataclass(slots=True)
class _Track:
    last_write: float | None = None
    failures: int = 0
    retry_at: float = 0.0
    # The object as our last write (or a re-read after a conflict) left it, valid while the watch
    # still shows the resourceVersion it replaced: the watch's copy lags behind our own write.
    known: SeenObject | None = None
    replaced: str = ""


class StatusWriter:
    def __init__(
        self,
        api_client: Any,
        seen: Callable[[], Mapping[ConfigKey, SeenObject]],
        options: StatusOptions | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], str] = utc_now,
    ) -> None:
        self._api = api_client
        self._seen = seen
        self.options = options or StatusOptions()
        self._clock = clock
        self._wall = wall
        self._tracks: dict[ConfigKey, _Track] = {}
        self.rounds = 0
        self.writes = 0

    async def run(self, desired: Desired, ready: asyncio.Event) -> None:
        """Once ``ready`` (the source has listed everything), a round every ``interval`` until cancelled."""
        await ready.wait()
        while True:
            try:
                compute = desired()
                seen = dict(self._seen())  # the watch's copies, taken on the loop that updates them
                result = await asyncio.to_thread(self._round, compute, seen)
            except Exception:  # a bug in a status computation: statuses wait, pushes do not
                log.exception("status round failed")
            else:
                if result.written or result.failed:
                    log.info(
                        "status: %d written, %d conflicts, %d failed, %d waiting",
                        len(result.written),
                        len(result.conflicts),
                        len(result.failed),
                        len(result.waiting),
                    )
            await asyncio.sleep(self.options.interval)

    def _round(
        self, compute: Callable[[], Mapping[ConfigKey, Json]], seen: Mapping[ConfigKey, SeenObject]
    ) -> RoundResult:
        return self.write_round(compute(), seen)

    def write_round(
        self, desired: Mapping[ConfigKey, Json], seen: Mapping[ConfigKey, SeenObject] | None = None
    ) -> RoundResult:
        """Compare every desired status with its object's and write those that differ and may be
        written now. ``seen``: the watched objects (default: ``seen()`` now). Blocking (HTTP)."""
        self.rounds += 1
        seen = self._seen() if seen is None else seen
        now = self._clock()
        for key in self._tracks.keys() - seen.keys():
            del self._tracks[key]  # the object is gone
        written: list[ConfigKey] = []
        waiting: list[ConfigKey] = []
        conflicts: list[ConfigKey] = []
        failed: list[ConfigKey] = []
        unchanged = 0
        for key in sorted(desired.keys() & seen.keys()):
            track = self._tracks.setdefault(key, _Track())
            current = seen[key]
            if track.known is not None and current.resource_version == track.replaced:
                current = track.known
            wanted = finish(
                desired[key], current.status, current.generation, current.resource.group, self._wall()
            )
            if wanted == current.status:
                unchanged += 1
                track.failures = 0
                continue
            limited = track.last_write is not None and now - track.last_write < self.options.min_interval
            if limited or now < track.retry_at or len(written) + len(failed) >= self.options.max_writes:
                waiting.append(key)
                continue
            outcome = self._write(key, track, current, seen[key].resource_version, wanted, now)
            if outcome == "written":
                written.append(key)
            elif outcome == "conflict":
                conflicts.append(key)
                failed.append(key)
            elif outcome == "failed":
                failed.append(key)
        return RoundResult(tuple(written), unchanged, tuple(waiting), tuple(conflicts), tuple(failed))

    def _write(
        self, key: ConfigKey, track: _Track, current: SeenObject, watched: str, status: Json, now: float
    ) -> str:
        """PUT ``status`` at ``current``'s resourceVersion; ``watched``: the resourceVersion the watch
        shows (what our own write's answer stands in for until the watch catches up)."""
        body = {
            "apiVersion": current.resource.api_version,
            "kind": current.kind,
            "metadata": {
                "name": current.name,
                **({"namespace": current.namespace} if current.namespace else {}),
                "resourceVersion": current.resource_version,
            },
            "status": status,
        }
        options = self.options.watch
        try:
            answer = send_json(self._api, "PUT", f"{current.path}/status", body, options)
        except Exception as err:  # an error status, or the API server unreachable: a backoff
            return self._failed(key, track, current, watched, err)
        metrics.kube_status_writes.labels("written").inc()
        self.writes += 1
        track.last_write = now
        track.failures = 0
        track.retry_at = 0.0
        if isinstance(answer, dict):
            track.known = SeenObject.of(current.resource, answer)
            track.replaced = watched
        log.debug("status of %s written at generation %d", key, current.generation)
        return "written"

    def _failed(
        self, key: ConfigKey, track: _Track, current: SeenObject, watched: str, err: Exception
    ) -> str:
        code = err.code if isinstance(err, ApiError) else 0
        track.failures += 1
        delay = self.options.watch.backoff(track.failures)
        track.retry_at = self._clock() + delay
        if code == 404:
            metrics.kube_status_writes.labels("gone").inc()
            track.retry_at = 0.0
            return "gone"
        if code == 409:
            metrics.kube_status_writes.labels("conflict").inc()
            log.info("status of %s: conflict (%s); read again, retrying in %.2gs", key, err, delay)
            try:
                fresh = get_object(self._api, current.path, self.options.watch)
            except Exception as again:  # the next round tries again from the watch's copy
                log.info("status of %s: reading it again failed: %s", key, describe(again))
            else:
                if fresh is not None:
                    track.known = SeenObject.of(current.resource, fresh)
                    track.replaced = watched
            return "conflict"
        metrics.kube_status_writes.labels("failed").inc()
        # Said once per object until it succeeds: a missing RBAC rule refuses every write.
        level = logging.WARNING if track.failures == 1 else logging.DEBUG
        log.log(level, "cannot write the status of %s: %s; retrying in %.2gs", key, describe(err), delay)
        return "failed"


__all__ = ["Desired", "RoundResult", "SeenObject", "StatusOptions", "StatusWriter", "utc_now"]
