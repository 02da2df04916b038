"""Scope: the config visible from one namespace, for one workload's labels and Sidecar (Istio's
SidecarScope): visible services, and the VirtualService and DestinationRule that apply to each host.
A push context makes each scope once (``PushContext.scope``)."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import TYPE_CHECKING, TypeVar, cast

from pilot._gen import networking_pb2 as nw
from pilot.config.objects import ConfigObject
from pilot.translate import hosts, sidecar_scope
from pilot.translate.config_entries import DestinationRuleEntry, VirtualServiceEntry, merge_rules
from pilot.translate.pieces import ScopePieces
from pilot.translate.registry import Service, visible

if TYPE_CHECKING:
    from pilot.translate.context import PushContext

log = logging.getLogger("pilot.translate.context")

_T = TypeVar("_T")


class InheritedKey:
    """A key of ``Scope.derived`` whose piece depends on the scope's Sidecar egress listeners alone
    (their services), so a scope that inherits another's (``Scope._inherit``) keeps it."""

    __slots__ = ()


class Scope:
    """The config visible from one namespace (Istio's default SidecarScope), for a workload with
    ``labels`` (they only choose among DestinationRules with a ``workloadSelector``). Read-only."""

    services: tuple[Service, ...]
    sidecar: sidecar_scope.SidecarScope
    _by_host: dict[str, Service]
    _virtual_services: tuple[VirtualServiceEntry, ...]
    _vs_exact: dict[str, list[int]]
    _vs_wildcard: list[int]
    _vs_by_host: dict[str, tuple[VirtualServiceEntry, ...]]

    def __init__(
        self,
        context: PushContext,
        namespace: str,
        labels: tuple[tuple[str, str], ...] = (),
        base: Scope | None = None,
        sidecar: ConfigObject[nw.Sidecar] | None = None,
        inherited: Scope | None = None,
    ) -> None:
        """``inherited``: this scope (no labels, no Sidecar) at the context ``context`` was built
        from, which saw the same services, DestinationRules and VirtualService hosts; its
        VirtualServices are taken with the edited ones replaced (``PushContext._replaced``)."""
        self.context = context
        self.namespace = namespace
        self.mesh = context.mesh
        self.labels = dict(labels)
        self._rules: dict[str, DestinationRuleEntry | None] = {}
        self._rule_index: dict[str, _RuleIndex] | None = None
        self._derived: dict[Hashable, object] = {}
        if inherited is not None:
            self._inherit(inherited, context._replaced)
            return
        if base is not None:  # the same namespace without labels: share what labels cannot change
            self.sidecar = base.sidecar
            self.services = base.services
            self._by_host = base._by_host
            self._virtual_services = base._virtual_services
            self._vs_exact = base._vs_exact
            self._vs_wildcard = base._vs_wildcard
            self._vs_by_host = base._vs_by_host
            self._rule_index = base._rules_by_namespace()
            return
        mesh_vs = [vs for vs in context.virtual_services if vs.for_mesh and visible(vs.export_to, namespace)]
        if sidecar is None:
            chosen = self._visible_services(context, namespace)
            self.sidecar = sidecar_scope.default_scope(
                namespace, tuple(chosen[h] for h in sorted(chosen)), context.mesh.allow_any
            )
        else:
            made = sidecar_scope.scope_of(namespace, sidecar, context.services, context.mesh.allow_any)
            mesh_vs = [
                vs for vs in mesh_vs if any(imports_virtual_service(listener, vs) for listener in made.egress)
            ]
            self.sidecar = _with_destinations(made, mesh_vs, context.services)
            chosen = {svc.hostname: svc for svc in self.sidecar.services}
        self.services = tuple(chosen[h] for h in sorted(chosen))
        self._by_host = chosen
        self._virtual_services = tuple(
            sorted(mesh_vs, key=lambda vs: vs.precedence_in(namespace)),
        )
        # Indexes, so a lookup per host is not a scan of every VirtualService / DestinationRule
        # (which made translating K services O(K²)). A VirtualService can match ``host`` only if
        # it names ``host`` exactly or has a wildcard host; only those are looked at.
        self._vs_exact = {}
        self._vs_wildcard = []
        for order, vs in enumerate(self._virtual_services):
            for vs_host in dict.fromkeys(vs.hosts):
                self._vs_exact.setdefault(vs_host, []).append(order)
            if any(hosts.is_wildcard(h) for h in vs.hosts):
                self._vs_wildcard.append(order)
        self._vs_by_host = {}

    def _inherit(self, inherited: Scope, replaced: Mapping[int, VirtualServiceEntry]) -> None:
        """Everything ``inherited`` indexed, with each replaced VirtualServiceEntry's successor
        (same key, hosts, exportTo, gateways and creation time, so the same place in every index)."""
        self.sidecar = inherited.sidecar
        # What depends on the egress listeners' services alone (pilot.translate.listeners).
        self._derived = {k: v for k, v in inherited._derived.items() if isinstance(k, InheritedKey)}
        self.services = inherited.services
        self._by_host = inherited._by_host
        self._rules = dict(inherited._rules)
        self._rule_index = inherited._rule_index
        self._vs_exact = inherited._vs_exact
        self._vs_wildcard = inherited._vs_wildcard
        self._virtual_services = tuple(replaced.get(id(vs), vs) for vs in inherited._virtual_services)
        by_host = dict(inherited._vs_by_host)
        for old_id, new in replaced.items():
            if any(hosts.is_wildcard(h) for h in new.hosts):
                by_host = {}  # a wildcard entry may rank for any host: found again when asked
                break
            for host in new.hosts:
                found = by_host.get(host)
                if found is not None:
                    by_host[host] = tuple(new if id(vs) == old_id else vs for vs in found)
        self._vs_by_host = by_host

    @staticmethod
    def _visible_services(context: PushContext, namespace: str) -> dict[str, Service]:
        """Every service exported to ``namespace``, one per hostname (what ``*/*`` imports)."""
        chosen: dict[str, Service] = {}
        for svc in context.services:
            if not visible(svc.export_to, namespace):
                continue
            current = chosen.get(svc.hostname)
            # Two ServiceEntries for one host: the proxy's own namespace wins, else the first.
            if current is None or (svc.namespace == namespace and current.namespace != namespace):
                if current is not None:
                    log.debug(
                        "host %s: %s shadows %s for namespace %s",
                        svc.hostname,
                        svc.key,
                        current.key,
                        namespace,
                    )
                chosen[svc.hostname] = svc
        return chosen

    @property
    def route_pieces(self) -> ScopePieces:
        """This scope's routes at its context (pilot.translate.pieces), shared by its views."""
        return self.derived(
            "route-pieces",
            lambda: self.context.route_pieces.of_scope(
                (self.namespace, tuple(sorted(self.labels.items())), self.sidecar.sidecar), self.services
            ),
        )

    def derived(self, key: Hashable, make: Callable[[], _T]) -> _T:
        """``make()``, once per scope and ``key``: what translation derives from a scope alone (its
        cluster targets, a cluster's hash policy) is the same for every view and generator using it.
        ``key`` must name both the piece and its inputs, e.g. ``("hash-policy", cluster)``."""
        try:
            return cast(_T, self._derived[key])
        except KeyError:
            made = self._derived[key] = make()
            return made

    @property
    def allow_any(self) -> bool:
        """The outbound traffic policy: the Sidecar's if it sets one, else the mesh's."""
        return self.sidecar.allow_any

    @property
    def catch_all_cluster(self) -> str:
        """Where unknown outbound traffic goes (sidecar_scope.SidecarScope.catch_all_cluster)."""
        return self.sidecar.catch_all_cluster

    def service(self, host: str) -> Service | None:
        return self._by_host.get(host)

    @property
    def mesh_virtual_services(self) -> tuple[VirtualServiceEntry, ...]:
        """Every mesh-bound VirtualService visible here, in istiod's order (``precedence_in``)."""
        return self._virtual_services

    def virtual_services(self, host: str) -> list[VirtualServiceEntry]:
        """Mesh-bound VirtualServices for ``host``: exact hosts first, then wildcards, most specific first."""
        found = self._vs_by_host.get(host)
        if found is None:
            candidates = sorted({*self._vs_exact.get(host, ()), *self._vs_wildcard})
            ranked: list[tuple[tuple[bool, int], int, VirtualServiceEntry]] = []
            for order in candidates:
                vs = self._virtual_services[order]
                best = hosts.most_specific_match(host, vs.hosts)
                if best is not None:
                    ranked.append(((best != host, -len(best)), order, vs))
            ranked.sort(key=lambda r: (r[0], r[1]))
            found = self._vs_by_host[host] = tuple(vs for _, _, vs in ranked)
        return list(found)

    def destination_rule(self, host: str) -> DestinationRuleEntry | None:
        """Istio's lookup: the proxy's namespace, then the service's, then the root namespace."""
        if host not in self._rules:
            self._rules[host] = self._find_rule(host)
        return self._rules[host]

    def _rules_by_namespace(self) -> dict[str, _RuleIndex]:
        index = self._rule_index
        if index is None:
            index = self._rule_index = {}
            for dr in self.context.destination_rules:
                if visible(dr.export_to, self.namespace):
                    index.setdefault(dr.namespace, _RuleIndex()).add(dr)
        return index

    def _find_rule(self, host: str) -> DestinationRuleEntry | None:
        svc = self.service(host)
        order = [self.namespace]
        if svc is not None:
            order.append(svc.namespace)
        order.append(self.mesh.root_namespace)
        index = self._rules_by_namespace()
        for ns in dict.fromkeys(order):
            rules = index.get(ns)
            if rules is None:
                continue
            # Istio's MostSpecificHostMatch over the namespace's rules: the exact host, else the
            # longest wildcard covering it; then every rule for that host, merged in order.
            found = rules.exact.get(host)
            if found is None:
                best = hosts.most_specific_match(host, (dr.host for dr in rules.wildcard))
                if best is None:
                    continue
                found = [dr for dr in rules.wildcard if dr.host == best]
            return self._choose(found)
        return None

    def _choose(self, rules: list[DestinationRuleEntry]) -> DestinationRuleEntry | None:
        """Istio's SidecarScope.DestinationRule: a rule with a ``workloadSelector`` (only ever
        indexed in its own namespace) that selects this workload wins, the first in config order;
        else the rules without one, merged; else none (Istio does not look further then)."""
        for dr in rules:
            selector = dr.spec.workload_selector.match_labels
            if dr.spec.HasField("workload_selector") and all(
                self.labels.get(k) == v for k, v in selector.items()
            ):
                return dr
        catch_all = [dr for dr in rules if not dr.spec.HasField("workload_selector")]
        return merge_rules(catch_all) if catch_all else None


