"""RoutePieces: the Envoy routes a push context made, kept for the next one when only routing changed.

A sidecar's route configurations are mostly the routes of each (VirtualService, port) and the
default route of each (service, port) without one. Those depend on the VirtualService (or service),
the port, and the scope they are translated in: its namespace and workload labels, the services it
sees (destination ports), its DestinationRules (hash policies) and the mesh settings (retries). A
context built from the previous one when only VirtualServices (and Pods, which only choose views)
changed inherits the previous context's pieces (``PushContext.build``): every other input is the
same object, and an unchanged VirtualService is the same ``VirtualServiceEntry``, so its routes are
copied instead of translated again; an edited one is a new entry and is translated.

Pieces are kept per scope (namespace, labels, Sidecar) and checked against the services the scope
sees (a Sidecar imports the services its VirtualServices route to, so those can change with a
VirtualService); each is keyed by the identity of what made it and holds it, so an id is never
reused while the piece is kept. Route messages in here are never changed: callers copy them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from envoy.config.route.v3 import route_components_pb2 as rc

from pilot.config.objects import ConfigKey
from pilot.translate.registry import Service
from pilot.translate.route_records import KeptConfiguration, RouteTemplates, TemplatedRoutes

ScopeKey = tuple[str, tuple[tuple[str, str], ...], ConfigKey | None]
Routes = Sequence[rc.Route]
_PENDING_BOUND = 64  # replacements carried before those no configuration waits for are dropped


@dataclass(slots=True)
class ScopePieces:
    """The routes made in one scope, and the services it saw then."""

    services: tuple[Service, ...]
    # id(maker) -> (maker, {(port, what): routes})
    routes: dict[int, tuple[object, dict[tuple[int, str], Routes]]] = field(default_factory=dict)
    # (port, DNS domain) -> the route configuration
    configurations: dict[tuple[int, str], KeptConfiguration] = field(default_factory=dict)
    # id of a VirtualServiceEntry of an earlier context -> the entry of the same key and
    # selection that replaced it in this one: the kept configurations that looked at it are
    # patched (pilot.translate.route_records) the first time they are asked for. A context whose
    # configurations were not asked for passes its replacements on, composed with the next ones.
    replaced: dict[int, object] = field(default_factory=dict)
    replaced_entries: list[object] = field(default_factory=list)  # held: their ids stay theirs
    # The route templates of VirtualServices written alike (pilot.translate.route_templates), made
    # in this context: never inherited, a template holds the scope's destination rules' answers.
    templates: RouteTemplates = field(default_factory=RouteTemplates)


class RoutePieces:
    """The routes one context made, per scope; see the module docstring. Not thread-safe (a push
    translates its views one after another)."""

    __slots__ = ("_gone", "_scopes")

    def __init__(
        self,
        inherited: RoutePieces | None = None,
        gone: Iterable[object] = (),
        replaced: Mapping[int, object] | None = None,
    ) -> None:
        """Empty, or ``inherited``'s pieces without those made by ``gone`` (the previous context's
        entries of the VirtualServices that changed); each scope's table is copied, so the previous
        context's pieces stay as they were. Whole route configurations are kept only if
        ``replaced`` is given: no VirtualService was added or removed, and every changed one kept its
        hosts, gateways, exportTo, name and creation time, so each looks at the same ones as before;
        ``replaced`` maps the id of each of ``gone`` to its new entry, and the configurations that
        looked at one are patched when asked for (``ScopePieces.replaced``)."""
        self._scopes: dict[ScopeKey, ScopePieces] = {}
        self._gone: list[object] = []
        if inherited is None:
            return
        gone = list(gone)  # held: no id in ``dropped`` or ``replaced`` is reused while they live
        dropped = {id(maker) for maker in gone}
        for key, pieces in inherited._scopes.items():
            kept = {made: entry for made, entry in pieces.routes.items() if made not in dropped}
            if replaced is None:
                self._scopes[key] = ScopePieces(pieces.services, kept)
                continue
            # Replacements the inherited configurations may still be waiting for (that context's
            # configurations were not all asked for), carried to this context's entries.
            pending = {old: replaced.get(id(new), new) for old, new in pieces.replaced.items()}
            pending.update(replaced)
            entries = [*pieces.replaced_entries, *gone]
            if len(pending) > _PENDING_BOUND:  # keep those some configuration still waits for
                waiting = set().union(*(c.consulted.keys() for c in pieces.configurations.values()))
                pending = {old: new for old, new in pending.items() if old in waiting}
                entries = [entry for entry in entries if id(entry) in pending]
            self._scopes[key] = ScopePieces(
                pieces.services, kept, dict(pieces.configurations), pending, entries
            )
        self._gone = gone

    def of_scope(self, key: ScopeKey, services: tuple[Service, ...]) -> ScopePieces:
        """The pieces of the scope ``key``, emptied if it saw other services when they were made."""
        found = self._scopes.get(key)
        if found is None or not _same(found.services, services):
            found = self._scopes[key] = ScopePieces(services)
        return found

    @staticmethod
    def routes(
        pieces: ScopePieces, maker: object, port: int, what: str, make: Callable[[], Sequence[rc.Route]]
    ) -> Routes:
        """The routes ``maker`` (a VirtualServiceEntry or a Service) makes on ``port`` (``what``
        names the kind of piece), made by ``make`` the first time."""
        entry = pieces.routes.get(id(maker))
        if entry is None or entry[0] is not maker:
            entry = pieces.routes[id(maker)] = (maker, {})
        by_port = entry[1]
        found = by_port.get((port, what))
        if found is None:
            made = make()
            found = by_port[(port, what)] = made if isinstance(made, TemplatedRoutes) else tuple(made)
        return found


def _same(a: tuple[Service, ...], b: tuple[Service, ...]) -> bool:
    return a is b or (len(a) == len(b) and all(x is y for x, y in zip(a, b, strict=True)))


__all__ = ["RoutePieces", "Routes", "ScopeKey", "ScopePieces"]
