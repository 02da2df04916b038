"""LDS for routers: one listener ``BIND_PORT`` per port of the merged Gateways.

Istio's pilot/pkg/networking/core/gateway.go (``buildGatewayListeners``,
``buildGatewayTCPBasedFilterChains``, ``createGatewayHTTPFilterChainOpts``,
``buildGatewayConnectionManager``, ``createGatewayTCPFilterChainOpts``,
``buildGatewayNetworkFiltersFromTCPRoutes`` / ``FromTLSRoutes``) and listener_builder.go
(``buildGatewayListener``, ``toFilterChainMatch``):

- a plain HTTP port: one HTTP connection manager fetching RDS ``http.PORT``;
- an HTTPS server terminated here: a filter chain matching its SNI hosts, with its certificates and
  an HTTP connection manager fetching RDS ``https.PORT.PORTNAME.GATEWAY.NAMESPACE``;
- a TCP server (or a TLS server terminated here): tcp_proxy to the first bound VirtualService
  ``tcp`` route that matches;
- a PASSTHROUGH server: one tcp_proxy filter chain per SNI match of the bound ``tls`` routes;
- a TLS inspector when a chain matches on SNI or offers ALPN.

Routers always bind their ports (no iptables in front of a gateway).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TypeAlias

from envoy.config.core.v3 import address_pb2, base_pb2
from envoy.config.listener.v3 import listener_components_pb2 as lc
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.listener.tls_inspector.v3 import tls_inspector_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from google.protobuf import duration_pb2, wrappers_pb2

from pilot._gen import networking_pb2 as nw
from pilot.errors import TranslationError
from pilot.translate import gateway, gateway_binding, gateway_tls, listeners, tcp_routes
from pilot.translate.auth_filters import auth_filters
from pilot.translate.context import PushContext, Scope, VirtualServiceEntry
from pilot.translate.gateway import GatewayServer, MergedPort
from pilot.translate.proxy import ProxyView
from pilot.xds import names

log = logging.getLogger("pilot.translate.gateway_listeners")

Listener: TypeAlias = listener_pb2.Listener
Filter: TypeAlias = lc.Filter
HttpConnectionManager: TypeAlias = hcm_pb2.HttpConnectionManager

TLS_INSPECTOR = "envoy.filters.listener.tls_inspector"
# Istio's defaultGatewayTransportSocketConnectTimeout: slow TLS handshakes cannot pin memory.
TRANSPORT_SOCKET_CONNECT_TIMEOUT = duration_pb2.Duration(seconds=15)


@dataclass(slots=True)
class ChainOpts:
    """Istio's filterChainOpts for a gateway: SNI hosts to match, TLS to terminate, filters to run."""

    sni_hosts: tuple[str, ...]
    tls: gateway_tls.DownstreamTlsContext | None
    filters: list[Filter]

    def match(self) -> lc.FilterChainMatch | None:
        """Istio's toFilterChainMatch: SNI hosts, sorted; none (match all) when one is ``*``."""
        if not self.sni_hosts or "*" in self.sni_hosts:
            return None
        return lc.FilterChainMatch(server_names=sorted(self.sni_hosts))

    def match_key(self) -> tuple[str, ...]:
        match = self.match()
        return tuple(match.server_names) if match is not None else ()


# --- HTTP ----------------------------------------------------------------------------------------


def gateway_connection_manager(
    route_name: str, stat_prefix: str, port: int, auth: Sequence[hcm_pb2.HttpFilter] = ()
) -> HttpConnectionManager:
    """The sidecar's HTTP connection manager (same HTTP filters, after ``auth``: the router's
    authentication and authorization filters), as a gateway's: RDS ``route_name``, the client's
    address trusted as the remote address, client certificate details sanitized and set (Istio's
    buildGatewayConnectionManager)."""
    manager = listeners.http_connection_manager(port)
    if auth:
        filters = [*auth, *manager.http_filters]
        del manager.http_filters[:]
        manager.http_filters.extend(filters)
    manager.stat_prefix = stat_prefix
    manager.rds.route_config_name = route_name
    manager.use_remote_address.CopyFrom(wrappers_pb2.BoolValue(value=True))
    manager.forward_client_cert_details = HttpConnectionManager.SANITIZE_SET
    details = manager.set_current_client_cert_details
    details.subject.CopyFrom(wrappers_pb2.BoolValue(value=True))
    details.cert = details.dns = details.uri = True
    manager.http_protocol_options.SetInParent()
    return manager