class _RuleIndex:
    """The DestinationRules of one namespace visible from a scope: by exact host, and the
    wildcard ones (in context order)."""

    __slots__ = ("exact", "wildcard")

    def __init__(self) -> None:
        self.exact: dict[str, list[DestinationRuleEntry]] = {}
        self.wildcard: list[DestinationRuleEntry] = []

    def add(self, dr: DestinationRuleEntry) -> None:
        self.exact.setdefault(dr.host, []).append(dr)
        if hosts.is_wildcard(dr.host):
            self.wildcard.append(dr)


def imports_virtual_service(listener: sidecar_scope.EgressListener, vs: VirtualServiceEntry) -> bool:
    """Whether a Sidecar egress listener imports ``vs`` (Istio's SelectVirtualServices)."""
    return any(listener.imports_virtual_service_host(host, vs.namespace) for host in vs.hosts)


def _destination_hosts(vs: VirtualServiceEntry) -> list[str]:
    """The hosts a VirtualService routes to (HTTP, TCP and TLS routes), resolved in its namespace."""
    found: list[str] = []
    spec = vs.spec
    for routes in (spec.http, spec.tcp, spec.tls):
        for route in routes:
            for weighted in route.route:
                found.append(hosts.resolve_shortname(weighted.destination.host, vs.namespace))
    return list(dict.fromkeys(found))


