"""RDS: route configuration ``N`` for every HTTP port N of a sidecar.

Istio's httproute.go (``BuildSidecarOutboundVirtualHosts``): one virtual host ``HOST:N`` per
service on the port, whose routes come from the VirtualService that claims the host (route.go
``BuildSidecarVirtualHostWrapper``, ``BuildHTTPRoutesForVirtualService``) or else one ``default``
route; one virtual host per VirtualService host that is no service (``foo.example.com``,
``*.example.com``), routed by that VirtualService; sorted by name, then the catch-all virtual host
``allow_any`` (PassthroughCluster) or ``block_all`` (502).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import TypeAlias

from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2
from google.protobuf import duration_pb2

from pilot._gen import networking_pb2 as nw
from pilot.cache.snapshot import Encoded
from pilot.translate import hosts, mirror, retries, route_actions
from pilot.translate.config_entries import MESH_GATEWAY
from pilot.translate.context import PushContext, Scope, Service, VirtualServiceEntry, imports_virtual_service
from pilot.translate.cors import CORS_FILTER, cors_policy
from pilot.translate.listeners import FAULT_FILTER, outbound_listeners
from pilot.translate.matches import applies, is_catch_all, route_match
from pilot.translate.pieces import RoutePieces, Routes
from pilot.translate.port_services import http_services_on_port, is_http_on, services_on_port
from pilot.translate.proxy import NodeType, ProxyView
from pilot.translate.route_records import (
    KeptConfiguration,
    VirtualHostRecord,
    configuration_shell,
)
from pilot.translate.route_templates import add_config_metadata, operation, templated_routes
from pilot.translate.sidecar_scope import EgressListener
from pilot.xds import names

log = logging.getLogger("pilot.translate.routes")

RouteConfiguration: TypeAlias = route_pb2.RouteConfiguration
DEFAULT_ROUTE = "default"
ALLOW_ANY = "allow_any"
BLOCK_ALL = "block_all"
MESH_ONLY = frozenset({MESH_GATEWAY})


def _no_timeout() -> duration_pb2.Duration:
    return duration_pb2.Duration()


def set_timeout(action: rc.RouteAction, timeout: duration_pb2.Duration | None) -> None:
    """Istio's setTimeout (pilot/pkg/networking/core/route/route.go): the VirtualService's timeout,
    else 0 (none); ``max_stream_duration`` mirrors it, and so does ``grpc_timeout_header_max``, so that
    a gRPC client's ``grpc-timeout`` header is honoured up to the same limit (Envoy deprecated
    ``max_grpc_timeout`` for these)."""
    action.timeout.CopyFrom(timeout if timeout is not None else _no_timeout())
    action.max_stream_duration.max_stream_duration.CopyFrom(action.timeout)
    action.max_stream_duration.grpc_timeout_header_max.CopyFrom(action.timeout)


def translate_route(
    vs: VirtualServiceEntry,
    spec: nw.HTTPRoute,
    match: nw.HTTPMatchRequest | None,
    port: int,
    scope: Scope,
    labels: Mapping[str, str],
    gateways: frozenset[str] = MESH_ONLY,
    is_tls: bool = False,
) -> rc.Route | None:
    """Istio's translateRoute: one Envoy route for one (HTTPRoute, match) pair; None when it does
    not apply to this proxy (port, source labels, namespace or gateways) or cannot be built."""
    if not applies(match, port, labels, scope.namespace, gateways):
        return None
    if spec.HasField("delegate"):
        # Delegates are merged into their root when the PushContext is built (delegate.py); a
        # delegate route still here names a VirtualService that is missing or not exported to it.
        delegate = f"{spec.delegate.namespace or vs.namespace}/{spec.delegate.name}"
        log.info("%s: delegate %s not found; route skipped", vs.key, delegate)
        return None
    name = spec.name + (f".{match.name}" if match is not None and match.name else "")
    route = rc.Route(name=name, match=route_match(match))
    add_config_metadata(route, vs)
    if match is not None and match.stat_prefix:
        route.stat_prefix = match.stat_prefix
    authority = ""
    if spec.HasField("headers"):
        ops = route_actions.header_operations(spec.headers)
        route_actions.apply_headers(route, ops)
        authority = ops.authority
    if spec.HasField("redirect"):
        redirect = route_actions.redirect(spec.redirect, port, is_tls, vs.gateway_semantics)
        if redirect is None:
            return None
        route.redirect.CopyFrom(redirect)
    elif spec.HasField("direct_response"):
        route.direct_response.CopyFrom(route_actions.direct_response(spec.direct_response))
    elif spec.route:
        _apply_route_action(route, spec, authority, vs, scope, port)
    else:
        log.warning("%s: http route %r has no destination; skipped", vs.key, spec.name)
        return None
    action = route.route if route.HasField("route") else None
    route.decorator.operation = operation(route.match, action, vs.key.name, port)
    if spec.HasField("fault"):
        fault = route_actions.fault(spec.fault)
        if fault is not None:
            route.typed_per_filter_config[FAULT_FILTER].CopyFrom(route_actions.typed(fault))
    if spec.HasField("cors_policy"):
        route.typed_per_filter_config[CORS_FILTER].CopyFrom(
            route_actions.typed(cors_policy(spec.cors_policy))
        )
    return route


def _apply_route_action(
    route: rc.Route, spec: nw.HTTPRoute, authority: str, vs: VirtualServiceEntry, scope: Scope, port: int
) -> None:
    """Istio's applyHTTPRouteDestination."""
    action = route.route
    set_timeout(action, spec.timeout if spec.HasField("timeout") else None)
    if spec.HasField("rewrite"):
        route_actions.apply_rewrite(action, spec.rewrite)
        authority = spec.rewrite.authority or authority
    if authority:
        action.host_rewrite_literal = authority

    def cluster_of(destination: nw.Destination) -> str:
        return route_actions.destination_cluster(destination, vs.namespace, scope, port)

    action.request_mirror_policies.extend(mirror.mirror_policies(spec, cluster_of))
    hashed = route_actions.apply_destinations(route, action, spec, vs.namespace, scope, port)
    policy = spec.retries if spec.HasField("retries") else scope.mesh.default_retry_policy
    converted = retries.retry_policy(policy, consistent_hash=hashed)
    if converted is not None:
        action.retry_policy.CopyFrom(converted)