def _hcm_filter(manager: HttpConnectionManager) -> Filter:
    return Filter(name=listeners.HCM_FILTER, typed_config=listeners.typed(manager))


def default_stat_prefix(listener_name: str) -> str:
    """Istio: ``<traffic direction>_<listener name>``; gateway listeners are OUTBOUND."""
    return f"outbound_{listener_name}"


def http_chain(port: MergedPort, listener_name: str, auth: Sequence[hcm_pb2.HttpFilter] = ()) -> ChainOpts:
    manager = gateway_connection_manager(
        port.route_name, default_stat_prefix(listener_name), port.port.number, auth
    )
    return ChainOpts((), None, [_hcm_filter(manager)])


def https_chain(
    server: GatewayServer, listener_name: str, view: ProxyView, auth: Sequence[hcm_pb2.HttpFilter] = ()
) -> ChainOpts:
    """The chain of an HTTPS server terminated here (``server.is_https_terminating``)."""
    tls = server.tls
    if tls is None:  # is_https_terminating needs TLS settings: a bug if it got here without
        raise TranslationError(f"gateway {server.gateway}: HTTPS chain for a server without TLS settings")
    prefix = server.name or default_stat_prefix(listener_name)
    manager = gateway_connection_manager(server.route_name, prefix, server.number, auth)
    context = gateway_tls.downstream_tls_context(tls, view.namespace, sds=view.mesh_certificates)
    return ChainOpts(server.sni_hosts, context, [_hcm_filter(manager)])


# --- TCP and TLS ---------------------------------------------------------------------------------


def _l4_multi_match(
    matches: Sequence[nw.L4MatchAttributes], server: GatewayServer, vs: VirtualServiceEntry
) -> bool:
    """Istio's l4MultiMatch: no match conditions, or any one that holds."""
    return not matches or any(gateway_binding.l4_match(m, server, vs) for m in matches)


def tcp_route_filters(
    server: GatewayServer, virtual_services: Iterable[VirtualServiceEntry], scope: Scope
) -> list[Filter]:
    """The first ``tcp`` route of the bound VirtualServices (in order) whose hosts meet the
    server's and whose match holds."""
    for vs in virtual_services:
        if not gateway_binding.matching_gateway_hosts(server.hosts, vs):
            continue
        for tcp in vs.spec.tcp:
            if tcp.route and _l4_multi_match(tcp.match, server, vs):
                return tcp_routes.route_filters(tcp.route, vs, server.protocol, scope, server.number)
    return []


def tls_route_chains(
    server: GatewayServer,
    virtual_services: Iterable[VirtualServiceEntry],
    scope: Scope,
    sni_taken: dict[str, str],
) -> list[ChainOpts]:
    """PASSTHROUGH: a chain per ``tls`` match of the bound VirtualServices, keyed by its SNI hosts;
    an SNI host already routed on this port is skipped (Envoy rejects equal chain matches)."""
    out: list[ChainOpts] = []
    for vs in virtual_services:
        if not gateway_binding.matching_gateway_hosts(server.hosts, vs):
            continue
        for tls in vs.spec.tls:
            if not tls.route:
                continue
            for match in tls.match:
                if not gateway_binding.l4_match(match, server, vs):
                    continue
                taken = [h for h in match.sni_hosts if sni_taken.get(h) == server.bind]
                if taken:
                    log.info(
                        "%s: tls route for %s on port %d already taken; skipped", vs.key, taken, server.number
                    )
                    continue
                sni_taken.update(dict.fromkeys(match.sni_hosts, server.bind))
                filters = tcp_routes.route_filters(tls.route, vs, server.protocol, scope, server.number)
                out.append(ChainOpts(tuple(match.sni_hosts), None, filters))
    return out