def _with_destinations(
    scope: sidecar_scope.SidecarScope,
    virtual_services: list[VirtualServiceEntry],
    services: Iterable[Service],
) -> sidecar_scope.SidecarScope:
    """Istio's convertToSidecarScope: each egress listener also imports the services its
    VirtualServices route to (the config namespace's copy, else the first namespace by name), after
    the services it names, which win."""
    by_host: dict[str, list[Service]] = {}
    for svc in services:
        if visible(svc.export_to, scope.namespace):
            by_host.setdefault(svc.hostname, []).append(svc)
    listeners = []
    for listener in scope.egress:
        have = {svc.hostname for svc in listener.services}
        extra: list[Service] = []
        for vs in virtual_services:
            if not imports_virtual_service(listener, vs):
                continue
            for host in _destination_hosts(vs):
                candidates = by_host.get(host)
                if host in have or not candidates:
                    continue
                own = [svc for svc in candidates if svc.namespace == scope.namespace]
                svc = own[0] if own else min(candidates, key=lambda c: c.namespace)
                if listener.matches_port and listener.port is not None:
                    trimmed = sidecar_scope.on_port(svc, listener.port)
                    if trimmed is None:
                        continue
                    svc = trimmed
                have.add(host)
                extra.append(svc)
        listeners.append(dataclasses.replace(listener, services=listener.services + tuple(extra)))
    return dataclasses.replace(scope, egress=tuple(listeners))


__all__ = ["InheritedKey", "Scope", "imports_virtual_service"]
