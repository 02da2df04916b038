"""LDS: the outbound port listeners of a sidecar, from its Sidecar's egress listeners (an intercepted
sidecar's capture listeners, ``virtualOutbound`` and ``virtualInbound``, are capture_listeners.py's).

Istio's listener.go (``buildSidecarOutboundListeners``): an egress listener with a port gives one
listener on that port for the services it imports, with the egress listener's protocol; the port-less
(catch-all) one gives a listener per port of its services, except the ports an earlier egress
listener took. An HTTP port gets an HTTP connection manager that fetches route configuration ``N``
over ADS (on a wildcard listener, for the plaintext HTTP the HTTP inspector finds; other traffic
passes through on an intercepted proxy); any other TCP-family port a tcp_proxy to its service's
cluster; a port with a service whose protocol is not declared (unnamed, or an unknown name), or an
egress listener port without a protocol, both, chosen per connection by protocol sniffing
(protocol_sniffing.py).

Binding, as Istio's: an intercepted proxy's listeners bind nothing (``virtualOutbound`` hands them
connections), except an egress listener with ``captureMode: NONE``; a NONE-mode proxy's listeners bind,
to the egress listener's ``bind``, else 127.0.0.1 when a Sidecar applies. Without a Sidecar a
NONE-mode proxy binds the wildcard address (Istio: 127.0.0.1), as pilot's proxies that receive
traffic from other hosts on their outbound ports need.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from functools import partial
from typing import TypeAlias

from envoy.config.core.v3 import address_pb2, base_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.extensions.filters.http.cors.v3 import cors_pb2
from envoy.extensions.filters.http.fault.v3 import fault_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.listener.tls_inspector.v3 import tls_inspector_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from google.protobuf import any_pb2, duration_pb2, wrappers_pb2
from google.protobuf.message import Message

from pilot.translate import protocol_sniffing, tcp_routes
from pilot.translate.clusters import ads_config_source
from pilot.translate.context import InheritedKey, Protocol, PushContext, Scope, Service
from pilot.translate.cors import CORS_FILTER
from pilot.translate.proxy import InterceptionMode, NodeType, ProxyView
from pilot.translate.sidecar_scope import EgressListener
from pilot.translate.tcp_routes import TCP_PROXY_FILTER
from pilot.xds import names

log = logging.getLogger("pilot.translate.listeners")

Listener: TypeAlias = listener_pb2.Listener
HttpConnectionManager: TypeAlias = hcm_pb2.HttpConnectionManager

HCM_FILTER = "envoy.filters.network.http_connection_manager"
FAULT_FILTER = "envoy.filters.http.fault"
ROUTER_FILTER = "envoy.filters.http.router"
TLS_INSPECTOR = "envoy.filters.listener.tls_inspector"
PASSTHROUGH_FILTER_CHAIN = "PassthroughFilterChain"  # Istio's util.PassthroughFilterChain
# A service port whose protocol is not declared: istiod sniffs it (protocol.IsUnsupported).
SNIFFED = Protocol.UNSUPPORTED
LOCALHOST = "127.0.0.1"
UNIX_PREFIX = "unix://"
CAPTURE_NONE = "NONE"  # an egress listener's captureMode


@dataclass(frozen=True, slots=True)
class OutboundPorts:
    """Which ports get which kind of listener: the ports with a route configuration (HTTP and
    sniffed ones), the services of each TCP-family port (opaque TCP, TLS/HTTPS, Mongo..., and the
    ones whose protocol is not declared), in host order, and the ports that are sniffed."""

    http: tuple[int, ...]
    tcp: tuple[tuple[int, tuple[Service, ...]], ...]
    sniffed: frozenset[int] = frozenset()


def outbound_ports(services: Iterable[Service]) -> OutboundPorts:
    http: set[int] = set()
    tcp: dict[int, list[Service]] = {}
    sniffed: set[int] = set()
    for service in services:
        for port in service.ports:
            if port.protocol is Protocol.UDP:
                continue
            if port.protocol.is_http:
                http.add(port.number)
            else:
                tcp.setdefault(port.number, []).append(service)
                if port.protocol is SNIFFED:
                    sniffed.add(port.number)
    for number in sorted((http & tcp.keys()) - sniffed):
        shadowed = ", ".join(s.hostname for s in tcp.pop(number))
        log.info("port %d: HTTP services win over TCP services %s", number, shadowed)
    return OutboundPorts(
        tuple(sorted(http | sniffed)), tuple((n, tuple(tcp[n])) for n in sorted(tcp)), frozenset(sniffed)
    )


class OutboundPortsOf(InheritedKey):
    """The key of an egress listener's ``OutboundPorts`` among a scope's derived pieces: the
    listener itself, by identity (a scope without Sidecar passes it on to the next context's)."""

    __slots__ = ("egress",)

    def __init__(self, egress: EgressListener) -> None:
        self.egress = egress

    def __hash__(self) -> int:
        return id(self.egress)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, OutboundPortsOf) and other.egress is self.egress


