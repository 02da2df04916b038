"""Held objects: a config object whose resource a proxy rejected stops at its last good version for
that proxy's view, while every other object's updates keep reaching the view.

Envoy applies a response whole or not at all: one rejected route in a route configuration shared
by many VirtualServices would otherwise freeze all of them for that proxy. On a NACK the server
tells the pusher (``pilot.server.callbacks.Rejection``): the view, the type, the snapshot's type
version and the resources rejected. Here they are traced to config objects through the snapshot's
``origins`` (pilot.translate.provenance); of those, the objects that changed since the view's last
build the proxy did not reject are the culprits. Each culprit is held for the view at its version in
that build (or left out when that build did not have it), and the view is translated again with
the held versions in place of the store's.

That earlier build stands for "what the proxy accepted": every build after it was rejected (a
rejection marks its build), and a hold is added only for a build made under the view's current
holds, so a NACK of a response already superseded by a held rebuild changes nothing. A later edit
(or removal) of the held object clears its hold and the new version is tried. A rejection the
snapshot cannot trace (the error names no resource, or no object it came from changed) keeps the
server's rule alone: the rejected versions are not sent again, newer ones are.

Runs on the pusher's event loop, except ``store_for``, which the pusher calls there too before it
hands the held store to the translator's thread.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Protocol

from pilot import metrics
from pilot.cache.snapshot import Origins, Snapshot
from pilot.config.objects import ConfigKey, ConfigObject
from pilot.config.store import StoreSnapshot

__all__ = ["HISTORY", "Holds", "ObjectRejection", "RejectionReport"]

log = logging.getLogger("pilot.push.holds")

HISTORY = 4  # builds remembered per view: a NACK answers one of the last few responses


class RejectionReport(Protocol):
    """What the server reports of a NACK (``pilot.server.callbacks.Rejection``, structurally)."""

    @property
    def view(self) -> Hashable: ...
    @property
    def node_id(self) -> str: ...
    @property
    def type_url(self) -> str: ...
    @property
    def type_version(self) -> str: ...
    @property
    def resources(self) -> tuple[str, ...]: ...
    @property
    def error(self) -> str: ...


@dataclass(frozen=True, slots=True)
class ObjectRejection:
    """One object held back for one view: what /debug/configz shows on the object."""

    key: ConfigKey
    origin: str  # the file (or kube:...) of the rejected version
    view: str
    proxy: str  # node id of the proxy that rejected it
    type_url: str
    resource: str  # the rejected resource it went into (one of them)
    error: str  # the proxy's error, at most 4 KiB
    at: float  # wall-clock seconds
    rejected_revision: int  # store revision of the rejected version (-1: its removal)
    held_revision: int | None  # store revision of the version served instead; None: left out


@dataclass(slots=True)
class _Hold:
    rejected: ConfigObject | None  # the version the proxy rejected (None: its removal)
    held: ConfigObject | None  # what the view is built with instead (None: left out)
    report: ObjectRejection


@dataclass(slots=True)
class _Build:
    """What a NACK is traced with, of one snapshot (not the snapshot: no resource is kept alive)."""

    versions: Mapping[str, str]  # type URL -> the type's version
    origins: Origins  # Snapshot.origins
    objects: Mapping[ConfigKey, ConfigObject]  # what it was translated from (holds applied)
    generation: int  # the view's hold generation when it was built
    rejected: bool = False


@dataclass(slots=True)
class _View:
    builds: list[_Build] = field(default_factory=list)
    holds: dict[ConfigKey, _Hold] = field(default_factory=dict)
    generation: int = 0  # bumped whenever the holds change


class Holds:
    """The held objects of every view, and each view's last builds."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._views: dict[Hashable, _View] = {}
        self._clock = clock

    def rejections(self) -> list[ObjectRejection]:
        """Every object held back, for every view (oldest first)."""
        found = [hold.report for state in self._views.values() for hold in state.holds.values()]
        return sorted(found, key=lambda r: (r.at, r.key))

    def built(self, view: Hashable, snapshot: Snapshot, context: object) -> None:
        """``snapshot`` of ``view`` was built from ``context`` (a PushContext: its ``objects``)."""
        objects = getattr(context, "objects", None)
        if not isinstance(objects, Mapping):
            return  # a context built by hand: nothing to trace rejections to
        state = self._views.setdefault(view, _View())
        versions = {type_url: typed.version for type_url, typed in snapshot.by_type.items()}
        if state.builds and state.builds[-1].versions == versions and state.builds[-1].objects is objects:
            return
        state.builds.append(_Build(versions, snapshot.origins, objects, state.generation))
        del state.builds[:-HISTORY]

    def forget(self, view: Hashable) -> None:
        """``view`` has no stream left: forget its builds (its holds stay, for a proxy coming back)."""
        state = self._views.get(view)
        if state is not None:
            if state.holds:
                state.builds.clear()
            else:
                del self._views[view]

    def store_for(self, view: Hashable, context: object) -> StoreSnapshot | None:
        """The store to translate ``view`` from when it holds objects back: ``context``'s objects
        with every held one replaced (or left out). None when it holds nothing. A hold whose object
        changed since the proxy rejected it is cleared here: the new version is tried."""
        state = self._views.get(view)
        objects = getattr(context, "objects", None)
        if state is None or not state.holds or not isinstance(objects, Mapping):
            return None
        out = dict(objects)
        for key, hold in list(state.holds.items()):
            current = objects.get(key)
            if current is not hold.rejected:
                log.info(
                    "%s changed since proxy %s rejected it: view %s no longer holds it back",
                    key,
                    hold.report.proxy,
                    view,
                )
                del state.holds[key]
                state.generation += 1
            elif hold.held is None:
                out.pop(key, None)
            else:
                out[key] = hold.held
        self._count()
        if not state.holds:
            return None
        return StoreSnapshot(int(getattr(context, "revision", -1)), MappingProxyType(out))

    def on_rejected(self, rejection: RejectionReport) -> bool:
        """Trace ``rejection`` to config objects and hold them; True when the view must be built
        again (with the new holds)."""
        view = rejection.view
        state = self._views.get(view)
        short = rejection.type_url.rpartition(".")[2]  # RouteConfiguration, Listener, ...
        build = _find(state, rejection.type_url, rejection.type_version) if state is not None else None
        if state is None or build is None:
            log.info("%s NACK from %s: of a snapshot no longer kept; nothing held", short, rejection.node_id)
            return False
        if build.generation != state.generation:
            log.debug("%s NACK from %s: of a build the view's holds superseded", short, rejection.node_id)
            return False
        build.rejected = True
        origins = build.origins.get(rejection.type_url, {})
        traced: dict[ConfigKey, str] = {}
        for name in rejection.resources:
            for key in origins.get(name, ()):
                if isinstance(key, ConfigKey):
                    traced.setdefault(key, name)
        before = _accepted(state, build)
        culprits = sorted(key for key in traced if build.objects.get(key) is not before.get(key))
        if not culprits:
            log.info(
                "%s NACK from %s of %s cannot be traced to a changed config object; only the rejected "
                "versions are held back: %s",
                short,
                rejection.node_id,
                ", ".join(rejection.resources) or "resources the error does not name",
                rejection.error,
            )
            return False
        now = self._clock()
        for key in culprits:
            rejected, held = build.objects.get(key), before.get(key)
            version = rejected if rejected is not None else held
            report = ObjectRejection(
                key=key,
                origin=version.origin if version is not None else "",
                view=str(view),
                proxy=rejection.node_id,
                type_url=rejection.type_url,
                resource=traced[key],
                error=rejection.error,
                at=now,
                rejected_revision=rejected.revision if rejected is not None else -1,
                held_revision=held.revision if held is not None else None,
            )
            state.holds[key] = _Hold(rejected, held, report)
            metrics.config_rejections.labels(key.kind).inc()
            log.warning(
                "proxy %s rejected %s (%s, revision %d) in %s %s: %s; view %s %s until it is edited",
                rejection.node_id,
                key,
                report.origin,
                report.rejected_revision,
                short,
                report.resource,
                rejection.error,
                view,
                f"holds it at revision {held.revision}" if held is not None else "leaves it out",
            )
        state.generation += 1
        self._count()
        return True

    def _count(self) -> None:
        metrics.config_rejected_objects.set(sum(len(state.holds) for state in self._views.values()))


def _find(state: _View, type_url: str, type_version: str) -> _Build | None:
    """The newest build whose ``type_url`` resources have ``type_version``."""
    for build in reversed(state.builds):
        if build.versions.get(type_url) == type_version:
            return build
    return None


def _accepted(state: _View, rejected: _Build) -> Mapping[ConfigKey, ConfigObject]:
    """The objects of the newest build before ``rejected`` that no proxy rejected (empty: none)."""
    index = state.builds.index(rejected)
    for build in reversed(state.builds[:index]):
        if not build.rejected:
            return build.objects
    return {}