def virtual_service_routes(
    vs: VirtualServiceEntry,
    port: int,
    scope: Scope,
    labels: Mapping[str, str],
    gateways: frozenset[str] = MESH_ONLY,
    is_tls: bool = False,
) -> list[rc.Route]:
    """Istio's BuildHTTPRoutesForVirtualService: every route of the VirtualService that applies on
    ``port`` (match blocks of one HTTPRoute are OR-ed: one Envoy route each), up to the first catch-all."""
    return [route for _, route in routes_by_spec(vs, port, scope, labels, gateways, is_tls)]


def routes_by_spec(
    vs: VirtualServiceEntry,
    port: int,
    scope: Scope,
    labels: Mapping[str, str],
    gateways: frozenset[str] = MESH_ONLY,
    is_tls: bool = False,
) -> list[tuple[int, rc.Route]]:
    """``virtual_service_routes``, each route with the index of the HTTPRoute that made it."""
    out: list[tuple[int, rc.Route]] = []
    for index, spec in enumerate(vs.spec.http):
        if not spec.match:
            route = translate_route(vs, spec, None, port, scope, labels, gateways, is_tls)
            if route is not None:
                out.append((index, route))
            break
        catch_all = False
        for match in spec.match:
            route = translate_route(vs, spec, match, port, scope, labels, gateways, is_tls)
            if route is not None:
                out.append((index, route))
                if is_catch_all(route.match):
                    catch_all = True
                    break
        if catch_all:
            break
    return out


