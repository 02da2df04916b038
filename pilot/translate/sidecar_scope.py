"""Which Sidecar applies to a sidecar proxy, and what it imports: Istio's ``SidecarScope``.

Istio's pilot/pkg/model/push_context.go (``initSidecarScopes``, ``doGetSidecarScope``) and
pilot/pkg/model/sidecar.go (``convertToSidecarScope``, ``convertIstioListenerToWrapper``,
``selectServices``). ``sidecar_scope`` is a pure function of the proxy's namespace and labels, the
Sidecars, the candidate services and two mesh settings:

- The Sidecar: those of the proxy's namespace with a ``workloadSelector`` first, then the selector-less,
  each group in creation order; the first whose selector labels are a subset of the workload's labels
  wins (a selector-less one always does). Pilot has no creation time: the store's deterministic order
  stands in for it, origin then name (an object's origin decides which of two copies the store serves,
  so it is as stable as creation order). Else the selector-less Sidecar of the mesh root namespace
  (``rootNamespace``, default istio-system), read for the proxy's namespace (``./`` is the proxy's).
  Else none: the default scope, one egress listener importing ``*/*``, named ``default-sidecar``.
- Each egress listener imports the services its ``hosts`` name: ``ns/dnsName`` with ``.`` for the
  proxy's namespace, ``*`` for any; dnsName ``*`` or ``*.suffix`` imports by subset matching; ``~ns/host``
  excludes (bare ``~``: from every namespace), and an excluded service stays out whatever imports it.
  A listener with a port (not HTTP_PROXY) keeps only that port of each service and drops the services
  without it. When one hostname is imported from several namespaces, the proxy's namespace's copy
  wins, else the first in the order given.
- The outbound traffic policy is the Sidecar's if it sets one, else the mesh's.

Services whose hostname only VirtualServices name (Istio adds the destinations of the VirtualServices
a listener imports) are the caller's to add; ``EgressListener.imports_virtual_service_host`` says which
VirtualService hosts a listener imports. Routers never get a Sidecar (``DefaultSidecarScopeForGateway``).
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType

from pilot._gen import networking_pb2 as nw
from pilot.config.objects import ConfigKey, ConfigObject
from pilot.config.protocols import Protocol, parse_protocol
from pilot.translate import hosts
from pilot.translate.registry import Service, visible
from pilot.xds import names

DEFAULT_SIDECAR = "default-sidecar"
DEFAULT_ROOT_NAMESPACE = "istio-system"
ANY_NAMESPACE = "*"
CONFIG_NAMESPACE = "."
EXCLUDE = "~"
# What a Sidecar without egress listeners imports (and the default scope).
IMPORT_EVERYTHING = ("*/*",)


class OutboundPolicy(enum.StrEnum):
    """What happens to traffic for a destination the proxy does not know (Istio's OutboundTrafficPolicy)."""

    REGISTRY_ONLY = "REGISTRY_ONLY"
    ALLOW_ANY = "ALLOW_ANY"


@dataclass(frozen=True, slots=True)
class ImportedHosts:
    """The ``hosts`` entries of one egress listener for one namespace (Istio's hostClassification)."""

    exact: frozenset[str] = frozenset()
    # Every imported dnsName, exact or wildcard, in the order written.
    names: tuple[str, ...] = ()
    excluded: tuple[str, ...] = ()

    def excludes(self, hostname: str) -> bool:
        return any(hosts.subset_of(hostname, pattern) for pattern in self.excluded)

    def imports(self, hostname: str) -> bool:
        """A service host is imported by an equal name, or covered by a wildcard one."""
        if hostname in self.exact:
            return True
        wildcard = hosts.is_wildcard(hostname)
        return any(
            hosts.subset_of(hostname, name)
            for name in self.names
            if wildcard or hosts.is_wildcard(name)  # two exact names: only ``exact`` decides
        )

    def imports_virtual_service_host(self, host: str) -> bool:
        """Istio's ``VSMatches`` (sidecar semantics): wildcards overlap in either direction."""
        if host in self.exact:
            return True
        wildcard = hosts.is_wildcard(host)
        return any(hosts.matches(host, name) for name in self.names if wildcard or hosts.is_wildcard(name))


def classify_hosts(entries: Iterable[str], config_namespace: str) -> dict[str, ImportedHosts]:
    """namespace (or ``*``) → what the entries import from it. Entries without exactly one ``/`` are
    ignored, as Istio does (validation rejects them)."""
    exact: dict[str, set[str]] = {}
    names: dict[str, list[str]] = {}
    excluded: dict[str, list[str]] = {}
    for entry in entries:
        if entry.count("/") != 1:
            continue
        namespace, _, name = entry.partition("/")
        exclude = namespace.startswith(EXCLUDE)
        if exclude:
            namespace = namespace[len(EXCLUDE) :] or ANY_NAMESPACE
        if namespace == CONFIG_NAMESPACE:
            namespace = config_namespace
        exact.setdefault(namespace, set())
        names.setdefault(namespace, [])
        if exclude:
            excluded.setdefault(namespace, []).append(name)
            continue
        if not hosts.is_wildcard(name):
            exact[namespace].add(name)
        names[namespace].append(name)
    return {
        namespace: ImportedHosts(
            frozenset(exact[namespace]), tuple(names[namespace]), tuple(excluded.get(namespace, ()))
        )
        for namespace in exact
    }


@dataclass(frozen=True, slots=True)
class EgressListener:
    """One egress listener of the scope and the services it imports (Istio's IstioEgressListenerWrapper).

    ``port`` is None for the catch-all listener (no port); 0 with a ``unix://`` bind for a socket."""

    hosts: tuple[str, ...]
    imported: Mapping[str, ImportedHosts]
    services: tuple[Service, ...]
    port: int | None = None
    protocol: Protocol = Protocol.UNSUPPORTED
    port_name: str = ""
    bind: str = ""
    capture_mode: str = "DEFAULT"

    @property
    def matches_port(self) -> bool:
        """Istio's needsPortMatch: a listener port, unless the listener is an HTTP proxy."""
        return bool(self.port) and self.protocol is not Protocol.HTTP_PROXY

    def imports_virtual_service_host(self, host: str, vs_namespace: str) -> bool:
        """Whether a VirtualService of ``vs_namespace`` for ``host`` belongs to this listener (Istio's
        SelectVirtualServices: its namespace's entries, or the ``*/`` ones)."""
        return any(
            entry.imports_virtual_service_host(host)
            for namespace in (vs_namespace, ANY_NAMESPACE)
            if (entry := self.imported.get(namespace)) is not None
        )


@dataclass(frozen=True, slots=True)
class SidecarScope:
    """What one sidecar proxy sees: the Sidecar that applies (None: the default), its egress listeners
    with their imports, its ingress listeners and the outbound traffic policy."""

    namespace: str
    name: str
    sidecar: ConfigKey | None
    egress: tuple[EgressListener, ...]
    ingress: tuple[nw.IstioIngressListener, ...]
    outbound_policy: OutboundPolicy
    # The Sidecar's egressProxy (ALLOW_ANY only): where unknown traffic goes instead of passthrough.
    egress_proxy: nw.Destination | None = None
    inbound_connection_pool: nw.ConnectionPoolSettings | None = None

    @property
    def services(self) -> tuple[Service, ...]:
        """Every imported service, one per hostname: the first listener's copy wins, and a later
        listener's copy from the same namespace adds the ports the first trimmed away (Istio's
        convertToSidecarScope ``addService``)."""
        seen: dict[str, Service] = {}
        added_by: dict[str, int] = {}
        for index, listener in enumerate(self.egress):
            for service in listener.services:
                found = seen.get(service.hostname)
                if found is None:
                    seen[service.hostname] = service
                    added_by[service.hostname] = index
                elif added_by[service.hostname] != index and found.namespace == service.namespace:
                    known = {port.number for port in found.ports}
                    extra = tuple(port for port in service.ports if port.number not in known)
                    if extra:
                        seen[service.hostname] = dataclasses.replace(found, ports=found.ports + extra)
        return tuple(seen.values())

    @property
    def catch_all_cluster(self) -> str:
        """Where traffic for an unknown destination goes: PassthroughCluster (ALLOW_ANY, or the
        ``egressProxy``'s cluster) or BlackHoleCluster (REGISTRY_ONLY). Istio's
        ``buildOutboundCatchAllNetworkFiltersOnly`` / ``getOutboundPassthroughCluster``."""
        if self.outbound_policy is OutboundPolicy.REGISTRY_ONLY:
            return names.BLACKHOLE_CLUSTER
        proxy = self.egress_proxy
        if proxy is not None:
            return names.outbound_cluster(proxy.host, proxy.port.number, proxy.subset)
        return names.PASSTHROUGH_CLUSTER

    @property
    def allow_any(self) -> bool:
        return self.outbound_policy is OutboundPolicy.ALLOW_ANY

    def egress_listener(self, port: int, bind: str = "") -> EgressListener | None:
        """Istio's GetEgressListenerForRDS: the listener for ``port`` (for port 0, the one binding
        ``bind``), else the catch-all one."""
        for listener in self.egress:
            if listener.port is None:
                return listener
            if listener.port == port and (port != 0 or listener.bind == bind):
                return listener
        return None


def _sort_key(obj: ConfigObject[nw.Sidecar]) -> tuple[bool, tuple[bool, datetime, str, str]]:
    """Istio's order (push_context.go initSidecarScopes): by creation time, name and namespace
    (ConfigObject.precedence); the first with a selector that selects wins, else the first without."""
    return (not obj.spec.HasField("workload_selector"), obj.precedence)


def select_sidecar(
    namespace: str,
    labels: Mapping[str, str],
    sidecars: Iterable[ConfigObject[nw.Sidecar]],
    root_namespace: str = DEFAULT_ROOT_NAMESPACE,
) -> ConfigObject[nw.Sidecar] | None:
    """The Sidecar that applies to a sidecar proxy of ``namespace`` with workload ``labels``."""
    ordered = sorted(sidecars, key=_sort_key)
    for obj in ordered:
        if obj.namespace != namespace:
            continue
        if not obj.spec.HasField("workload_selector"):
            return obj
        selector = obj.spec.workload_selector.labels
        if all(labels.get(key) == value for key, value in selector.items()):
            return obj
    return next(
        (
            obj
            for obj in ordered
            if obj.namespace == root_namespace and not obj.spec.HasField("workload_selector")
        ),
        None,
    )


def select_services(
    services: Iterable[Service],
    config_namespace: str,
    imported: Mapping[str, ImportedHosts],
    port: int | None = None,
) -> list[Service]:
    """Istio's selectServices: the services ``imported`` names, trimmed to ``port`` if given, one
    namespace's copy per hostname (``config_namespace``'s, else the first)."""
    everywhere = imported.get(ANY_NAMESPACE)
    selected: list[Service] = []
    for service in services:
        own = imported.get(service.namespace)
        if (own is not None and own.excludes(service.hostname)) or (
            everywhere is not None and everywhere.excludes(service.hostname)
        ):
            continue
        for entry in (own, everywhere):
            if entry is not None and entry.imports(service.hostname):
                trimmed = service if port is None else on_port(service, port)
                if trimmed is not None:
                    selected.append(trimmed)
                    break
    chosen: dict[str, str] = {}
    for service in selected:
        if service.hostname not in chosen or service.namespace == config_namespace:
            chosen[service.hostname] = service.namespace
    return [service for service in selected if chosen[service.hostname] == service.namespace]


def on_port(service: Service, port: int) -> Service | None:
    """The service with only ``port`` (Istio's serviceMatchingListenerPort), None without it."""
    found = service.port(port)
    if found is None:
        return None
    return service if len(service.ports) == 1 else dataclasses.replace(service, ports=(found,))


def _egress_listener(
    listener: nw.IstioEgressListener, services: Sequence[Service], config_namespace: str
) -> EgressListener:
    imported = classify_hosts(listener.hosts, config_namespace)
    has_port = listener.HasField("port")
    out = EgressListener(
        hosts=tuple(listener.hosts),
        imported=MappingProxyType(imported),
        services=(),
        port=listener.port.number if has_port else None,
        protocol=parse_protocol(listener.port.protocol) if has_port else Protocol.UNSUPPORTED,
        port_name=listener.port.name,
        bind=listener.bind,
        capture_mode=nw.CaptureMode.Name(listener.capture_mode),
    )
    port = out.port if out.matches_port else None
    return dataclasses.replace(
        out, services=tuple(select_services(services, config_namespace, imported, port))
    )


def sidecar_scope(
    namespace: str,
    labels: Mapping[str, str],
    sidecars: Iterable[ConfigObject[nw.Sidecar]],
    services: Iterable[Service],
    mesh_allow_any: bool = True,
    root_namespace: str = DEFAULT_ROOT_NAMESPACE,
) -> SidecarScope:
    """The scope of a sidecar proxy of ``namespace`` with workload ``labels``.

    ``services`` are the candidates in registry order; those not exported to ``namespace`` are left
    out. ``mesh_allow_any`` is the mesh's outboundTrafficPolicy (ALLOW_ANY by default)."""
    chosen = select_sidecar(namespace, labels, sidecars, root_namespace)
    return scope_of(namespace, chosen, services, mesh_allow_any)


def scope_of(
    namespace: str,
    chosen: ConfigObject[nw.Sidecar] | None,
    services: Iterable[Service],
    mesh_allow_any: bool = True,
) -> SidecarScope:
    """The scope ``chosen`` (None: the default scope) gives a sidecar proxy of ``namespace``: the
    second half of ``sidecar_scope``, for a caller that already knows which Sidecar applies."""
    candidates = [service for service in services if visible(service.export_to, namespace)]
    spec = chosen.spec if chosen is not None else nw.Sidecar()
    listeners = list(spec.egress) or [nw.IstioEgressListener(hosts=IMPORT_EVERYTHING)]
    mesh_policy = OutboundPolicy.ALLOW_ANY if mesh_allow_any else OutboundPolicy.REGISTRY_ONLY
    policy, egress_proxy = mesh_policy, None
    if spec.HasField("outbound_traffic_policy"):
        written = spec.outbound_traffic_policy
        policy = OutboundPolicy(nw.OutboundTrafficPolicy.Mode.Name(written.mode))
        egress_proxy = written.egress_proxy if written.HasField("egress_proxy") else None
    return SidecarScope(
        namespace=namespace,
        name=chosen.name if chosen is not None else DEFAULT_SIDECAR,
        sidecar=chosen.key if chosen is not None else None,
        egress=tuple(_egress_listener(listener, candidates, namespace) for listener in listeners),
        ingress=tuple(spec.ingress),
        outbound_policy=policy,
        egress_proxy=egress_proxy,
        inbound_connection_pool=spec.inbound_connection_pool
        if spec.HasField("inbound_connection_pool")
        else None,
    )


def default_scope(namespace: str, services: tuple[Service, ...], mesh_allow_any: bool = True) -> SidecarScope:
    """The scope of a proxy no Sidecar applies to, from the services it sees (already chosen: every
    service exported to ``namespace``, one per hostname): one egress listener importing ``*/*``."""
    listener = EgressListener(
        hosts=IMPORT_EVERYTHING,
        imported=MappingProxyType(classify_hosts(IMPORT_EVERYTHING, namespace)),
        services=services,
    )
    return SidecarScope(
        namespace=namespace,
        name=DEFAULT_SIDECAR,
        sidecar=None,
        egress=(listener,),
        ingress=(),
        outbound_policy=OutboundPolicy.ALLOW_ANY if mesh_allow_any else OutboundPolicy.REGISTRY_ONLY,
    )
