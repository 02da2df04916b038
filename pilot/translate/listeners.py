"""LDS: one outbound listener ``0.0.0.0_N`` per service port (an intercepted sidecar's capture
listeners, ``virtualOutbound`` and ``virtualInbound``, are capture_listeners.py's).

Istio's listener.go (``buildSidecarOutboundListeners``): an HTTP port gets an HTTP connection
manager that fetches route configuration ``N`` over ADS, for the plaintext HTTP the HTTP inspector
finds (other traffic passes through on an intercepted proxy); any other TCP-family port a tcp_proxy to
its service's cluster; a port with a service whose protocol is not declared (unnamed, or an unknown
name) both, chosen per connection by protocol sniffing (protocol_sniffing.py). Gateways (routers)
get no listeners until Gateway support exists.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
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
from pilot.translate.context import Protocol, PushContext, Scope, Service
from pilot.translate.cors import CORS_FILTER
from pilot.translate.proxy import InterceptionMode, NodeType, ProxyView
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


@dataclass(frozen=True, slots=True)
class OutboundPorts:
    """Which ports get which kind of listener: the ports with a route configuration (HTTP and
    sniffed ones), the services of each TCP-family port (opaque TCP, TLS/HTTPS, Mongo..., and the
    ones whose protocol is not declared), in host order, and the ports that are sniffed."""

    http: tuple[int, ...]
    tcp: tuple[tuple[int, tuple[Service, ...]], ...]
    sniffed: frozenset[int] = frozenset()


def outbound_ports(scope: Scope) -> OutboundPorts:
    http: set[int] = set()
    tcp: dict[int, list[Service]] = {}
    sniffed: set[int] = set()
    for service in scope.services:
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


def _listener(view: ProxyView, port: int, *chains: listener_components_pb2.FilterChain) -> Listener:
    listener = Listener(
        name=names.listener_name(port),
        address=wildcard_address(port),
        filter_chains=chains,
        traffic_direction=base_pb2.OUTBOUND,
    )
    if view.interception_mode is not InterceptionMode.NONE:
        # Traffic arrives through virtualOutbound, which hands it to this listener by port.
        listener.bind_to_port.CopyFrom(wrappers_pb2.BoolValue(value=False))
    return listener


def http_listener(view: ProxyView, port: int, context: PushContext) -> Listener:
    """An HTTP port, sniffed as istiod does on its wildcard listeners (listener.go,
    ListenerProtocolHTTP): plaintext HTTP to the connection manager; other traffic (raw TCP, TLS)
    passes through on an intercepted proxy instead of failing in the HTTP codec."""
    listener = _listener(view, port)
    manager = network_filter(HCM_FILTER, http_connection_manager(port))
    protocol_sniffing.sniff(listener, manager, [], _fallthrough(view, context))
    return listener


def _fallthrough(view: ProxyView, context: PushContext) -> listener_components_pb2.FilterChain | None:
    """Istio's PassthroughFilterChain for what matches no chain of an intercepted proxy's port
    listener; None without interception, where passing through would loop back to the listener."""
    if view.interception_mode is InterceptionMode.NONE:
        return None
    cluster = names.PASSTHROUGH_CLUSTER if context.mesh.allow_any else names.BLACKHOLE_CLUSTER
    return listener_components_pb2.FilterChain(
        name=PASSTHROUGH_FILTER_CHAIN, filters=[network_filter(TCP_PROXY_FILTER, tcp_proxy(cluster))]
    )


def tcp_listener(view: ProxyView, port: int, services: tuple[Service, ...], context: PushContext) -> Listener:
    """Filter chains for the services' ``tcp``/``tls`` routes (tcp_routes.py). SNI matches need the
    TLS inspector. An intercepted proxy sends what no chain matches where virtualOutbound would."""
    scope = context.scope(view.namespace, view.labels)
    chains = tcp_routes.port_chains(services, port, scope, dict(view.labels))
    listener = _listener(view, port, *chains)
    if any(chain.filter_chain_match.server_names for chain in chains):
        listener.listener_filters.add(
            name=TLS_INSPECTOR, typed_config=typed(tls_inspector_pb2.TlsInspector())
        )
    matched = all(chain.HasField("filter_chain_match") for chain in chains)
    if matched and view.interception_mode is not InterceptionMode.NONE:
        cluster = names.PASSTHROUGH_CLUSTER if context.mesh.allow_any else names.BLACKHOLE_CLUSTER
        listener.default_filter_chain.CopyFrom(
            listener_components_pb2.FilterChain(
                filters=[network_filter(TCP_PROXY_FILTER, tcp_proxy(cluster))]
            )
        )
    return listener


def sniffed_listener(
    view: ProxyView, port: int, services: tuple[Service, ...], context: PushContext
) -> Listener:
    """A port with a service whose protocol is not declared: the TCP chains of its services and the
    HTTP connection manager of route configuration ``N``, chosen by sniffing. An intercepted proxy
    passes through what matches no chain (Istio's PassthroughFilterChain)."""
    scope = context.scope(view.namespace, view.labels)
    chains = tcp_routes.port_chains(services, port, scope, dict(view.labels))
    listener = _listener(view, port)
    manager = network_filter(HCM_FILTER, http_connection_manager(port))
    protocol_sniffing.sniff(listener, manager, chains, _fallthrough(view, context))
    return listener


def build_listeners(view: ProxyView, context: PushContext) -> list[tuple[str, Listener]]:
    if view.type is NodeType.ROUTER:
        return []
    ports = outbound_ports(context.scope(view.namespace, view.labels))
    listeners = [http_listener(view, port, context) for port in ports.http if port not in ports.sniffed]
    listeners += [
        (sniffed_listener if port in ports.sniffed else tcp_listener)(view, port, services, context)
        for port, services in ports.tcp
    ]
    return [(listener.name, listener) for listener in listeners]