def default_route(service: Service, port: int, scope: Scope) -> rc.Route:
    """No VirtualService: everything to ``outbound|N||HOST`` with Istio's default retries."""
    cluster = names.outbound_cluster(service.hostname, port)
    action = rc.RouteAction(cluster=cluster)
    set_timeout(action, None)
    policy = retries.retry_policy(scope.mesh.default_retry_policy)
    if policy is not None:
        action.retry_policy.CopyFrom(policy)
    route_actions.add_hash_policy(action, scope, cluster)
    return rc.Route(
        name=DEFAULT_ROUTE,
        match=rc.RouteMatch(prefix="/"),
        route=action,
        decorator=rc.Decorator(operation=f"{service.hostname}:{port}/*"),
    )


def service_routes(
    service: Service,
    port: int,
    scope: Scope,
    labels: Mapping[str, str],
    egress: EgressListener | None = None,
) -> Routes:
    """The routes of the VirtualService that claims the service on ``port`` (among those the
    ``egress`` listener imports, when given: Istio's per-listener VirtualServices), else the
    default route. Shared with the scope's route pieces: copy them, never change them."""
    for vs in claimants(_imported(scope.virtual_services(service.hostname), egress), service.hostname):
        routes = _virtual_service_pieces(vs, port, scope, labels)
        if routes:
            return routes
    return RoutePieces.routes(
        scope.route_pieces, service, port, "default", lambda: [default_route(service, port, scope)]
    )


def _virtual_service_pieces(
    vs: VirtualServiceEntry, port: int, scope: Scope, labels: Mapping[str, str]
) -> Routes:
    """``virtual_service_routes`` of a sidecar (mesh gateway, no TLS), made once per scope and
    VirtualService entry (pilot.translate.pieces), serialized from its shape's template when it has
    one (pilot.translate.route_templates)."""
    if labels != scope.labels:  # not the scope's own workload: nothing to share
        return virtual_service_routes(vs, port, scope, labels)
    pieces = scope.route_pieces
    return RoutePieces.routes(
        pieces,
        vs,
        port,
        "virtual-service",
        lambda: templated_routes(
            vs, port, scope, pieces.templates, lambda: routes_by_spec(vs, port, scope, labels)
        ),
    )


def claimants(ranked: list[VirtualServiceEntry], host: str) -> list[VirtualServiceEntry]:
    """The VirtualServices that may claim the service ``host``, in order; the first with routes on
    the port wins. istiod (route.go BuildSidecarVirtualHostWrapper, separateVSHostsAndServices with
    sidecar.go computeWildcardHostVirtualServiceIndex): every one naming the host exactly, in the
    scope's order (the first virtual host of a name is kept); when none does, only the first one
    with the most specific wildcard covering it. ``ranked`` is ``Scope.virtual_services(host)``."""
    exact = [vs for vs in ranked if host in vs.hosts]
    return exact or ranked[:1]


def _selects(vs: VirtualServiceEntry, on_port: Mapping[str, Service], wildcard_services: list[str]) -> bool:
    """Istio's selectVirtualServices: a host of ``vs`` overlaps a service on the port (of which
    ``wildcard_services`` are the wildcard hosts)."""
    for host in vs.hosts:
        host = host.lower()
        if host in on_port:
            return True
        if hosts.is_wildcard(host):
            if any(hosts.matches(host, svc_host) for svc_host in on_port):
                return True
        elif any(hosts.matches(host, svc_host) for svc_host in wildcard_services):
            return True
    return False


