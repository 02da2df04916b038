"""An intercepted sidecar's inbound side: ``virtualInbound`` on 15006 and the ``inbound|PORT||`` and
``InboundPassthroughCluster`` clusters behind it.

Istio's listener_builder.go (``buildInboundListeners``), listener_inbound.go (``buildInboundChainConfigs``,
``buildInboundPassthroughChains``, ``buildInboundFilterchains``) and cluster_builder.go
(``buildInboundClusterForPortOrUDS``, ``buildInboundPassthroughCluster``); shapes in
ISTIO-SIDECAR-AND-SECURITY.md §2.3-§2.5. iptables sends every inbound connection to 15006; the
original_dst listener filter restores its destination, and a chain matching that destination port
hands it to the workload at its own address from 127.0.0.6, the source the capture rules let through
(pilot/capture/rules.py ``INBOUND_PASSTHROUGH_SOURCE``).

Plain text only: each chain's match comes from ``match_options``, one entry per transport; peer
authentication adds its TLS entries there.
"""

from __future__ import annotations

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
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2 as upstream_http
from envoy.type.v3 import range_pb2
from google.protobuf import duration_pb2, wrappers_pb2

from pilot.config.protocols import Protocol, parse_protocol
from pilot.translate import traffic_policy as policy
from pilot.translate.clusters import passthrough_cluster
from pilot.translate.context import PushContext
from pilot.translate.listeners import (
    HCM_FILTER,
    http_filters,
    network_filter,
    tcp_proxy,
    typed,
    wildcard_address,
)
from pilot.translate.proxy import ProxyView
from pilot.translate.tcp_routes import TCP_PROXY_FILTER
from pilot.xds import names

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
RAW_BUFFER = "raw_buffer"  # Envoy's transport protocol when no listener filter detected TLS
PLAINTEXT_HTTP_ALPN = ("http/1.1", "h2c")  # what the HTTP inspector reports for plain HTTP
INBOUND_VIRTUAL_HOST_PREFIX = "inbound|http|"


class ChainKind:
    """What a filter chain runs: an HTTP connection manager, or a tcp_proxy."""

    HTTP = "http"
    TCP = "tcp"


@dataclass(frozen=True, slots=True)
class InboundPort:
    """One port the workload listens on: the chain ``0.0.0.0_<target_port>`` and the cluster
    ``inbound|<target_port>||``. ``port`` and ``hostname`` are the service's, for the virtual host
    name and the tracing operation."""

    target_port: int
    port: int
    hostname: str
    protocol: Protocol


def inbound_ports(view: ProxyView) -> tuple[InboundPort, ...]:
    """One entry per target port, sorted by it; where two services share a target port the first
    target in the view's order sets the protocol (Istio: the oldest Service). UDP is not proxied."""
    ports: dict[int, InboundPort] = {}
    for target in view.targets:
        protocol = parse_protocol(target.protocol)
        if protocol is Protocol.UDP or target.target_port in ports:
            continue
        ports[target.target_port] = InboundPort(target.target_port, target.port, target.hostname, protocol)
    return tuple(ports[number] for number in sorted(ports))


def match_options(protocol: Protocol) -> tuple[tuple[str, FilterChainMatch], ...]:
    """The (chain kind, match) pairs of a port of ``protocol``, plain text only (the DISABLE column
    of §2.3's table): HTTP → HCM on ``raw_buffer``; TCP → tcp_proxy on ``raw_buffer``; an unknown
    protocol is sniffed: plain HTTP ALPNs → HCM, anything else → tcp_proxy."""
    raw = FilterChainMatch(transport_protocol=RAW_BUFFER)
    sniffed_http = FilterChainMatch(transport_protocol=RAW_BUFFER, application_protocols=PLAINTEXT_HTTP_ALPN)
    if protocol.is_http:
        return ((ChainKind.HTTP, raw),)
    if protocol is Protocol.UNSUPPORTED:
        return ((ChainKind.HTTP, sniffed_http), (ChainKind.TCP, raw))
    return ((ChainKind.TCP, raw),)


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
    stat_prefix: str, routes: route_pb2.RouteConfiguration
) -> HttpConnectionManager:
    """Inline routes (no RDS); the client certificate's details forwarded as Istio does."""
    details = HttpConnectionManager.SetCurrentClientCertDetails(
        subject=wrappers_pb2.BoolValue(value=True), uri=True, dns=True
    )
    return HttpConnectionManager(
        stat_prefix=stat_prefix,
        route_config=routes,
        http_filters=http_filters(),
        use_remote_address=wrappers_pb2.BoolValue(value=False),
        forward_client_cert_details=HttpConnectionManager.APPEND_FORWARD,
        set_current_client_cert_details=details,
        normalize_path=wrappers_pb2.BoolValue(value=True),
        path_with_escaped_slashes_action=HttpConnectionManager.KEEP_UNCHANGED,
        upgrade_configs=[HttpConnectionManager.UpgradeConfig(upgrade_type="websocket")],
    )


def _chain(
    name: str, kind: str, match: FilterChainMatch, cluster: str, routes: route_pb2.RouteConfiguration
) -> FilterChain:
    if kind == ChainKind.HTTP:
        manager = inbound_http_connection_manager(f"inbound_{name}", routes)
        filters = [network_filter(HCM_FILTER, manager)]
    else:
        filters = [network_filter(TCP_PROXY_FILTER, tcp_proxy(cluster))]
    return FilterChain(name=name, filter_chain_match=match, filters=filters)


