"""The Gateways a router serves, merged per port (the VirtualServices they serve: gateway_binding).

Istio's pilot/pkg/model/gateway.go (``mergeGateways``, ``gatewayRDSRouteName``,
``sanitizeServerHostNamespace``, ``GetSNIHostsForServer``, ``CheckDuplicates``), push_context.go
(``mergeGateways``: a Gateway applies to a router when its ``selector`` is a subset of the router's
labels, an empty selector to every router) and config.go (``resolveGatewayName``). Servers pilot
cannot serve (secrets over SDS, Istio mTLS, SNI-DNAT passthrough, unix sockets: see
``validation.gateway.unsupported_server``) are left out before merging, so nothing names them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import NamedTuple

from pilot._gen import networking_pb2 as nw
from pilot.config.objects import ConfigKey, ConfigObject
from pilot.config.protocols import Protocol, parse_protocol
from pilot.config.validation.gateway import unsupported_server
from pilot.translate.config_entries import MESH_GATEWAY
from pilot.translate.context import PushContext
from pilot.translate.proxy import ProxyView

log = logging.getLogger("pilot.translate.gateway")

TLS = nw.ServerTLSSettings


def resolve_gateway_name(name: str, namespace: str) -> str:
    """Istio's resolveGatewayName: ``gw`` → ``NS/gw``, ``./gw`` → ``NS/gw``, the legacy
    ``gw.ns.svc.cluster.local`` → ``ns/gw``; ``mesh`` stays ``mesh``."""
    if name == MESH_GATEWAY:
        return name
    if "/" not in name:
        if "." not in name:
            return f"{namespace}/{name}"
        gateway, _, rest = name.partition(".")
        return f"{rest.partition('.')[0]}/{gateway}"
    prefix, _, gateway = name.partition("/")
    return f"{namespace}/{gateway}" if prefix == "." else name


def sanitize_hosts(server_hosts: Iterable[str], namespace: str) -> tuple[str, ...]:
    """Istio's sanitizeServerHostNamespace: ``./h`` → ``NS/h``, ``*/h`` → ``h``, ``*/*`` → only ``*``."""
    out: list[str] = []
    for host in server_hosts:
        if "/" in host:
            prefix, _, name = host.partition("/")
            if prefix == ".":
                host = f"{namespace}/{name}"
            elif prefix == "*":
                if name == "*":
                    return ("*",)
                host = name
        out.append(host)
    return tuple(out)


def strip_namespace(host: str) -> str:
    return host.partition("/")[2] if "/" in host else host


@dataclass(frozen=True, slots=True, eq=False)
class GatewayServer:
    """One server of one Gateway, hosts sanitized. Compared by identity, as Istio keys maps by
    server pointer."""

    gateway: str  # the owning Gateway, ``namespace/name``
    key: ConfigKey
    spec: nw.Server
    hosts: tuple[str, ...]
    number: int
    protocol: Protocol
    route_name: str  # RDS name; empty for servers that are not HTTP

    @property
    def bind(self) -> str:
        return str(self.spec.bind)

    @property
    def name(self) -> str:
        return str(self.spec.name)

    @property
    def tls(self) -> nw.ServerTLSSettings | None:
        return self.spec.tls if self.spec.HasField("tls") else None

    @property
    def https_redirect(self) -> bool:
        return self.tls is not None and bool(self.tls.https_redirect)

    @property
    def is_passthrough(self) -> bool:
        tls = self.tls
        return tls is not None and tls.mode in (TLS.PASSTHROUGH, TLS.AUTO_PASSTHROUGH)

    @property
    def is_tls_server(self) -> bool:
        """Istio's IsTLSServer: TLS settings on a port that is not plain HTTP."""
        return self.tls is not None and not self.protocol.is_http

    @property
    def is_https_terminating(self) -> bool:
        """Istio's IsHTTPSServerWithTLSTermination."""
        return self.protocol is Protocol.HTTPS and self.tls is not None and not self.is_passthrough

    @property
    def is_http_server(self) -> bool:
        """Istio's IsHTTPServer: HTTP, or HTTPS terminated here."""
        return self.protocol.is_http or self.is_https_terminating

    @property
    def sni_hosts(self) -> tuple[str, ...]:
        """Istio's GetSNIHostsForServer: the hosts without namespace, sorted, once each."""
        if self.tls is None:
            return ()
        return tuple(sorted({strip_namespace(h) for h in self.hosts}))


