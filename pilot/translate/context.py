"""PushContext: the config of one store revision, indexed for translation and never changed.

Istio's ``model.PushContext`` (pilot/pkg/model/push_context.go) with its service registry built
from ServiceEntries (serviceregistry/serviceentry/conversion.go). ``PushContext.scope(namespace)``
is what a proxy of that namespace can see (pilot.translate.scope); its settings and entries are in
pilot.translate.mesh_settings and pilot.translate.config_entries, re-exported here. What a context
takes from the previous one is pilot.translate.context_reuse; objects by kind, pilot.translate.config_order.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar, cast

from pilot._gen import networking_pb2 as nw
from pilot._gen import security_pb2 as sec
from pilot.config import kinds
from pilot.config.gateway_api.convert import convert as convert_gateway_api
from pilot.config.jwks import JWKS_KIND, JwksKey, resolved_keys
from pilot.config.objects import ConfigKey, ConfigObject
from pilot.config.protocols import Protocol, parse_protocol, port_protocol
from pilot.config.store import StoreSnapshot
from pilot.translate import delegate
from pilot.translate.config_entries import (
    DestinationRuleEntry,
    VirtualServiceEntry,
    destination_rule_entry,
    virtual_service_entry,
)
from pilot.translate.config_order import (
    authorization_policies_of,
    by_key,
    by_precedence,
    of_kind,
    peer_authentications_of,
)
from pilot.translate.context_reuse import (
    changed_keys,
    edited_context,
    edits_only,
    inherited_route_pieces,
    same_hosts_map,
)
from pilot.translate.mesh_settings import MeshSettings
from pilot.translate.pieces import RoutePieces
from pilot.translate.proxy import DEFAULT_DNS_DOMAIN, ProxyView
from pilot.translate.registry import (
    Endpoint,
    Resolution,
    Service,
    ServicePort,
    services_of,
)
from pilot.translate.scope import InheritedKey, Scope, imports_virtual_service
from pilot.translate.workload_selectors import SelectorParts, selectors_of

log = logging.getLogger("pilot.translate.context")

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True, eq=False, weakref_slot=True)
class PushContext:
    """Everything translation reads, at one store revision. Immutable and shareable across views
    (``scope`` memoizes per-namespace lookups; the answers never change)."""

    revision: int
    mesh: MeshSettings
    services: tuple[Service, ...]
    virtual_services: tuple[VirtualServiceEntry, ...]
    destination_rules: tuple[DestinationRuleEntry, ...]
    # Every Gateway, by key; routers select theirs by labels (pilot.translate.gateway).
    gateways: tuple[ConfigObject[nw.Gateway], ...] = ()
    # Every Sidecar, in the store's order; a sidecar proxy's view names the one that applies to it
    # (pilot.translate.views), and its Scope imports what that Sidecar's egress listeners name.
    sidecars: tuple[ConfigObject[nw.Sidecar], ...] = ()
    # Istio's security policies, each tuple in istiod's precedence order (creation time, name, namespace).
    peer_authentications: tuple[ConfigObject[sec.PeerAuthentication], ...] = ()
    authorization_policies: tuple[ConfigObject[sec.AuthorizationPolicy], ...] = ()
    request_authentications: tuple[ConfigObject[sec.RequestAuthentication], ...] = ()
    # The JWKS pilot fetched for RequestAuthentication rules (pilot.config.jwks, pilot.sources.jwks),
    # by (jwksUri, issuer): translation inlines them, never fetching anything itself.
    jwks: Mapping[JwksKey, str] = field(default_factory=dict)
    # The store objects this context was built from (None when built by hand): comparing two
    # contexts' objects by identity tells exactly which config changed between them (the store
    # keeps the same object for an unchanged key), which lets a push skip unaffected generators.
    objects: Mapping[ConfigKey, ConfigObject] | None = field(default=None, repr=False)
    _scopes: dict[tuple[str, tuple[tuple[str, str], ...], ConfigKey | None], Scope] = field(
        default_factory=dict, repr=False
    )
    # Built on first use, once per context: endpoint address -> (service, endpoint) pairs, and
    # every label pair some workload selector of the config names (pilot.translate.views).
    _at_address: dict[str, tuple[tuple[Service, Endpoint], ...]] = field(default_factory=dict, repr=False)
    _selectors: list[tuple[frozenset[tuple[str, str]], ...]] = field(default_factory=list, repr=False)
    _selector_parts: SelectorParts = field(default_factory=dict, repr=False)  # each entry's
    # What translation derives from this context alone, once (``derived``).
    _derived: dict[Hashable, object] = field(default_factory=dict, repr=False)
    _sidecars_by_namespace: dict[str, list[ConfigObject[nw.Sidecar]]] = field(
        default_factory=dict, repr=False
    )
    # What ``build`` made the services from, so the next context can reuse them: the WorkloadEntry
    # objects, and the services of each ServiceEntry object.
    _workloads: tuple[ConfigObject[nw.WorkloadEntry], ...] = field(default=(), repr=False)
    _services_of: Mapping[ConfigKey, tuple[ConfigObject[nw.ServiceEntry], tuple[Service, ...]]] = field(
        default_factory=dict, repr=False
    )
    # The routes translated at this context, inherited from the previous one when only routing
    # changed (pilot.translate.pieces).
    route_pieces: RoutePieces = field(default_factory=RoutePieces, repr=False)
    # ``changed_since`` the context this one was built from: its objects, and the keys that changed.
    _changed_from: tuple[Mapping[ConfigKey, ConfigObject], frozenset[ConfigKey]] | None = field(
        default=None, repr=False
    )
    # The objects of the context this one was built from when every host, port and key that
    # pilot.translate.provenance indexes is the same in both (only routes or policies changed).
    _same_hosts_as: Mapping[ConfigKey, ConfigObject] | None = field(default=None, repr=False)
    # With ``_same_hosts_as``: the context this one was built from (weakly: no chain of contexts is
    # kept), whose scopes without Sidecar this context's start from, and the id of each of its
    # VirtualServiceEntries that is not one here -> the entry that replaced it.
    _previous: weakref.ReferenceType[PushContext] | None = field(default=None, repr=False)
    _replaced: Mapping[int, VirtualServiceEntry] = field(default_factory=dict, repr=False)

    @property
    def version(self) -> str:
        return str(self.revision)

    @classmethod
    def build(cls, snapshot: StoreSnapshot, previous: PushContext | None = None) -> PushContext:
        """The context of ``snapshot``. With ``previous`` (the last context built), the services of
        every ServiceEntry that did not change are taken from it instead of being made again
        (when the mesh settings and WorkloadEntries they depend on did not change either)."""
        changed_from = None
        if previous is not None and previous.objects is not None:
            changed_from = (previous.objects, changed_keys(snapshot.objects, previous.objects))
        edits = edits_only(snapshot, previous, changed_from[1] if changed_from else None)
        if previous is not None and edits is not None:
            return edited_context(snapshot, previous, edits)
        objects = sorted(snapshot.objects.values(), key=by_key)
        # The Gateway API's objects, as the Istio Gateways and VirtualServices they convert to.
        objects += sorted(convert_gateway_api(snapshot.objects).objects, key=by_key)
        by_kind: dict[str, list[ConfigObject]] = {}
        for obj in objects:
            by_kind.setdefault(obj.kind, []).append(obj)
        meshes = of_kind(kinds.MESH_CONFIG_INFO, by_kind)
        mesh = MeshSettings.from_spec(meshes[0].spec) if meshes else MeshSettings()
        if len(meshes) > 1:
            log.warning("%d MeshConfig objects; using %s", len(meshes), meshes[0].key)
        workloads = of_kind(kinds.WORKLOAD_ENTRY_INFO, by_kind)
        entries = of_kind(kinds.SERVICE_ENTRY_INFO, by_kind)
        reusable: Mapping[ConfigKey, tuple[ConfigObject[nw.ServiceEntry], tuple[Service, ...]]] = {}
        earlier: dict[ConfigKey, VirtualServiceEntry] = {}
        same_base = (
            previous is not None
            and previous.mesh == mesh
            and len(previous._workloads) == len(workloads)
            and all(a is b for a, b in zip(previous._workloads, workloads, strict=True))
        )
        earlier_rules: dict[ConfigKey, DestinationRuleEntry] = {}
        if previous is not None and same_base:
            reusable = previous._services_of
            earlier = {vs.key: vs for vs in previous.virtual_services}
            earlier_rules = {dr.key: dr for dr in previous.destination_rules}
        made: dict[ConfigKey, tuple[ConfigObject[nw.ServiceEntry], tuple[Service, ...]]] = {}
        for se in entries:
            found = reusable.get(se.key)
            if found is None or found[0] is not se:
                found = (se, tuple(services_of(se, workloads, mesh.service_export_to)))
            made[se.key] = found
        services = [svc for _, of_entry in made.values() for svc in of_entry]
        services.sort(key=lambda s: (s.hostname, s.key.kind, s.key.namespace, s.key.name))
        virtual_services = tuple(
            virtual_service_entry(o, spec, mesh, earlier.get(o.key))
            for o, spec in delegate.merge_virtual_services(
                sorted(of_kind(kinds.VIRTUAL_SERVICE_INFO, by_kind), key=by_precedence),
                mesh.virtual_service_export_to,
            )
        )
        same_hosts = (
            same_hosts_map(previous, changed_from[1], virtual_services)
            if previous is not None and same_base and changed_from is not None
            else None
        )
        return cls(
            revision=snapshot.revision,
            mesh=mesh,
            services=tuple(services),
            # Where several objects compete, istiod's order decides (ConfigObject.precedence):
            # VirtualServices and Gateways by creation time, name, namespace (sortConfigByCreationTime);
            # DestinationRules with a workload selector first, then the same
            # (sortConfigBySelectorAndCreationTime), which is the order merge_rules merges them in.
            virtual_services=virtual_services,
            destination_rules=tuple(
                destination_rule_entry(o, mesh, earlier_rules.get(o.key))
                for o in sorted(
                    of_kind(kinds.DESTINATION_RULE_INFO, by_kind),
                    key=lambda o: (not o.spec.HasField("workload_selector"), o.precedence),
                )
            ),
            gateways=tuple(sorted(of_kind(kinds.GATEWAY_INFO, by_kind), key=by_precedence)),
            sidecars=tuple(of_kind(kinds.SIDECAR_INFO, by_kind)),
            peer_authentications=peer_authentications_of(by_kind),
            authorization_policies=authorization_policies_of(by_kind),
            request_authentications=tuple(
                sorted(of_kind(kinds.REQUEST_AUTHENTICATION_INFO, by_kind), key=by_precedence)
            ),
            jwks=resolved_keys(by_kind.get(JWKS_KIND, ())),
            objects=snapshot.objects,
            _workloads=tuple(workloads),
            _services_of=made,
            route_pieces=inherited_route_pieces(
                previous if same_base else None, changed_from[1] if changed_from else None, virtual_services
            ),
            _changed_from=changed_from,
            _same_hosts_as=previous.objects if same_hosts is not None and previous is not None else None,
            _previous=weakref.ref(previous) if same_hosts is not None and previous is not None else None,
            _replaced=same_hosts or {},
        )

    def changed_since(self, older: PushContext) -> frozenset[ConfigKey] | None:
        """Keys of the config objects added, removed or changed from ``older`` to this context;
        None when that cannot be known (a context built by hand)."""
        if self.objects is None or older.objects is None:
            return None
        if self._changed_from is not None and self._changed_from[0] is older.objects:
            return self._changed_from[1]  # found when this context was built from ``older``
        return changed_keys(self.objects, older.objects)

    def derived(self, key: Hashable, make: Callable[[], _T]) -> _T:
        """``make()``, once per context and ``key``: what every view built at this context would
        derive alike (a namespace's RBAC filters, the resolved ext_authz providers). ``key`` names the
        piece and its inputs, e.g. ``("authorization-filters", namespace, labels)``."""
        try:
            return cast(_T, self._derived[key])
        except KeyError:
            made = self._derived[key] = make()
            return made

    def same_hosts_as(self, older: PushContext) -> bool:
        """Whether this context was built from ``older`` and has the same services, VirtualService
        and DestinationRule hosts, Gateways and RequestAuthentications (what is indexed by host)."""
        return self._same_hosts_as is not None and self._same_hosts_as is older.objects

    def scope(
        self, namespace: str, labels: tuple[tuple[str, str], ...] = (), sidecar: ConfigKey | None = None
    ) -> Scope:
        """What a proxy in ``namespace`` with workload ``labels`` sees under the Sidecar ``sidecar``
        (None: no Sidecar applies, the default scope), memoized. The labels only choose among
        DestinationRules with a ``workloadSelector``; everything else is shared with the label-less
        scope of the same namespace and Sidecar."""
        key = (namespace, labels, sidecar)
        found = self._scopes.get(key)
        if found is None:
            base = self.scope(namespace, (), sidecar) if labels else None
            inherited = self._inherited_scope(key) if base is None and sidecar is None else None
            found = self._scopes.setdefault(
                key, Scope(self, namespace, labels, base, self.sidecar(sidecar), inherited)
            )
        return found

    def _inherited_scope(
        self, key: tuple[str, tuple[tuple[str, str], ...], ConfigKey | None]
    ) -> Scope | None:
        """The scope ``key`` of the context this one was built from, when it exists and sees the
        same services, DestinationRules and VirtualService hosts (``same_hosts_as``)."""
        previous = self._previous() if self._previous is not None else None
        if previous is None or not self.same_hosts_as(previous):
            return None
        return previous._scopes.get(key)

    def scope_of(self, view: ProxyView) -> Scope:
        """The scope a view's config is built from: its namespace, labels and Sidecar."""
        return self.scope(view.namespace, view.labels, view.sidecar)

    def sidecar_candidates(self, namespace: str) -> tuple[ConfigObject[nw.Sidecar], ...]:
        """The Sidecars that can apply to a proxy of ``namespace``: its own and the root
        namespace's (indexed on first use, so choosing one per proxy is not a scan of all)."""
        index = self._sidecars_by_namespace
        if not index and self.sidecars:
            for obj in self.sidecars:
                index.setdefault(obj.namespace, []).append(obj)
            index.setdefault("", [])  # built
        own = index.get(namespace, [])
        root = index.get(self.mesh.root_namespace, []) if namespace != self.mesh.root_namespace else []
        return (*own, *root)

    def sidecar(self, key: ConfigKey | None) -> ConfigObject[nw.Sidecar] | None:
        """The Sidecar ``key`` names; None for None, or for a key no longer in the config (a view
        computed at an older context)."""
        if key is None:
            return None
        return next((obj for obj in self.sidecars if obj.key == key), None)

    def endpoints_at(self, address: str) -> tuple[tuple[Service, Endpoint], ...]:
        """Every (service, endpoint) whose endpoint address is ``address`` (indexed on first use)."""
        index = self._at_address
        if not index and self.services:
            found: dict[str, list[tuple[Service, Endpoint]]] = {}
            for svc in self.services:
                for endpoint in svc.endpoints:
                    found.setdefault(endpoint.address, []).append((svc, endpoint))
            index.update((addr, tuple(pairs)) for addr, pairs in found.items())
            index.setdefault("", ())  # built, even when no endpoint has an address
        return index.get(address, ())

    def selectors(self) -> tuple[frozenset[tuple[str, str]], ...]:
        """Every workload selector of the config, as its set of ``key=value`` pairs: VirtualService
        match ``sourceLabels`` (HTTP, TCP, TLS), DestinationRule ``workloadSelector`` and the security
        policies' ``selector``. A proxy's
        labels decide what it is sent only through which of these they satisfy. Sidecar
        ``workloadSelector.labels`` are not here: a view names its Sidecar itself."""
        if not self._selectors:
            # An entry the context this one was built from has too gives the selectors found there.
            previous = self._previous() if self._previous is not None else None
            earlier = previous._selector_parts if previous is not None else {}
            found = selectors_of(
                (*self.virtual_services, *self.destination_rules), earlier, self._selector_parts
            )
            policy_selectors = (
                *(policy.spec.selector for policy in self.peer_authentications),
                *(policy.spec.selector for policy in self.authorization_policies),
                *(policy.spec.selector for policy in self.request_authentications),
            )
            for selector in policy_selectors:
                found.add(frozenset(selector.match_labels.items()))
            found.discard(frozenset())  # selects everything: tells no proxy apart
            self._selectors.append(tuple(sorted(found, key=sorted)))
        return self._selectors[0]

    def services_by_host(self) -> dict[str, list[Service]]:
        """Every Service per hostname, before visibility (for debug views)."""
        out: dict[str, list[Service]] = {}
        for svc in self.services:
            out.setdefault(svc.hostname, []).append(svc)
        return out

    def virtual_services_by_host(self) -> dict[str, list[VirtualServiceEntry]]:
        """Every VirtualService per resolved host, before visibility (for debug views)."""
        out: dict[str, list[VirtualServiceEntry]] = {}
        for vs in self.virtual_services:
            for host in vs.hosts:
                out.setdefault(host, []).append(vs)
        return out

    def destination_rules_by_host(self) -> dict[str, list[DestinationRuleEntry]]:
        """Every DestinationRule per resolved host, before visibility (for debug views)."""
        out: dict[str, list[DestinationRuleEntry]] = {}
        for dr in self.destination_rules:
            out.setdefault(dr.host, []).append(dr)
        return out


__all__ = [
    "DEFAULT_DNS_DOMAIN",
    "DestinationRuleEntry",
    "Endpoint",
    "MeshSettings",
    "Protocol",
    "PushContext",
    "Resolution",
    "Scope",
    "Service",
    "ServicePort",
    "VirtualServiceEntry",
    "InheritedKey",
    "imports_virtual_service",
    "parse_protocol",
    "port_protocol",
]