@dataclass(frozen=True, slots=True)
class OutboundListener:
    """One outbound port listener to build: its port, whether it is HTTP (else TCP-family), the
    services on it (host order), the address it is named after and whether it binds that address."""

    port: int
    http: bool
    services: tuple[Service, ...]
    bind: str = names.WILDCARD_ADDRESS
    bind_to_port: bool = True
    egress: EgressListener | None = None  # the Sidecar egress listener it was made from
    sniffed: bool = False  # HTTP and TCP-family both, chosen by protocol sniffing

    @property
    def name(self) -> str:
        return names.listener_name(self.port, self.bind)


def _binding(view: ProxyView, scope: Scope, egress: EgressListener) -> tuple[str, bool]:
    """Istio's listenerBinding for one egress listener of ``view``: (address, binds)."""
    if view.interception_mode is InterceptionMode.NONE:
        bind_to_port = True
    else:
        bind_to_port = egress.capture_mode == CAPTURE_NONE
    if egress.bind:
        return egress.bind, bind_to_port
    if bind_to_port and scope.sidecar.sidecar is not None:
        return LOCALHOST, True
    return names.WILDCARD_ADDRESS, bind_to_port


def outbound_listeners(view: ProxyView, scope: Scope) -> tuple[OutboundListener, ...]:
    """The outbound listeners of a sidecar, in egress-listener order (route configurations follow
    the same plan: pilot.translate.routes). Made once per scope and view: LDS and RDS share it."""
    return scope.derived(("outbound-listeners", view), lambda: tuple(_outbound_listeners(view, scope)))


def _outbound_listeners(view: ProxyView, scope: Scope) -> list[OutboundListener]:
    out: list[OutboundListener] = []
    claimed: set[int] = set()
    for egress in scope.sidecar.egress:
        bind, bind_to_port = _binding(view, scope, egress)
        if bind.startswith(UNIX_PREFIX):
            log.warning(
                "sidecar %s: egress bind %s (a unix socket) is not translated", scope.sidecar.name, bind
            )
            continue
        if egress.port is not None:
            if egress.port in claimed or not egress.services or egress.protocol is Protocol.UDP:
                continue
            claimed.add(egress.port)
            # The egress listener's own protocol decides the listener's kind (Istio's listenPort).
            http = egress.protocol.is_http or egress.protocol is Protocol.HTTP_PROXY
            sniffed = egress.protocol is SNIFFED  # no protocol: istiod's ListenerProtocolAuto
            out.append(
                OutboundListener(egress.port, http, egress.services, bind, bind_to_port, egress, sniffed)
            )
            continue
        # The egress listener's ports depend on its services alone: kept with the egress listener,
        # which a scope inherits from the previous context's (pilot.translate.context).
        ports = scope.derived(OutboundPortsOf(egress), partial(outbound_ports, egress.services))
        out += [
            OutboundListener(port, True, egress.services, bind, bind_to_port, egress)
            for port in ports.http
            if port not in claimed and port not in ports.sniffed
        ]
        out += [
            OutboundListener(port, False, services, bind, bind_to_port, egress, sniffed=port in ports.sniffed)
            for port, services in ports.tcp
            if port not in claimed
        ]
        claimed.update(ports.http)
        claimed.update(port for port, _ in ports.tcp)
    return out


def typed(message: Message) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def network_filter(name: str, config: Message) -> listener_components_pb2.Filter:
    return listener_components_pb2.Filter(name=name, typed_config=typed(config))


def http_filters() -> list[hcm_pb2.HttpFilter]:
    """Istio's HTTP filter chain: fault and CORS (which routes configure through
    ``typed_per_filter_config``; a no-op on routes that do not), then the router."""
    return [
        hcm_pb2.HttpFilter(name=FAULT_FILTER, typed_config=typed(fault_pb2.HTTPFault())),
        hcm_pb2.HttpFilter(name=CORS_FILTER, typed_config=typed(cors_pb2.Cors())),
        hcm_pb2.HttpFilter(name=ROUTER_FILTER, typed_config=typed(router_pb2.Router())),
    ]


# istiod turns Envoy's per-stream idle timeout (5 minutes by default) off on every connection manager
# it builds, so idle gRPC streams, server-sent events and websockets are not reset; timeouts come
# from routes instead. pilot/pkg/networking/core/listener_builder.go, buildHTTPConnectionManager.
NO_STREAM_IDLE_TIMEOUT = duration_pb2.Duration()


def http_connection_manager(port: int) -> HttpConnectionManager:
    return HttpConnectionManager(
        stream_idle_timeout=NO_STREAM_IDLE_TIMEOUT,
        stat_prefix=f"outbound_{names.listener_name(port)}",
        rds=hcm_pb2.Rds(config_source=ads_config_source(), route_config_name=names.route_config_name(port)),
        http_filters=http_filters(),
        use_remote_address=wrappers_pb2.BoolValue(value=False),
        normalize_path=wrappers_pb2.BoolValue(value=True),
        path_with_escaped_slashes_action=HttpConnectionManager.KEEP_UNCHANGED,
        upgrade_configs=[HttpConnectionManager.UpgradeConfig(upgrade_type="websocket")],
    )