def blackhole_chain() -> FilterChain:
    """Connections addressed to 15006 itself: nothing real listens there (a loop guard)."""
    return FilterChain(
        name=BLACKHOLE_CHAIN,
        filter_chain_match=FilterChainMatch(
            destination_port=wrappers_pb2.UInt32Value(value=VIRTUAL_INBOUND_PORT)
        ),
        filters=[network_filter(TCP_PROXY_FILTER, tcp_proxy(names.BLACKHOLE_CLUSTER))],
    )


def passthrough_chains() -> list[FilterChain]:
    """Inbound traffic to a port no service declares goes to the workload as it came: the sniffed
    port-0 set, ``virtualInbound-catchall-http`` for plain HTTP and ``virtualInbound`` for the rest."""
    cluster = names.INBOUND_PASSTHROUGH_CLUSTER
    routes = inbound_route_configuration(cluster, 0)
    chains = []
    for kind, match in match_options(Protocol.UNSUPPORTED):
        name = CATCH_ALL_HTTP_CHAIN if kind == ChainKind.HTTP else VIRTUAL_INBOUND
        chains.append(_chain(name, kind, match, cluster, routes))
    return chains


def port_chains(port: InboundPort) -> list[FilterChain]:
    cluster = names.inbound_cluster(port.target_port)
    routes = inbound_route_configuration(cluster, port.port, f"{port.hostname}:{port.port}/*")
    name = names.listener_name(port.target_port)
    chains = []
    for kind, match in match_options(port.protocol):
        matched = FilterChainMatch()
        matched.CopyFrom(match)
        matched.destination_port.value = port.target_port
        chains.append(_chain(name, kind, matched, cluster, routes))
    return chains


def _inspector_disabled(ports: list[int]) -> listener_components_pb2.ListenerFilterChainMatchPredicate:
    """Istio's ``listenerPredicateExcludePorts``: the ports whose chains need no ALPN. Without it a
    server-first protocol would wait for the inspector forever (the timeout is 0)."""
    predicate = listener_components_pb2.ListenerFilterChainMatchPredicate
    rules = [predicate(destination_port_range=range_pb2.Int32Range(start=p, end=p + 1)) for p in ports]
    if len(rules) == 1:
        return rules[0]
    return predicate(or_match=predicate.MatchSet(rules=rules))


def virtual_inbound_listener(view: ProxyView) -> Listener:
    ports = inbound_ports(view)
    chains = [blackhole_chain(), *passthrough_chains()]
    for port in ports:
        chains += port_chains(port)
    listener = Listener(
        name=VIRTUAL_INBOUND,
        address=wildcard_address(VIRTUAL_INBOUND_PORT),
        filter_chains=chains,
        traffic_direction=base_pb2.INBOUND,
        continue_on_listener_filters_timeout=True,
        listener_filters_timeout=duration_pb2.Duration(),  # mesh protocolDetectionTimeout, 0 = none
    )
    listener.listener_filters.add(
        name=ORIGINAL_DST_FILTER, typed_config=typed(original_dst_pb2.OriginalDst())
    )
    inspector = listener.listener_filters.add(
        name=HTTP_INSPECTOR, typed_config=typed(http_inspector_pb2.HttpInspector())
    )
    no_alpn = [
        port.target_port
        for port in ports
        if not any(match.application_protocols for _, match in match_options(port.protocol))
    ]
    if no_alpn:
        inspector.filter_disabled.CopyFrom(_inspector_disabled(no_alpn))
    return listener


def _bind_to_passthrough_source(cluster: Cluster) -> None:
    cluster.upstream_bind_config.source_address.CopyFrom(
        address_pb2.SocketAddress(address=INBOUND_PASSTHROUGH_BIND, port_value=0)
    )


def inbound_cluster(port: InboundPort, context: PushContext) -> Cluster:
    """Mesh ``inboundTrafficPolicy`` PASSTHROUGH (Istio's default): to the connection's original
    destination, the workload's own address, rather than 127.0.0.1."""
    cluster = Cluster(
        name=names.inbound_cluster(port.target_port),
        type=Cluster.ORIGINAL_DST,
        lb_policy=Cluster.CLUSTER_PROVIDED,
        common_lb_config=Cluster.CommonLbConfig(),
    )
    cluster.connect_timeout.FromTimedelta(context.mesh.connect_timeout)
    cluster.circuit_breakers.thresholds.append(policy.default_thresholds())
    _bind_to_passthrough_source(cluster)
    if port.protocol.is_http2:
        options = upstream_http.HttpProtocolOptions()
        options.explicit_http_config.http2_protocol_options.SetInParent()
        cluster.typed_extension_protocol_options[policy.HTTP_PROTOCOL_OPTIONS].Pack(options)
    return cluster


def inbound_passthrough_cluster(context: PushContext) -> Cluster:
    """PassthroughCluster's shape, bound to the passthrough source address."""
    cluster = passthrough_cluster(context)
    cluster.name = names.INBOUND_PASSTHROUGH_CLUSTER
    _bind_to_passthrough_source(cluster)
    return cluster


def inbound_clusters(view: ProxyView, context: PushContext) -> list[Cluster]:
    """``inbound|PORT||`` by port, then InboundPassthroughCluster (Istio's CDS order)."""
    clusters = [inbound_cluster(port, context) for port in inbound_ports(view)]
    clusters.append(inbound_passthrough_cluster(context))
    return clusters