def _separate(
    vs: VirtualServiceEntry, on_port: Mapping[str, Service], scope: Scope, egress: EgressListener | None
) -> tuple[list[str], list[Service]]:
    """Istio's separateVSHostsAndServices: the hosts of ``vs`` that are no service on the port, and
    the services on the port it claims (exactly, or as the most specific wildcard for them)."""
    others: list[str] = []
    claimed: list[Service] = []
    for host in vs.hosts:
        host = host.lower()
        if not hosts.is_wildcard(host):
            svc = on_port.get(host)
            if svc is None:
                others.append(host)
            else:
                claimed.append(svc)
            continue
        overlapping = [svc for svc_host, svc in on_port.items() if hosts.matches(svc_host, host)]
        if not overlapping:
            others.append(host)
        for svc in overlapping:
            first = _imported(scope.virtual_services(svc.hostname), egress)[:1]
            if first and first[0] is vs:
                claimed.append(svc)
    return others, claimed


def non_service_virtual_hosts(
    port: int,
    scope: Scope,
    labels: Mapping[str, str],
    seen: set[str],
    services: Iterable[Service],
    egress: EgressListener | None = None,
    routed: dict[int, bool] | None = None,
) -> list[VirtualHostRecord]:
    """Virtual hosts for the hosts of VirtualServices that are no service (an exact name, a
    wildcard such as ``*.example.com``), routed by their VirtualService, as istiod builds them
    (httproute.go BuildSidecarOutboundVirtualHosts, route.go buildSidecarVirtualHostsForVirtualService):
    on port 80 for every VirtualService with routes there; on another port only for one that also
    claims an HTTP service on that port. Domains: the host alone (the route configuration ignores
    ports); one taken already is dropped, and ``*`` is always the catch-all's. ``services`` and
    the VirtualServices looked at are those of the ``egress`` listener when given. ``routed`` gets,
    by id, whether each VirtualService whose routes decided if it has virtual hosts had any."""
    on_port = services_on_port(port, scope, services)
    wildcard_services = [h for h in on_port if hosts.is_wildcard(h)]
    out: list[VirtualHostRecord] = []
    names_taken: set[str] = set()
    for vs in _imported(_candidates(port, scope, on_port, wildcard_services), egress):
        if port != 80 and not _selects(vs, on_port, wildcard_services):
            continue
        others, claimed = _separate(vs, on_port, scope, egress)
        if not others:
            continue
        if port != 80 and not any(is_http_on(svc, port) for svc in claimed):
            continue  # istiod makes no wrapper for the port then
        routes = _virtual_service_pieces(vs, port, scope, labels)
        if routed is not None:
            routed[id(vs)] = bool(routes)
        if not routes:
            continue
        for host in others:
            name = names.virtual_host_name(host, port)
            domains = _dedupe([hosts.ipv6_compliant(host)], seen)
            if name in names_taken or not domains:
                log.info("route %d: domain %s of %s is taken; no virtual host", port, host, vs.key)
                continue
            names_taken.add(name)
            out.append(VirtualHostRecord(name, tuple(domains), routes, vs, (vs,)))
    return out


def _candidates(
    port: int, scope: Scope, on_port: Mapping[str, Service], wildcard_services: list[str]
) -> list[VirtualServiceEntry]:
    """The VirtualServices to look at for non-service hosts on ``port``, in the scope's order: on
    port 80 every one; on another only those for a service on the port (found through the scope's
    per-host index, so a route configuration is not a scan of every VirtualService)."""
    every = scope.mesh_virtual_services
    if port == 80 or wildcard_services:
        return list(every)
    found: dict[int, VirtualServiceEntry] = {}
    for svc in on_port.values():
        found.update((id(vs), vs) for vs in scope.virtual_services(svc.hostname))
    return sorted(found.values(), key=lambda vs: vs.precedence_in(scope.namespace))


def _imported(ranked: list[VirtualServiceEntry], egress: EgressListener | None) -> list[VirtualServiceEntry]:
    """The VirtualServices of ``ranked`` that ``egress`` imports (all of them without one)."""
    return ranked if egress is None else [vs for vs in ranked if imports_virtual_service(egress, vs)]


