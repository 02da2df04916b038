"""LDS for proxyless gRPC: API listeners named ``HOST:PORT`` and server listeners.

A gRPC channel to ``xds:///reviews.default.svc.cluster.local:9080`` asks LDS for the listener
named exactly ``reviews.default.svc.cluster.local:9080`` (gRFC A27); the listener is an
``api_listener`` holding an HTTP connection manager that names its route configuration over RDS
(Istio's grpcgen/lds.go ``buildOutboundListeners``). Istio answers the names a client asks for and
also expands short names (``reviews:9080`` from the service's namespace); pilot translates a view
once for every client of it, so the listener is built under every name a client of the view may
use: the host, and the shorter names ``hosts.alt_hosts`` gives (the names a sidecar's virtual host
answers to). A client subscribes to some of them; the server sends only those.

An xDS-enabled gRPC server asks for ``xds.istio.io/grpc/lds/inbound/ADDRESS:PORT``, the address it
listens on (Istio's ``grpcxds.ServerListenerNameTemplate``). Istio picks the proxy's service target
on that port whatever the address; pilot builds the name for the wildcard and loopback addresses of
every target port. The listener routes everything to the application (``non_forwarding_action``,
gRFC A36) over one filter chain: ``inbound-mtls`` (a DownstreamTlsContext requiring a client
certificate) or ``inbound-plaintext``, by the port's PeerAuthentication mode and the workload's
``security.istio.io/tlsMode`` label (pilot.translate.grpc_tls says why). The mode comes in as a
function of the port (``grpc_tls.ModeForPort``), PERMISSIVE for every port by default. The
connection manager's HTTP filters are the view's RBAC filters (AuthorizationPolicy,
pilot.translate.grpc_authz), then the router.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeAlias

from envoy.config.core.v3 import address_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.http.fault.v3 import fault_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from google.protobuf import any_pb2

from pilot.translate import grpc_authz, grpc_tls, hosts
from pilot.translate.context import PushContext
from pilot.translate.grpc_clusters import ads
from pilot.translate.grpc_routes import grpc_ports, route_config_name
from pilot.translate.grpc_tls import ModeForPort
from pilot.translate.listeners import FAULT_FILTER, HCM_FILTER, ROUTER_FILTER, typed
from pilot.translate.proxy import ProxyView

Listener: TypeAlias = listener_pb2.Listener
HttpConnectionManager: TypeAlias = hcm_pb2.HttpConnectionManager

SERVER_LISTENER_PREFIX = "xds.istio.io/grpc/lds/inbound/"
# The addresses an xDS server's listener name may carry: gRPC puts the address it binds in the name.
SERVER_ADDRESSES = ("0.0.0.0", "[::]", "127.0.0.1", "[::1]")


def http_filters() -> list[hcm_pb2.HttpFilter]:
    """What gRPC implements of Istio's chain (gRFC A39): fault injection, then the router (last)."""
    return [
        hcm_pb2.HttpFilter(name=FAULT_FILTER, typed_config=typed(fault_pb2.HTTPFault())),
        hcm_pb2.HttpFilter(name=ROUTER_FILTER, typed_config=typed(router_pb2.Router())),
    ]


def api_manager(hostname: str, port: int) -> any_pb2.Any:
    """The packed HTTP connection manager of ``hostname:port``'s API listener (under every name)."""
    manager = HttpConnectionManager(
        rds=hcm_pb2.Rds(config_source=ads(), route_config_name=route_config_name(hostname, port)),
        http_filters=http_filters(),
    )
    return typed(manager)


def outbound_listener(name: str, manager: any_pb2.Any) -> Listener:
    listener = Listener(name=name)
    listener.api_listener.api_listener.CopyFrom(manager)
    return listener


def listener_names(hostname: str, port: int, view: ProxyView) -> list[str]:
    """``HOST:PORT`` and the short forms a client in the view's namespace may dial."""
    return [
        hosts.with_port(h, port)
        for h in (hostname, *hosts.alt_hosts(hostname, view.namespace, view.dns_domain))
    ]


def server_listener(
    name: str, address: str, port: int, mtls: bool = False, rbac: Sequence[hcm_pb2.HttpFilter] = ()
) -> Listener:
    """Istio's buildInboundListeners: one chain whose inline route sends everything to the server,
    its HTTP filters ``rbac`` then the router (last); no listener filters and no
    ``use_original_dst`` (gRPC NACKs both)."""
    config = route_pb2.RouteConfiguration(
        name="inbound",
        virtual_hosts=[
            rc.VirtualHost(
                name="inbound",
                domains=["*"],
                routes=[
                    rc.Route(match=rc.RouteMatch(prefix="/"), non_forwarding_action=rc.NonForwardingAction())
                ],
            )
        ],
    )
    manager = HttpConnectionManager(
        stat_prefix="inbound",
        route_config=config,
        http_filters=[*rbac, hcm_pb2.HttpFilter(name=ROUTER_FILTER, typed_config=typed(router_pb2.Router()))],
    )
    suffix = "mtls" if mtls else "plaintext"  # Istio's chain names
    chain = listener_components_pb2.FilterChain(
        name=f"inbound-{suffix}",
        filters=[listener_components_pb2.Filter(name=HCM_FILTER, typed_config=typed(manager))],
    )
    if mtls:
        chain.transport_socket.CopyFrom(grpc_tls.downstream_socket())
    bind = address.strip("[]")
    socket = address_pb2.SocketAddress(address=bind, port_value=port)
    return Listener(name=name, address=address_pb2.Address(socket_address=socket), filter_chains=[chain])


def build_listeners(
    view: ProxyView, context: PushContext, mode_for_port: ModeForPort = grpc_tls.permissive
) -> list[tuple[str, Listener]]:
    """The API listeners of every visible service port, then the server listeners of the view's
    target ports, each with the mTLS ``mode_for_port`` gives its port and the view's RBAC filters."""
    scope = context.scope_of(view)
    out: list[tuple[str, Listener]] = []
    seen: set[str] = set()
    for service in scope.services:
        for port in grpc_ports(service):
            manager = api_manager(service.hostname, port)
            for name in listener_names(service.hostname, port, view):
                if name not in seen:  # the first service (by host) keeps a short name, as for domains
                    seen.add(name)
                    out.append((name, outbound_listener(name, manager)))
    labels = dict(view.labels)
    rbac = grpc_authz.server_rbac_filters(view, context) if view.targets else []
    for target_port in sorted({target.target_port for target in view.targets}):
        mtls = grpc_tls.server_requires_mtls(mode_for_port(target_port), labels)
        for address in SERVER_ADDRESSES:
            name = f"{SERVER_LISTENER_PREFIX}{address}:{target_port}"
            out.append((name, server_listener(name, address, target_port, mtls, rbac)))
    return out


__all__ = [
    "SERVER_LISTENER_PREFIX",
    "build_listeners",
    "listener_names",
    "outbound_listener",
    "server_listener",
]