def route_name(server: nw.Server, protocol: Protocol, key: ConfigKey) -> str:
    """Istio's gatewayRDSRouteName: ``http.PORT`` for HTTP servers (shared by every HTTP server of
    the port), ``https.PORT.PORTNAME.GATEWAY.NAMESPACE`` per HTTPS server terminated here, else ""."""
    bind = f".{server.bind}" if server.bind else ""
    if protocol.is_http:
        return f"http.{server.port.number}{bind}"
    passthrough = server.HasField("tls") and server.tls.mode in (TLS.PASSTHROUGH, TLS.AUTO_PASSTHROUGH)
    if protocol is Protocol.HTTPS and not passthrough:
        return f"https.{server.port.number}.{server.port.name}.{key.name}.{key.namespace}{bind}"
    return ""


class ServerPort(NamedTuple):
    number: int
    protocol: Protocol
    bind: str


@dataclass(frozen=True, slots=True)
class MergedPort:
    """The servers of every selected Gateway on one (port, protocol, bind)."""

    port: ServerPort
    servers: tuple[GatewayServer, ...]
    route_name: str  # for plain HTTP ports; TLS servers carry their own


@dataclass(frozen=True, slots=True)
class MergedGateway:
    """Istio's MergedGateway: ports in the order first seen, and the servers behind each RDS name."""

    ports: tuple[MergedPort, ...] = ()
    servers_by_route: Mapping[str, tuple[GatewayServer, ...]] = field(
        default_factory=lambda: MappingProxyType({})
    )

    @property
    def gateway_names(self) -> frozenset[str]:
        return frozenset(s.gateway for port in self.ports for s in port.servers)


def selected_gateways(
    view: ProxyView, context: PushContext, scope_to_namespace: bool = False
) -> list[ConfigObject[nw.Gateway]]:
    """The Gateways whose selector is a subset of the router's labels (an empty selector selects
    every router), from every namespace unless PILOT_SCOPE_GATEWAY_TO_NAMESPACE. In istiod's order
    (initGateways' sortConfigByCreationTime: creation time, name, namespace; ConfigObject.precedence)."""
    labels = dict(view.labels)
    out = []
    for gateway in context.gateways:
        if scope_to_namespace and gateway.namespace != view.namespace:
            continue
        if all(labels.get(k) == v for k, v in gateway.spec.selector.items()):
            out.append(gateway)
    return out


def _servers(gateway: ConfigObject[nw.Gateway]) -> Iterable[GatewayServer]:
    spec = gateway.spec
    name = f"{gateway.namespace}/{gateway.name}"
    for index, server in enumerate(spec.servers):
        if not server.HasField("port"):
            log.info("gateway %s: server %d has no port; skipped", name, index)
            continue
        reason = unsupported_server(server)
        if reason is not None:
            log.info("gateway %s: server %d (%s) skipped: %s", name, index, server.port.name, reason[1])
            continue
        protocol = parse_protocol(server.port.protocol)
        yield GatewayServer(
            gateway=name,
            key=gateway.key,
            spec=server,
            hosts=sanitize_hosts(server.hosts, gateway.namespace),
            number=server.port.number,
            protocol=protocol,
            route_name=route_name(server, protocol, gateway.key),
        )


def _duplicates(server_hosts: Iterable[str], bind: str, known: dict[str, str]) -> list[str]:
    """Istio's CheckDuplicates: hosts already taken on this bind; when none, take them all."""
    server_hosts = list(server_hosts)
    found = [h for h in server_hosts if known.get(h) == bind]
    if not found:
        known.update(dict.fromkeys(server_hosts, bind))
    return found