def catch_all_virtual_host(allow_any: bool, cluster: str = names.PASSTHROUGH_CLUSTER) -> rc.VirtualHost:
    """``allow_any`` to ``cluster`` (PassthroughCluster, or a Sidecar's egressProxy), or ``block_all``."""
    if allow_any:
        action = rc.RouteAction(cluster=cluster)
        set_timeout(action, None)
        route = rc.Route(name=ALLOW_ANY, match=rc.RouteMatch(prefix="/"), route=action)
        name = ALLOW_ANY
    else:
        name = BLOCK_ALL
        blocked = rc.DirectResponseAction(status=502)
        route = rc.Route(name=BLOCK_ALL, match=rc.RouteMatch(prefix="/"), direct_response=blocked)
    return rc.VirtualHost(name=name, domains=["*"], routes=[route], include_request_attempt_count=True)


def _dedupe(domains: list[str], seen: set[str]) -> list[str]:
    """Envoy rejects a domain listed by two virtual hosts: the first service (by host) keeps it."""
    out = []
    for domain in domains:
        if domain.lower() not in seen:
            seen.add(domain.lower())
            out.append(domain)
    return out


def route_configuration(
    port: int, view: ProxyView, scope: Scope, egress: EgressListener | None = None
) -> RouteConfiguration:
    """Route configuration ``port``: a virtual host per HTTP service on the port among the services
    of ``egress``, the Sidecar egress listener that serves the port (default: every service of the
    scope), routed by the VirtualServices it imports; then the catch-all virtual host of the scope's
    outbound traffic policy."""
    kept = kept_configuration(port, view, scope)
    if kept is not None:
        return kept.configuration
    return _assemble(port, _virtual_hosts(port, view, scope, egress), scope)


def kept_configuration(port: int, view: ProxyView, scope: Scope) -> KeptConfiguration | None:
    """Route configuration ``port`` of a view without Sidecar that is its scope's own workload:
    the one kept from the previous context if none of the VirtualServices it looked at changed,
    or patched if they changed only their routes (pilot.translate.route_records), else made and
    kept (pilot.translate.pieces). None for any other view (nothing is kept for it)."""
    if scope.sidecar.sidecar is not None or dict(view.labels) != scope.labels:
        return None
    pieces = scope.route_pieces
    at = (port, view.dns_domain)
    kept = pieces.configurations.get(at)
    if kept is not None and pieces.replaced:
        kept = kept.patched(
            pieces.replaced,
            lambda vs: bool(_virtual_service_pieces(_entry(vs), port, scope, scope.labels)),
            lambda record, maker: _remade(record, maker, port, scope),
        )
        if kept is not None:
            pieces.configurations[at] = kept
    if kept is None:
        # Every VirtualService non_service_virtual_hosts and service_routes look at.
        on_port = services_on_port(port, scope, scope.services)
        candidates = _candidates(port, scope, on_port, [h for h in on_port if hosts.is_wildcard(h)])
        consulted = {id(vs): vs for vs in candidates}
        for service in on_port.values():
            consulted.update((id(vs), vs) for vs in scope.virtual_services(service.hostname))
        routed: dict[int, bool] = {}
        records = _virtual_hosts(port, view, scope, None, routed)
        kept = pieces.configurations[at] = KeptConfiguration.made(
            names.route_config_name(port), records, _catch_all_record(scope), consulted, routed
        )
    return kept


def _entry(maker: object) -> VirtualServiceEntry:
    assert isinstance(maker, VirtualServiceEntry)
    return maker


def _remade(record: VirtualHostRecord, maker: object, port: int, scope: Scope) -> VirtualHostRecord:
    """``record`` with its routes made again in ``scope`` (``maker``: the new VirtualServiceEntry of
    a host that is no service, or the service)."""
    if isinstance(maker, VirtualServiceEntry):
        routes = _virtual_service_pieces(maker, port, scope, scope.labels)
        return VirtualHostRecord(record.name, record.domains, routes, maker, (maker,))
    assert isinstance(maker, Service)
    routes = service_routes(maker, port, scope, scope.labels)
    return VirtualHostRecord(
        record.name, record.domains, routes, maker, tuple(scope.virtual_services(maker.hostname))
    )


