"""RDS for routers: one route configuration per RDS name of the merged Gateways.

Istio's ``buildGatewayHTTPRouteConfig`` (pilot/pkg/networking/core/gateway.go): for every server
behind the name, the VirtualServices bound to its Gateway whose hosts meet the server's
(``host.NamesForNamespace`` ∩ VirtualService hosts, the more specific host of each pair) give one
virtual host per host, named ``HOST:PORT`` with the single domain ``HOST`` (ports are ignored in
host matching), whose routes are the sidecar's translation of the VirtualService evaluated for this
gateway. ``tls.httpsRedirect`` makes every host of the server require TLS (Envoy answers 301 to
https). Virtual hosts with identical routes are collapsed into one (``collapseDuplicateRoutes``),
catch-all routes go last, virtual hosts are sorted by name. With no virtual host at all, the
``blackhole:PORT`` virtual host answers 404 to everything.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TypeAlias

from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2
from google.protobuf import wrappers_pb2

from pilot.translate import gateway, gateway_binding
from pilot.translate.context import PushContext, VirtualServiceEntry
from pilot.translate.gateway import GatewayServer
from pilot.translate.matches import is_catch_all
from pilot.translate.proxy import ProxyView
from pilot.translate.route_records import MAX_DIRECT_RESPONSE_BODY
from pilot.translate.routes import virtual_service_routes
from pilot.xds import names

log = logging.getLogger("pilot.translate.gateway_routes")

RouteConfiguration: TypeAlias = route_pb2.RouteConfiguration
BLACKHOLE = "blackhole"


def gateway_routes(
    vs: VirtualServiceEntry, server: GatewayServer, view: ProxyView, context: PushContext
) -> list[rc.Route]:
    """The VirtualService's HTTP routes as they apply to ``server``'s gateway and port."""
    matches = [m for http in vs.spec.http for m in http.match]
    accepted = gateway_binding.match_gateway_names(matches, vs.namespace, server.gateway) | {server.gateway}
    return virtual_service_routes(
        vs,
        server.number,
        context.scope(view.namespace, view.labels),
        dict(view.labels),
        gateways=accepted,
        is_tls=server.tls is not None,
    )


def _virtual_host(hostname: str, port: int, routes: Sequence[rc.Route], require_tls: bool) -> rc.VirtualHost:
    vhost = rc.VirtualHost(
        name=names.virtual_host_name(hostname, port),
        domains=[hostname],
        routes=list(routes),
        include_request_attempt_count=True,
    )
    if require_tls:
        vhost.require_tls = rc.VirtualHost.ALL
    return vhost


def _server_virtual_hosts(
    server: GatewayServer,
    view: ProxyView,
    context: PushContext,
    vhosts: dict[str, rc.VirtualHost],
    cache: dict[tuple[str, int, object], list[rc.Route]],
) -> None:
    redirect = server.https_redirect
    for vs in gateway_binding.virtual_services_for_gateway(context, view.namespace, server.gateway):
        hostnames = gateway_binding.intersection(
            gateway_binding.names_for_namespace(server.hosts, vs.namespace), vs.hosts
        )
        if not hostnames:
            continue
        key = (server.gateway, server.number, vs.key)
        routes = cache.get(key)
        if routes is None:
            routes = cache[key] = gateway_routes(vs, server, view, context)
        if not routes:
            log.debug("%s: no HTTP route applies to gateway %s", vs.key, server.gateway)
            continue
        for hostname in (h.lower() for h in hostnames):
            vhost = vhosts.get(hostname)
            if vhost is None:
                vhosts[hostname] = _virtual_host(hostname, server.number, routes, redirect)
            else:
                vhost.routes.extend(routes)
                if redirect:
                    vhost.require_tls = rc.VirtualHost.ALL
    if redirect:
        # Every host of the server redirects, even one no VirtualService serves. (Istio uses the
        # host as written, ``ns/host`` included; the namespace is no part of a domain.)
        for hostname in (gateway.strip_namespace(h).lower() for h in server.hosts):
            vhost = vhosts.get(hostname)
            if vhost is None:
                vhosts[hostname] = _virtual_host(hostname, server.number, (), True)
            else:
                vhost.require_tls = rc.VirtualHost.ALL


def _collapse(vhosts: Mapping[str, rc.VirtualHost]) -> list[rc.VirtualHost]:
    """Istio's collapseDuplicateRoutes: hosts (alphabetical) with the same routes share the first's
    virtual host."""
    out: list[rc.VirtualHost] = []
    by_routes: dict[tuple[object, ...], rc.VirtualHost] = {}
    for hostname in sorted(vhosts):
        vhost = vhosts[hostname]
        key = (
            vhost.require_tls,
            vhost.include_request_attempt_count,
            *(r.SerializeToString(deterministic=True) for r in vhost.routes),
        )
        first = by_routes.get(key)
        if first is None:
            by_routes[key] = vhost
            out.append(vhost)
        else:
            first.domains.extend(vhost.domains)
    return out


def _catch_all_last(routes: Sequence[rc.Route]) -> list[rc.Route]:
    """Istio's SortVHostRoutes: catch-all routes move to the end, the rest keep their order."""
    return [r for r in routes if not is_catch_all(r.match)] + [r for r in routes if is_catch_all(r.match)]


def gateway_route_configuration(
    route_name: str, servers: Sequence[GatewayServer], view: ProxyView, context: PushContext
) -> RouteConfiguration:
    vhosts: dict[str, rc.VirtualHost] = {}
    cache: dict[tuple[str, int, object], list[rc.Route]] = {}
    for server in servers:
        _server_virtual_hosts(server, view, context, vhosts, cache)
    if vhosts:
        virtual_hosts = _collapse(vhosts)
        for vhost in virtual_hosts:
            routes = _catch_all_last(vhost.routes)
            del vhost.routes[:]
            vhost.routes.extend(routes)
        virtual_hosts.sort(key=lambda v: v.name)
    else:
        port = servers[0].number
        log.info("route %s: no virtual host; every request gets 404", route_name)
        virtual_hosts = [rc.VirtualHost(name=names.virtual_host_name(BLACKHOLE, port), domains=["*"])]
    return RouteConfiguration(
        name=route_name,
        virtual_hosts=virtual_hosts,
        validate_clusters=wrappers_pb2.BoolValue(value=False),
        ignore_port_in_host_matching=True,
        max_direct_response_body_size_bytes=wrappers_pb2.UInt32Value(value=MAX_DIRECT_RESPONSE_BODY),
    )


def build_gateway_routes(view: ProxyView, context: PushContext) -> list[tuple[str, RouteConfiguration]]:
    merged = gateway.merged_gateway(view, context)
    return [
        (name, gateway_route_configuration(name, servers, view, context))
        for name, servers in merged.servers_by_route.items()
    ]


__all__ = ["BLACKHOLE", "build_gateway_routes", "gateway_route_configuration", "gateway_routes"]
