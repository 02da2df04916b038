"""What an intercepted sidecar gets besides its port listeners: ``virtualOutbound`` on 15001 and, in
REDIRECT mode, ``virtualInbound`` on 15006 with the inbound clusters behind it.

Istio's listener_builder.go: LDS is the outbound port listeners, then ``virtualOutbound``, then
``virtualInbound``; CDS is the outbound clusters, BlackHoleCluster, PassthroughCluster, then
``inbound|PORT||`` and InboundPassthroughCluster (ISTIO-SIDECAR-AND-SECURITY.md §2). A NONE-mode
sidecar gets none of these: nothing redirects traffic to it.
"""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from google.protobuf import wrappers_pb2

from pilot.translate import inbound, inbound_tls
from pilot.translate.context import PushContext
from pilot.translate.listeners import network_filter, tcp_proxy, wildcard_address
from pilot.translate.proxy import InterceptionMode, NodeType, ProxyView
from pilot.translate.tcp_routes import TCP_PROXY_FILTER
from pilot.xds import names

VIRTUAL_OUTBOUND = "virtualOutbound"
VIRTUAL_OUTBOUND_PORT = 15001  # mesh proxyListenPort
BLACKHOLE_CHAIN = "virtualOutbound-blackhole"  # Istio's VirtualOutboundBlackholeFilterChainName
CATCH_ALL_CHAIN = "virtualOutbound-catchall-tcp"  # Istio's VirtualOutboundCatchAllTCPFilterChainName


def _tcp_chain(
    name: str, cluster: str, match: listener_components_pb2.FilterChainMatch | None = None
) -> listener_components_pb2.FilterChain:
    chain = listener_components_pb2.FilterChain(
        name=name, filters=[network_filter(TCP_PROXY_FILTER, tcp_proxy(cluster))]
    )
    if match is not None:
        chain.filter_chain_match.CopyFrom(match)
    return chain


def virtual_outbound_listener(view: ProxyView, context: PushContext) -> listener_pb2.Listener:
    """Port 15001, where iptables sends outbound traffic: handed to the listener of the original
    destination (use_original_dst), or else passed through (ALLOW_ANY) or dropped (REGISTRY_ONLY).
    A connection addressed to 15001 itself is dropped, so the proxy never loops to itself."""
    catch_all = context.scope_of(view).catch_all_cluster
    loop = listener_components_pb2.FilterChainMatch(
        destination_port=wrappers_pb2.UInt32Value(value=VIRTUAL_OUTBOUND_PORT)
    )
    listener = listener_pb2.Listener(
        name=VIRTUAL_OUTBOUND,
        address=wildcard_address(VIRTUAL_OUTBOUND_PORT),
        use_original_dst=wrappers_pb2.BoolValue(value=True),
        filter_chains=[
            _tcp_chain(BLACKHOLE_CHAIN, names.BLACKHOLE_CLUSTER, loop),
            _tcp_chain(CATCH_ALL_CHAIN, catch_all),
        ],
        traffic_direction=base_pb2.OUTBOUND,
    )
    if view.interception_mode is InterceptionMode.TPROXY:
        listener.transparent.CopyFrom(wrappers_pb2.BoolValue(value=True))
    return listener


def _captured(view: ProxyView) -> bool:
    return view.type is NodeType.SIDECAR and view.interception_mode is not InterceptionMode.NONE


def capture_listeners(view: ProxyView, context: PushContext) -> list[listener_pb2.Listener]:
    """``virtualOutbound`` for an intercepted sidecar; then its inbound listeners: ``virtualInbound``
    in REDIRECT mode, with mTLS chains when the proxy has mesh certificates (TPROXY's inbound side,
    with original_src and transparent sockets, is not built), and the Sidecar ingress ports that bind,
    in any mode."""
    if view.type is not NodeType.SIDECAR:
        return []
    out = [virtual_outbound_listener(view, context)] if _captured(view) else []
    if view.interception_mode is not InterceptionMode.TPROXY:
        out += inbound_tls.inbound_listeners(view, context)
    return out


def capture_clusters(view: ProxyView, context: PushContext) -> list[cluster_pb2.Cluster]:
    """The clusters the inbound listeners send to (BlackHoleCluster and PassthroughCluster every
    sidecar gets already: clusters.py)."""
    if view.type is not NodeType.SIDECAR or view.interception_mode is InterceptionMode.TPROXY:
        return []
    return inbound.inbound_clusters(view, context)