def tcp_proxy(cluster: str) -> tcp_proxy_pb2.TcpProxy:
    return tcp_proxy_pb2.TcpProxy(stat_prefix=cluster, cluster=cluster)


def wildcard_address(port: int) -> address_pb2.Address:
    return address_pb2.Address(
        socket_address=address_pb2.SocketAddress(address=names.WILDCARD_ADDRESS, port_value=port)
    )


def _listener(plan: OutboundListener, *chains: listener_components_pb2.FilterChain) -> Listener:
    listener = Listener(
        name=plan.name,
        address=wildcard_address(plan.port) if plan.bind == names.WILDCARD_ADDRESS else _address(plan),
        filter_chains=chains,
        traffic_direction=base_pb2.OUTBOUND,
    )
    if not plan.bind_to_port:
        # Traffic arrives through virtualOutbound, which hands it to this listener by port.
        listener.bind_to_port.CopyFrom(wrappers_pb2.BoolValue(value=False))
    return listener


def _address(plan: OutboundListener) -> address_pb2.Address:
    return address_pb2.Address(
        socket_address=address_pb2.SocketAddress(address=plan.bind, port_value=plan.port)
    )


def http_listener(plan: OutboundListener, scope: Scope) -> Listener:
    """An HTTP port. On the wildcard address sniffed as istiod does (listener.go,
    ListenerProtocolHTTP): plaintext HTTP to the connection manager, other traffic (raw TCP, TLS)
    passed through by an intercepted proxy instead of failing in the HTTP codec; on another bind
    (a Sidecar's egress listener) one HTTP chain."""
    manager = network_filter(HCM_FILTER, http_connection_manager(plan.port))
    if plan.bind != names.WILDCARD_ADDRESS:
        return _listener(plan, listener_components_pb2.FilterChain(filters=[manager]))
    listener = _listener(plan)
    protocol_sniffing.sniff(listener, manager, [], _fallthrough(plan, scope))
    return listener


def _fallthrough(plan: OutboundListener, scope: Scope) -> listener_components_pb2.FilterChain | None:
    """Istio's PassthroughFilterChain for what matches no chain of a listener that virtualOutbound
    feeds; None for one that binds its port, where passing through would loop back to it."""
    if plan.bind_to_port:
        return None
    return listener_components_pb2.FilterChain(
        name=PASSTHROUGH_FILTER_CHAIN,
        filters=[network_filter(TCP_PROXY_FILTER, tcp_proxy(scope.catch_all_cluster))],
    )


def tcp_listener(view: ProxyView, plan: OutboundListener, scope: Scope) -> Listener:
    """Filter chains for the services' ``tcp``/``tls`` routes (tcp_routes.py). SNI matches need the
    TLS inspector. An intercepted proxy sends what no chain matches where virtualOutbound would."""
    chains = tcp_routes.port_chains(plan.services, plan.port, scope, dict(view.labels))
    listener = _listener(plan, *chains)
    if any(chain.filter_chain_match.server_names for chain in chains):
        listener.listener_filters.add(
            name=TLS_INSPECTOR, typed_config=typed(tls_inspector_pb2.TlsInspector())
        )
    matched = all(chain.HasField("filter_chain_match") for chain in chains)
    if matched and view.interception_mode is not InterceptionMode.NONE:
        listener.default_filter_chain.CopyFrom(
            listener_components_pb2.FilterChain(
                filters=[network_filter(TCP_PROXY_FILTER, tcp_proxy(scope.catch_all_cluster))]
            )
        )
    return listener


def sniffed_listener(view: ProxyView, plan: OutboundListener, scope: Scope) -> Listener:
    """A port with a service whose protocol is not declared: the TCP chains of its services and the
    HTTP connection manager of route configuration ``N``, chosen by sniffing. An intercepted proxy
    passes through what matches no chain (Istio's PassthroughFilterChain)."""
    chains = tcp_routes.port_chains(plan.services, plan.port, scope, dict(view.labels))
    listener = _listener(plan)
    manager = network_filter(HCM_FILTER, http_connection_manager(plan.port))
    protocol_sniffing.sniff(listener, manager, chains, _fallthrough(plan, scope))
    return listener


def build_listeners(view: ProxyView, context: PushContext) -> list[tuple[str, Listener]]:
    if view.type is NodeType.ROUTER:
        return []
    scope = context.scope_of(view)
    listeners = [
        sniffed_listener(view, plan, scope)
        if plan.sniffed
        else http_listener(plan, scope)
        if plan.http
        else tcp_listener(view, plan, scope)
        for plan in outbound_listeners(view, scope)
    ]
    return [(listener.name, listener) for listener in listeners]