def _can_merge(current: Protocol, incoming: Protocol) -> bool:
    """Istio's canMergeProtocols: HTTP servers share an HTTP port."""
    return (current.is_http or current is incoming) and incoming.is_http


class _Merger:
    """Istio's mergeGateways, step by step (legacy label selection: a server listens on its port)."""

    def __init__(self) -> None:
        self.order: list[ServerPort] = []
        self.merged: dict[ServerPort, tuple[list[GatewayServer], list[str]]] = {}
        self.gateway_ports: set[int] = set()
        self.plain_text: dict[int, ServerPort] = {}
        self.by_route: dict[str, list[GatewayServer]] = {}
        self.tls_hosts: dict[int, dict[str, str]] = {}
        self.tls_binds: dict[int, set[str]] = {}

    def _add(self, port: ServerPort, server: GatewayServer, route: str | None = None) -> None:
        if port not in self.merged:
            self.merged[port] = ([], [server.route_name if route is None else route])
            self.order.append(port)
        self.merged[port][0].append(server)
        if route is not None:
            self.merged[port][1][0] = route

    def add(self, server: GatewayServer) -> None:
        number, bind, route = server.number, server.bind, server.route_name
        if server.tls is not None:
            taken = _duplicates(server.hosts, bind, self.tls_hosts.setdefault(number, {}))
            if taken:
                log.info(
                    "gateway %s: server on port %d skipped, duplicate hosts %s", server.gateway, number, taken
                )
                return
        port = ServerPort(number, server.protocol, bind)
        if number not in self.gateway_ports:
            self.gateway_ports.add(number)
            if not server.is_tls_server:
                self.plain_text[number] = port
            if server.is_http_server:
                self.by_route[route] = [server]
            self.merged[port] = ([server], [route])
            self.order.append(port)
            return
        current = self.plain_text.get(number)
        if current is not None:
            if current.bind == bind and (not _can_merge(current.protocol, server.protocol) or not route):
                log.info(
                    "gateway %s: server %s on port %d conflicts with a %s server; skipped",
                    server.gateway,
                    server.spec.port.name,
                    number,
                    current.protocol,
                )
                return
            if current.bind != bind:
                self._add(port, server, route)
            else:
                self.merged[current][0].append(server)
            self.by_route.setdefault(route, []).append(server)
            return
        # A TLS port already: HTTPS servers need their own RDS name; others are told apart by SNI.
        if server.is_http_server:
            if not route or route in self.by_route:
                log.info("gateway %s: HTTPS server %r skipped: no unique route name", server.gateway, route)
                return
            self.by_route[route] = [server]
        binds = self.tls_binds.setdefault(number, set())
        new_bind = bind not in binds
        binds.add(bind)
        if server.tls is None and not new_bind:
            log.info("gateway %s: server on TLS port %d has no TLS settings; skipped", server.gateway, number)
            return
        self._add(port, server)

    def result(self) -> MergedGateway:
        ports = tuple(MergedPort(p, tuple(self.merged[p][0]), self.merged[p][1][0]) for p in self.order)
        by_route = MappingProxyType({name: tuple(servers) for name, servers in self.by_route.items()})
        return MergedGateway(ports, by_route)


def merge_gateways(gateways: Iterable[ConfigObject[nw.Gateway]]) -> MergedGateway:
    merger = _Merger()
    for gateway in gateways:
        for server in _servers(gateway):
            merger.add(server)
    return merger.result()


def merged_gateway(view: ProxyView, context: PushContext) -> MergedGateway:
    """What a router serves: its selected Gateways, merged."""
    return merge_gateways(selected_gateways(view, context))


__all__ = [
    "GatewayServer",
    "MergedGateway",
    "MergedPort",
    "ServerPort",
    "merge_gateways",
    "merged_gateway",
    "resolve_gateway_name",
    "sanitize_hosts",
    "selected_gateways",
]