def tcp_chains(
    server: GatewayServer, view: ProxyView, context: PushContext, sni_taken: dict[str, str]
) -> list[ChainOpts]:
    """Istio's createGatewayTCPFilterChainOpts: opaque TCP, TLS terminated then TCP, or passthrough."""
    scope = context.scope(view.namespace, view.labels)
    bound = gateway_binding.virtual_services_for_gateway(context, view.namespace, server.gateway)
    if server.tls is None or not server.is_passthrough:
        filters = tcp_route_filters(server, bound, scope)
        if not filters:
            log.info("gateway %s: no tcp route for port %d; no filter chain", server.gateway, server.number)
            return []
        if server.tls is None:
            return [ChainOpts((), None, filters)]
        context_tls = gateway_tls.downstream_tls_context(
            server.tls, view.namespace, sds=view.mesh_certificates
        )
        return [ChainOpts(server.sni_hosts, context_tls, filters)]
    return tls_route_chains(server, bound, scope, sni_taken)


# --- listeners -----------------------------------------------------------------------------------


def _address(bind: str, port: int) -> address_pb2.Address:
    return address_pb2.Address(socket_address=address_pb2.SocketAddress(address=bind, port_value=port))


def _filter_chain(opts: ChainOpts) -> lc.FilterChain:
    chain = lc.FilterChain(
        filters=opts.filters, transport_socket_connect_timeout=TRANSPORT_SOCKET_CONNECT_TIMEOUT
    )
    match = opts.match()
    if match is not None:
        chain.filter_chain_match.CopyFrom(match)
    if opts.tls is not None:
        chain.transport_socket.CopyFrom(gateway_tls.transport_socket(opts.tls))
    return chain


def _distinct(name: str, chains: list[ChainOpts]) -> list[ChainOpts]:
    """Envoy rejects a listener whose filter chains match alike (e.g. ``ns1/a.com`` and ``ns2/a.com``
    on one port): the first keeps the match."""
    seen: set[tuple[str, ...]] = set()
    out = []
    for chain in chains:
        key = chain.match_key()
        if key in seen:
            log.info(
                "listener %s: a filter chain matching %s already exists; skipped", name, list(key) or "all"
            )
            continue
        seen.add(key)
        out.append(chain)
    return out


def gateway_listener(name: str, bind: str, port: int, chains: list[ChainOpts]) -> Listener:
    """Istio's buildGatewayListener."""
    listener = Listener(
        name=name,
        address=_address(bind, port),
        filter_chains=[_filter_chain(c) for c in chains],
        traffic_direction=base_pb2.OUTBOUND,
    )
    if any(c.sni_hosts or c.tls is not None for c in chains):
        inspector = lc.ListenerFilter(
            name=TLS_INSPECTOR, typed_config=listeners.typed(tls_inspector_pb2.TlsInspector())
        )
        listener.listener_filters.append(inspector)
    return listener


def build_gateway_listeners(view: ProxyView, context: PushContext) -> list[tuple[str, Listener]]:
    merged = gateway.merged_gateway(view, context)
    by_name: dict[str, tuple[str, int, list[ChainOpts]]] = {}
    sni_taken: dict[int, dict[str, str]] = {}
    auth = auth_filters(view, context)
    for port in merged.ports:
        bind = port.port.bind or names.WILDCARD_ADDRESS
        name = names.listener_name(port.port.number, bind)
        if port.port.protocol.is_http:
            chains = [http_chain(port, name, auth)]
        else:
            chains = []
            for server in port.servers:
                if server.is_https_terminating:
                    chains.append(https_chain(server, name, view, auth))
                else:
                    chains += tcp_chains(server, view, context, sni_taken.setdefault(server.number, {}))
        by_name.setdefault(name, (bind, port.port.number, []))[2].extend(chains)
    out = []
    for name, (bind, number, chains) in by_name.items():
        chains = _distinct(name, chains)
        if not chains:
            log.info("router %s: listener %s would have no filter chain; not sent", view, name)
            continue
        out.append((name, gateway_listener(name, bind, number, chains)))
    return out


__all__ = ["TLS_INSPECTOR", "build_gateway_listeners", "gateway_connection_manager", "gateway_listener"]