def _catch_all_record(scope: Scope) -> VirtualHostRecord:
    host = catch_all_virtual_host(scope.allow_any, scope.catch_all_cluster)
    return VirtualHostRecord(host.name, tuple(host.domains), tuple(host.routes), None, ())


def _virtual_hosts(
    port: int,
    view: ProxyView,
    scope: Scope,
    egress: EgressListener | None,
    routed: dict[int, bool] | None = None,
) -> list[VirtualHostRecord]:
    """The virtual hosts of route configuration ``port`` but the catch-all, sorted by name."""
    labels = dict(view.labels)
    seen: set[str] = {"*"}  # the catch-all's
    services = scope.services if egress is None else sorted(egress.services, key=lambda s: s.hostname)
    # Without a Sidecar the one egress listener imports every VirtualService the scope holds.
    selecting = egress if scope.sidecar.sidecar is not None else None
    virtual_hosts = non_service_virtual_hosts(port, scope, labels, seen, services, selecting, routed)
    for service in http_services_on_port(port, scope, services):
        domains = hosts.virtual_host_domains(
            service.hostname, scope.namespace, view.dns_domain, service.addresses
        )
        domains = _dedupe(domains, seen)
        if not domains:
            log.info("route %d: every domain of %s is taken; no virtual host", port, service.hostname)
            continue
        consulted = tuple(_imported(scope.virtual_services(service.hostname), selecting))
        virtual_hosts.append(
            VirtualHostRecord(
                names.virtual_host_name(service.hostname, port),
                tuple(domains),
                service_routes(service, port, scope, labels, selecting),
                service,
                consulted,
            )
        )
    virtual_hosts.sort(key=lambda vh: vh.name)  # Istio's SortVirtualHosts (stable)
    return virtual_hosts


def _assemble(port: int, virtual_hosts: Iterable[VirtualHostRecord], scope: Scope) -> RouteConfiguration:
    config = configuration_shell(names.route_config_name(port))
    added = config.virtual_hosts
    for host in virtual_hosts:
        added.add(name=host.name, domains=host.domains, include_request_attempt_count=True).routes.extend(
            host.routes
        )
    added.append(catch_all_virtual_host(scope.allow_any, scope.catch_all_cluster))
    return config


def build_routes(view: ProxyView, context: PushContext) -> list[tuple[str, RouteConfiguration]]:
    """One route configuration per HTTP port listener, from the services of the egress listener
    that made it (Istio's GetEgressListenerForRDS)."""
    if view.type is NodeType.ROUTER:
        return []
    scope = context.scope_of(view)
    configs: dict[int, RouteConfiguration] = {}
    for plan in outbound_listeners(view, scope):
        if (plan.http or plan.sniffed) and plan.port not in configs:
            configs[plan.port] = route_configuration(plan.port, view, scope, plan.egress)
    return [(config.name, config) for config in configs.values()]


def encode_routes(view: ProxyView, context: PushContext) -> list[tuple[str, RouteConfiguration | Encoded]]:
    """``build_routes``, with every route configuration that is kept (``kept_configuration``)
    serialized from its kept virtual hosts instead of made as a message (build_snapshot's way)."""
    if view.type is NodeType.ROUTER:
        return []
    scope = context.scope_of(view)
    configs: dict[int, RouteConfiguration | Encoded] = {}
    for plan in outbound_listeners(view, scope):
        if (plan.http or plan.sniffed) and plan.port not in configs:
            kept = kept_configuration(plan.port, view, scope)
            configs[plan.port] = (
                kept.encoded if kept is not None else route_configuration(plan.port, view, scope, plan.egress)
            )
    return [(names.route_config_name(port), config) for port, config in configs.items()]
