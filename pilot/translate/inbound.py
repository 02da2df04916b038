"""An intercepted sidecar's inbound side: ``virtualInbound`` on 15006 and the ``inbound|PORT||`` and
``InboundPassthroughCluster`` clusters behind it.

Istio's listener_builder.go (``buildInboundListeners``), listener_inbound.go (``buildInboundChainConfigs``,
``buildInboundPassthroughChains``, ``buildInboundFilterchains``) and cluster_builder.go
(``buildInboundClusterForPortOrUDS``, ``buildInboundPassthroughCluster``); shapes in
ISTIO-SIDECAR-AND-SECURITY.md §2.3-§2.5. iptables sends every inbound connection to 15006; the
original_dst listener filter restores its destination, and a chain matching that destination port
hands it to the workload at its own address from 127.0.0.6, the source the capture rules let through
(pilot/capture/rules.py ``INBOUND_PASSTHROUGH_SOURCE``).

A Sidecar with ``ingress`` listeners replaces the ports of the services the proxy backs (Istio's
``buildInboundChainConfigs``, without PILOT_ENABLE_SIDECAR_SERVICE_INBOUND_LISTENER_MERGE): each
gives a port whose cluster ``inbound|PORT||`` sends to its ``defaultEndpoint``
(``buildInboundClustersFromSidecar``): ``127.0.0.1:P`` a STATIC cluster on loopback; ``0.0.0.0:P``
the proxy's own address, which pilot reaches as an ORIGINAL_DST cluster with the port overridden to
P, so the address stays out of the shared view; ``unix://PATH`` a STATIC cluster on the socket; none
the connection's original destination. A port binds a listener of its own (``<bind>_<port>``, no
original_dst) when its ``captureMode`` is NONE, or it has none and the proxy's is NONE; its bind
defaults to the wildcard address (Istio's, the proxy's IP, would give each proxy its own view).
Otherwise its chains join ``virtualInbound``. A NONE-mode proxy without Sidecar ingress gets no
inbound listeners or clusters, as in Istio. ``ingress[].tls`` is not translated: Istio ignores it
too unless ENABLE_TLS_ON_SIDECAR_INGRESS is set.

A port's chains come from ``match_options`` (plain text), one ``MatchOption`` per chain; a proxy with
mesh certificates gets Istio's PERMISSIVE set in ``virtualInbound`` instead, whose ``tls`` options
terminate mTLS (pilot/translate/inbound_tls.py passes its options and transport sockets in).
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeAlias

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2, base_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.listener.http_inspector.v3 import http_inspector_pb2
from envoy.extensions.filters.listener.original_dst.v3 import original_dst_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from envoy.type.v3 import range_pb2
from google.protobuf import duration_pb2, wrappers_pb2

from pilot._gen import networking_pb2 as nw
from pilot.config.protocols import Protocol, parse_protocol
from pilot.translate import listeners
from pilot.translate import traffic_policy as policy
from pilot.translate.auth_filters import auth_filters
from pilot.translate.clusters import passthrough_cluster
from pilot.translate.context import PushContext
from pilot.translate.proxy import InterceptionMode, ProxyView
from pilot.translate.sidecar_scope import SidecarScope
from pilot.translate.tcp_routes import TCP_PROXY_FILTER
from pilot.xds import names

log = logging.getLogger("pilot.translate.inbound")

Cluster: TypeAlias = cluster_pb2.Cluster
Listener: TypeAlias = listener_pb2.Listener
FilterChain: TypeAlias = listener_components_pb2.FilterChain
FilterChainMatch: TypeAlias = listener_components_pb2.FilterChainMatch
HttpConnectionManager: TypeAlias = hcm_pb2.HttpConnectionManager

VIRTUAL_INBOUND = "virtualInbound"  # also the name of its TCP passthrough chain
VIRTUAL_INBOUND_PORT = 15006  # mesh proxyInboundListenPort
BLACKHOLE_CHAIN = "virtualInbound-blackhole"
CATCH_ALL_HTTP_CHAIN = "virtualInbound-catchall-http"
ORIGINAL_DST_FILTER = "envoy.filters.listener.original_dst"
HTTP_INSPECTOR = "envoy.filters.listener.http_inspector"
# The source address of what the sidecar hands to its workload; the capture rules return it untouched.
INBOUND_PASSTHROUGH_BIND = "127.0.0.6"
UNIX_PREFIX = "unix://"
RAW_BUFFER = "raw_buffer"  # Envoy's transport protocol when no listener filter detected TLS
PLAINTEXT_HTTP_ALPN = ("http/1.1", "h2c")  # what the HTTP inspector reports for plain HTTP
INBOUND_VIRTUAL_HOST_PREFIX = "inbound|http|"
INBOUND_CLEANUP_INTERVAL_SECONDS = 60
# Ports the sidecar itself listens on: virtualOutbound (15001), virtualInbound, and the agent
# bootstrap's status (15021) and Prometheus (15090) listeners.
RESERVED_PORTS = frozenset({15001, VIRTUAL_INBOUND_PORT, 15021, 15090})


class ChainKind(enum.Enum):
    """What a filter chain runs (Istio's ListenerProtocol): an HTTP connection manager, or a tcp_proxy."""

    HTTP = "http"
    TCP = "tcp"


@dataclass(frozen=True, slots=True)
class MatchOption:
    """One filter chain of a port: Istio's ``FilterChainMatchOptions``. ``tls`` chains (mTLS, from
    peer authentication) terminate TLS. A ``refused`` chain takes every connection to its port to
    the BlackHoleCluster: a port whose policy is STRICT on a proxy that cannot terminate mTLS
    (inbound_tls.py), which must not fall through to the passthrough chains."""

    kind: ChainKind
    transport_protocol: str
    application_protocols: tuple[str, ...] = ()
    tls: bool = False
    refused: bool = False

    def filter_chain_match(self, target_port: int) -> FilterChainMatch:
        match = FilterChainMatch(
            transport_protocol=self.transport_protocol, application_protocols=self.application_protocols
        )
        if target_port > 0:
            match.destination_port.value = target_port
        return match


@dataclass(frozen=True, slots=True)
class InboundPort:
    """One port the workload listens on: the chain ``0.0.0.0_<target_port>`` and the cluster
    ``inbound|<target_port>||``. ``port`` and ``hostname`` are the service's, for the virtual host
    name and the tracing operation. A Sidecar ingress port also has its ``endpoint``
    (``defaultEndpoint``), its ``bind`` address, whether it binds a listener of its own, and the
    connection pool of its cluster."""

    target_port: int
    port: int
    hostname: str
    protocol: Protocol
    endpoint: str = ""
    bind: str = names.WILDCARD_ADDRESS
    binds: bool = False
    connection_pool: nw.ConnectionPoolSettings | None = None


def inbound_ports(view: ProxyView, context: PushContext) -> tuple[InboundPort, ...]:
    """The inbound ports of a sidecar: its Sidecar's ingress listeners if it has any, else (in
    REDIRECT mode) the ports of the services it backs."""
    scope = context.scope_of(view)
    if scope.sidecar.ingress:
        return _ingress_ports(view, scope.sidecar)
    if view.interception_mode is InterceptionMode.NONE:
        return ()
    return _target_ports(view, scope.sidecar.inbound_connection_pool)


def _target_ports(view: ProxyView, pool: nw.ConnectionPoolSettings | None) -> tuple[InboundPort, ...]:
    """One entry per target port, sorted by it; where two services share a target port the first
    target in the view's order sets the protocol (Istio: the oldest Service). UDP is not proxied, and
    the sidecar's own ports are skipped, as Istio's ``conflictWithReservedListener`` does."""
    ports: dict[int, InboundPort] = {}
    for target in view.targets:
        protocol = parse_protocol(target.protocol)
        if protocol is Protocol.UDP or target.target_port in ports:
            continue
        if target.target_port in RESERVED_PORTS:
            log.warning(
                "%s port %d: target port %d is the sidecar's own; no inbound chain",
                target.hostname,
                target.port,
                target.target_port,
            )
            continue
        ports[target.target_port] = InboundPort(
            target.target_port, target.port, target.hostname, protocol, connection_pool=pool
        )
    return tuple(ports[number] for number in sorted(ports))


def _ingress_ports(view: ProxyView, scope: SidecarScope) -> tuple[InboundPort, ...]:
    """Istio's Sidecar branch of buildInboundChainConfigs: the first listener of a port wins; the
    host is the service the proxy backs on that port, else ``<sidecar>.<namespace>``."""
    ports: dict[int, InboundPort] = {}
    for ingress in scope.ingress:
        number = ingress.port.number
        protocol = parse_protocol(ingress.port.protocol)
        if number in ports or protocol is Protocol.UDP or number in RESERVED_PORTS:
            continue
        mode = nw.CaptureMode.Name(ingress.capture_mode)
        binds = view.interception_mode is InterceptionMode.NONE if mode == "DEFAULT" else mode == "NONE"
        hostname = next(
            (t.hostname for t in view.targets if t.target_port == number), f"{scope.name}.{scope.namespace}"
        )
        pool = (
            ingress.connection_pool if ingress.HasField("connection_pool") else scope.inbound_connection_pool
        )
        ports[number] = InboundPort(
            number,
            number,
            hostname,
            protocol,
            endpoint=ingress.default_endpoint,
            bind=ingress.bind or names.WILDCARD_ADDRESS,
            binds=binds,
            connection_pool=pool,
        )
    return tuple(ports[number] for number in sorted(ports))


# Istio's inboundPlainText{HTTP,TCP,}FilterChainMatchOptions (filterchain_options.go): the DISABLE
# column of §2.3's table. An unknown protocol (Istio's "auto") is sniffed: plain HTTP ALPNs → HCM,
# anything else → tcp_proxy.
_PLAINTEXT_HTTP = (MatchOption(ChainKind.HTTP, RAW_BUFFER),)
_PLAINTEXT_TCP = (MatchOption(ChainKind.TCP, RAW_BUFFER),)
_PLAINTEXT_AUTO = (MatchOption(ChainKind.HTTP, RAW_BUFFER, PLAINTEXT_HTTP_ALPN), *_PLAINTEXT_TCP)


def match_options(protocol: Protocol, target_port: int = 0) -> tuple[MatchOption, ...]:
    """The chains of a port of ``protocol``, in Istio's order (``getFilterChainMatchOptions`` with mTLS
    mode DISABLE, whatever the port; the STRICT and PERMISSIVE sets have ``tls`` options)."""
    if protocol.is_http:
        return _PLAINTEXT_HTTP
    if protocol is Protocol.UNSUPPORTED:
        return _PLAINTEXT_AUTO
    return _PLAINTEXT_TCP


# The chains of a port, by its protocol and target port (0: the passthrough set); peer authentication
# gives each port its mode (pilot/translate/inbound_tls.py).
ChainOptions = Callable[[Protocol, int], tuple["MatchOption", ...]]
# The transport socket of a ``tls`` option's chain, by what the chain runs.
TlsSocket = Callable[["ChainKind"], base_pb2.TransportSocket]


def inbound_route_configuration(
    cluster: str, port: int, operation: str | None = None
) -> route_pb2.RouteConfiguration:
    """Istio's ``buildSidecarInboundHTTPRouteConfig``: named after the cluster, one virtual host
    ``inbound|http|<port>`` for any domain, one route ``default`` without a timeout; ``operation``
    names the route in traces (``HOST:PORT/*``)."""
    action = rc.RouteAction(cluster=cluster, timeout=duration_pb2.Duration())
    action.max_stream_duration.max_stream_duration.SetInParent()
    action.max_stream_duration.grpc_timeout_header_max.SetInParent()
    route = rc.Route(name="default", match=rc.RouteMatch(prefix="/"), route=action)
    if operation:
        route.decorator.operation = operation
    host = rc.VirtualHost(name=f"{INBOUND_VIRTUAL_HOST_PREFIX}{port}", domains=["*"], routes=[route])
    return route_pb2.RouteConfiguration(
        name=cluster, virtual_hosts=[host], validate_clusters=wrappers_pb2.BoolValue(value=False)
    )


def inbound_http_connection_manager(
    stat_prefix: str, routes: route_pb2.RouteConfiguration, auth: Sequence[hcm_pb2.HttpFilter] = ()
) -> HttpConnectionManager:
    """Inline routes (no RDS); the client certificate's details forwarded as Istio does; ``auth``:
    the proxy's authentication and authorization filters (pilot.translate.auth_filters), first."""
    details = HttpConnectionManager.SetCurrentClientCertDetails(
        subject=wrappers_pb2.BoolValue(value=True), uri=True, dns=True
    )
    return HttpConnectionManager(
        stat_prefix=stat_prefix,
        stream_idle_timeout=listeners.NO_STREAM_IDLE_TIMEOUT,
        route_config=routes,
        http_filters=[*auth, *listeners.http_filters()],
        use_remote_address=wrappers_pb2.BoolValue(value=False),
        forward_client_cert_details=HttpConnectionManager.APPEND_FORWARD,
        set_current_client_cert_details=details,
        normalize_path=wrappers_pb2.BoolValue(value=True),
        path_with_escaped_slashes_action=HttpConnectionManager.KEEP_UNCHANGED,
        upgrade_configs=[HttpConnectionManager.UpgradeConfig(upgrade_type="websocket")],
    )


def _chain(
    name: str,
    option: MatchOption,
    target_port: int,
    cluster: str,
    routes: route_pb2.RouteConfiguration,
    stat_prefix: str,
    http2: bool = False,
    tls_socket: TlsSocket | None = None,
    auth: Sequence[hcm_pb2.HttpFilter] = (),
) -> FilterChain:
    if option.refused:
        filters = [listeners.network_filter(TCP_PROXY_FILTER, listeners.tcp_proxy(names.BLACKHOLE_CLUSTER))]
    elif option.kind is ChainKind.HTTP:
        manager = inbound_http_connection_manager(stat_prefix, routes, auth)
        if http2:  # HTTP/2 and gRPC ports (Istio's buildSidecarInboundHTTPOpts)
            manager.http2_protocol_options.SetInParent()
        filters = [listeners.network_filter(listeners.HCM_FILTER, manager)]
    else:
        filters = [listeners.network_filter(TCP_PROXY_FILTER, listeners.tcp_proxy(cluster))]
    chain = FilterChain(name=name, filter_chain_match=option.filter_chain_match(target_port), filters=filters)
    if option.tls and tls_socket is not None:
        chain.transport_socket.CopyFrom(tls_socket(option.kind))
    return chain


def blackhole_chain() -> FilterChain:
    """Connections addressed to 15006 itself: nothing real listens there (a loop guard)."""
    match = FilterChainMatch(destination_port=wrappers_pb2.UInt32Value(value=VIRTUAL_INBOUND_PORT))
    return FilterChain(
        name=BLACKHOLE_CHAIN,
        filter_chain_match=match,
        filters=[listeners.network_filter(TCP_PROXY_FILTER, listeners.tcp_proxy(names.BLACKHOLE_CLUSTER))],
    )


def passthrough_chains(
    options: ChainOptions = match_options,
    tls_socket: TlsSocket | None = None,
    auth: Sequence[hcm_pb2.HttpFilter] = (),
    ports: tuple[int, ...] = (0,),
) -> list[FilterChain]:
    """Inbound traffic to a port no service declares goes to the workload as it came: the sniffed
    port-0 set, ``virtualInbound-catchall-http`` for plain HTTP and ``virtualInbound`` for the rest;
    then the same set matching each other port of ``ports`` (Istio's ``buildInboundPassthroughChains``:
    the ``portLevelMtls`` ports no service exposes). Istio's passthrough config has service port 0
    and no host, hence the operation ``:0/*``."""
    cluster = names.INBOUND_PASSTHROUGH_CLUSTER
    routes = inbound_route_configuration(cluster, 0, ":0/*")
    chains = []
    for port in ports:
        for option in options(Protocol.UNSUPPORTED, port):
            name = CATCH_ALL_HTTP_CHAIN if option.kind is ChainKind.HTTP else VIRTUAL_INBOUND
            chains.append(
                _chain(
                    name, option, port, cluster, routes, stat_prefix=cluster, tls_socket=tls_socket, auth=auth
                )
            )
    return chains


def port_chains(
    port: InboundPort,
    options: ChainOptions = match_options,
    tls_socket: TlsSocket | None = None,
    auth: Sequence[hcm_pb2.HttpFilter] = (),
) -> list[FilterChain]:
    cluster = names.inbound_cluster(port.target_port)
    routes = inbound_route_configuration(cluster, port.port, f"{port.hostname}:{port.port}/*")
    name = names.listener_name(port.target_port)
    prefix = f"inbound_{name}"
    return [
        _chain(
            name, option, port.target_port, cluster, routes, prefix, port.protocol.is_http2, tls_socket, auth
        )
        for option in options(port.protocol, port.target_port)
    ]


def ports_excluded(ports: list[int]) -> listener_components_pb2.ListenerFilterChainMatchPredicate:
    """Istio's ``listenerPredicateExcludePorts``: true for a connection to any of ``ports``."""
    predicate = listener_components_pb2.ListenerFilterChainMatchPredicate
    rules = [predicate(destination_port_range=range_pb2.Int32Range(start=p, end=p + 1)) for p in ports]
    if len(rules) == 1:
        return rules[0]
    return predicate(or_match=predicate.MatchSet(rules=rules))


def http_inspector(chains: list[FilterChain]) -> listener_components_pb2.ListenerFilter | None:
    """Istio's ``populateListenerFilters``/``buildHTTPInspector``: the HTTP inspector if some chain
    matches a plain HTTP ALPN, turned off for the destination ports whose chains match none. Without
    that, a server-first protocol on such a port would wait for the inspector (the timeout is 0)."""
    needs: dict[int, bool] = {}
    for chain in chains:
        port = chain.filter_chain_match.destination_port.value
        alpn = any(p in PLAINTEXT_HTTP_ALPN for p in chain.filter_chain_match.application_protocols)
        needs[port] = needs.get(port, False) or alpn
    if not any(needs.values()):
        return None
    inspector = listener_components_pb2.ListenerFilter(
        name=HTTP_INSPECTOR, typed_config=listeners.typed(http_inspector_pb2.HttpInspector())
    )
    disabled = sorted(port for port, needed in needs.items() if not needed)
    if disabled:
        inspector.filter_disabled.CopyFrom(ports_excluded(disabled))
    return inspector


def virtual_inbound_listener(
    view: ProxyView,
    context: PushContext,
    options: ChainOptions = match_options,
    tls_socket: TlsSocket | None = None,
    passthrough_ports: tuple[int, ...] = (0,),
) -> Listener:
    """Chains: the blackhole, the passthrough sets of ``passthrough_ports``, then each target port's,
    by port (Istio's ``inboundVirtualListener``), from ``options``. Listener filters: original_dst,
    then the HTTP inspector where a chain needs it (inbound_tls.py puts the TLS inspector between
    them)."""
    auth = auth_filters(view, context)
    chains = [blackhole_chain(), *passthrough_chains(options, tls_socket, auth, passthrough_ports)]
    for port in inbound_ports(view, context):
        if not port.binds:
            chains += port_chains(port, options, tls_socket, auth)
    listener = _inbound_listener(VIRTUAL_INBOUND, listeners.wildcard_address(VIRTUAL_INBOUND_PORT), chains)
    listener.listener_filters.insert(
        0,
        listener_components_pb2.ListenerFilter(
            name=ORIGINAL_DST_FILTER, typed_config=listeners.typed(original_dst_pb2.OriginalDst())
        ),
    )
    return listener


def _inbound_listener(name: str, address: address_pb2.Address, chains: list[FilterChain]) -> Listener:
    """Istio's buildInboundListener: INBOUND, listener filters the chains need, no detection timeout."""
    listener = Listener(
        name=name,
        address=address,
        filter_chains=chains,
        traffic_direction=base_pb2.INBOUND,
        continue_on_listener_filters_timeout=True,
        listener_filters_timeout=duration_pb2.Duration(),  # mesh protocolDetectionTimeout, 0 = none
    )
    inspector = http_inspector(chains)
    if inspector is not None:
        listener.listener_filters.append(inspector)
    return listener


def bound_inbound_listeners(
    view: ProxyView,
    context: PushContext,
    options: ChainOptions = match_options,
    tls_socket: TlsSocket | None = None,
) -> list[Listener]:
    """The Sidecar ingress ports that bind a listener of their own (Istio's inboundCustomListener),
    each with its port's chains from ``options``."""
    out = []
    auth = auth_filters(view, context)
    for port in inbound_ports(view, context):
        if port.binds:
            address = address_pb2.Address(
                socket_address=address_pb2.SocketAddress(address=port.bind, port_value=port.target_port)
            )
            out.append(
                _inbound_listener(
                    names.listener_name(port.target_port, port.bind),
                    address,
                    port_chains(port, options, tls_socket, auth),
                )
            )
    return out


def inbound_listeners(view: ProxyView, context: PushContext) -> list[Listener]:
    """``virtualInbound`` in REDIRECT mode, then the listeners that bind (Istio's LDS order)."""
    out = []
    if view.interception_mode is InterceptionMode.REDIRECT:
        out.append(virtual_inbound_listener(view, context))
    return out + bound_inbound_listeners(view, context)


def _bind_to_passthrough_source(cluster: Cluster) -> None:
    cluster.upstream_bind_config.source_address.CopyFrom(
        address_pb2.SocketAddress(address=INBOUND_PASSTHROUGH_BIND, port_value=0)
    )


def inbound_cluster(port: InboundPort, context: PushContext) -> Cluster:
    """Mesh ``inboundTrafficPolicy`` PASSTHROUGH (Istio's default): to the connection's original
    destination, the workload's own address, rather than 127.0.0.1; a Sidecar ingress port's
    ``defaultEndpoint`` overrides that (module docstring)."""
    name = names.inbound_cluster(port.target_port)
    endpoint = _default_endpoint(port.endpoint)
    if endpoint is None or isinstance(endpoint, int):
        cluster = Cluster(
            name=name,
            type=Cluster.ORIGINAL_DST,
            lb_policy=Cluster.CLUSTER_PROVIDED,
            common_lb_config=Cluster.CommonLbConfig(),
        )
        # Istio keeps idle connections to the workload for 60 s rather than Envoy's default 5 s.
        cluster.cleanup_interval.FromSeconds(INBOUND_CLEANUP_INTERVAL_SECONDS)
        if isinstance(endpoint, int):  # 0.0.0.0:P: the proxy's own address, port P
            cluster.original_dst_lb_config.upstream_port_override.value = endpoint
    else:
        cluster = Cluster(name=name, type=Cluster.STATIC, common_lb_config=Cluster.CommonLbConfig())
        lb_endpoint = cluster.load_assignment.endpoints.add().lb_endpoints.add()
        lb_endpoint.endpoint.address.CopyFrom(endpoint)
        cluster.load_assignment.cluster_name = name
    cluster.connect_timeout.FromTimedelta(context.mesh.connect_timeout)
    policy.apply_inbound(cluster, port.connection_pool, port.protocol.is_http2)
    # Istio's "magic" source address, so the capture rules do not send the connection back to the
    # proxy; not needed to reach loopback, and meaningless on a unix socket.
    if endpoint is None or isinstance(endpoint, int):
        _bind_to_passthrough_source(cluster)
    return cluster


def _default_endpoint(written: str) -> address_pb2.Address | int | None:
    """A defaultEndpoint as a STATIC address (loopback or unix socket), a port override (the
    proxy's own address), or None (empty: the original destination). Validation guarantees the form."""
    if not written:
        return None
    if written.startswith(UNIX_PREFIX):
        return address_pb2.Address(pipe=address_pb2.Pipe(path=written.removeprefix(UNIX_PREFIX)))
    host, _, port_text = written.rpartition(":")
    host = host.strip("[]")
    port = int(port_text)
    if host in ("0.0.0.0", "::"):
        return port
    return address_pb2.Address(socket_address=address_pb2.SocketAddress(address=host, port_value=port))


def inbound_passthrough_cluster(context: PushContext) -> Cluster:
    """PassthroughCluster's shape, bound to the passthrough source address."""
    cluster = passthrough_cluster(context)
    cluster.name = names.INBOUND_PASSTHROUGH_CLUSTER
    _bind_to_passthrough_source(cluster)
    return cluster


def inbound_clusters(view: ProxyView, context: PushContext) -> list[Cluster]:
    """``inbound|PORT||`` by port, then InboundPassthroughCluster in REDIRECT mode (Istio's CDS order)."""
    clusters = [inbound_cluster(port, context) for port in inbound_ports(view, context)]
    if view.interception_mode is InterceptionMode.REDIRECT:
        clusters.append(inbound_passthrough_cluster(context))
    return clusters
