"""VirtualService ``tcp`` and ``tls`` routes as the filter chains of a sidecar's outbound TCP/TLS
listener ``0.0.0.0_N``.

Istio's tls.go (``buildSidecarOutboundTLSFilterChainOpts``, ``buildSidecarOutboundTCPFilterChainOpts``,
``matchTLS``, ``matchTCP``) and networkfilter.go (``buildOutboundNetworkFilters``): a match's runtime
predicates (``sniHosts``, ``destinationSubnets``) become the filter chain match (``server_names``,
``prefix_ranges``), its generation-time ones (``port``, ``sourceLabels``, ``sourceNamespace``,
``gateways``) decide here whether the chain exists at all. A service port with no route gets one chain
to ``outbound|N||HOST``, matched by SNI (the host name) on TLS ports. One destination → a tcp_proxy to
its cluster; several → ``weighted_clusters`` (weight-0 entries dropped, stat prefix ``NAME.NAMESPACE``).

One deviation: Istio binds a listener per service VIP (``10.0.0.1_3306``); pilot's listeners bind the
port on 0.0.0.0, so every service of the port shares the listener and a service's addresses become a
destination-IP match of its chains instead.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeAlias

from envoy.config.core.v3 import address_pb2
from envoy.config.listener.v3 import listener_components_pb2 as lc
from envoy.extensions.filters.network.mongo_proxy.v3 import mongo_proxy_pb2
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from envoy.type.v3 import hash_policy_pb2
from google.protobuf import any_pb2, wrappers_pb2
from google.protobuf.message import Message

from pilot._gen import networking_pb2 as nw
from pilot.translate import hosts
from pilot.translate.config_entries import MESH_GATEWAY
from pilot.translate.context import Protocol, Scope, Service, VirtualServiceEntry
from pilot.translate.route_actions import destination_cluster
from pilot.xds import names

log = logging.getLogger("pilot.translate.tcp_routes")

TCP_PROXY_FILTER = "envoy.filters.network.tcp_proxy"
MONGO_PROXY_FILTER = "envoy.filters.network.mongo_proxy"
TcpProxy: TypeAlias = tcp_proxy_pb2.TcpProxy


def typed(message: Message) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


@dataclass(frozen=True)
class ChainOpts:
    """One filter chain to build (Istio's filterChainOpts): its match and its network filters."""

    sni_hosts: tuple[str, ...]
    cidrs: tuple[str, ...]
    filters: list[lc.Filter] = field(compare=False)
    metadata_config: str = field(default="", compare=False)

    @property
    def match_key(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        return (tuple(sorted(self.sni_hosts)), tuple(sorted(self.cidrs)))


def cidr_range(text: str) -> address_pb2.CidrRange | None:
    """``10.0.0.0/8`` or ``10.0.0.1`` (a /32) as an Envoy CidrRange, normalized; None if invalid."""
    try:
        network = ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None
    length = wrappers_pb2.UInt32Value(value=network.prefixlen)
    return address_pb2.CidrRange(address_prefix=str(network.network_address), prefix_len=length)


def service_cidrs(service: Service) -> tuple[str, ...]:
    """The service's addresses (VIPs and CIDRs), which its chains match as destination."""
    out = []
    for address in service.addresses:
        if address in ("0.0.0.0", "::") or cidr_range(address) is None:
            continue
        out.append(address)
    return tuple(out)


def _source_matches(
    match: nw.L4MatchAttributes | nw.TLSMatchAttributes, labels: Mapping[str, str], port: int, namespace: str
) -> bool:
    """Istio's matchTLS / matchTCP for a proxy whose only gateway is ``mesh``."""
    if match.gateways and MESH_GATEWAY not in match.gateways:
        return False
    if any(labels.get(k) != v for k, v in match.source_labels.items()):
        return False
    if match.port and match.port != port:
        return False
    return not match.source_namespace or match.source_namespace == namespace


# --- network filters -------------------------------------------------------------------------------


def _tcp_settings(proxy: TcpProxy, rule: nw.DestinationRule | None, subset: str) -> None:
    """Idle timeout, connection duration, source-IP hashing and tunneling from the DestinationRule."""
    if rule is None:
        return
    top = rule.traffic_policy
    tcp = top.connection_pool.tcp
    if tcp.HasField("idle_timeout"):
        proxy.idle_timeout.CopyFrom(tcp.idle_timeout)
    if tcp.HasField("max_connection_duration"):
        proxy.max_downstream_connection_duration.CopyFrom(tcp.max_connection_duration)
    use_source_ip = top.load_balancer.consistent_hash.use_source_ip
    tunnel = top.tunnel if top.HasField("tunnel") else None
    for candidate in rule.subsets:
        if candidate.name != subset:
            continue
        own = candidate.traffic_policy
        if own.HasField("load_balancer"):
            use_source_ip = own.load_balancer.consistent_hash.use_source_ip
        if own.HasField("tunnel"):
            tunnel = own.tunnel
        break
    if use_source_ip:
        proxy.hash_policy.append(hash_policy_pb2.HashPolicy(source_ip=hash_policy_pb2.HashPolicy.SourceIp()))
    if tunnel is not None:
        proxy.tunneling_config.hostname = hosts.with_port(tunnel.target_host, tunnel.target_port)
        proxy.tunneling_config.use_post = tunnel.protocol == "POST"


def _filter_stack(protocol: Protocol, proxy: TcpProxy) -> list[lc.Filter]:
    """Istio's buildNetworkFiltersStack: Mongo ports get the Mongo proxy (PILOT_ENABLE_MONGO_FILTER
    is on by default) before the tcp_proxy; Redis and MySQL filters are off by default."""
    out = []
    if protocol is Protocol.MONGO:
        out.append(
            lc.Filter(
                name=MONGO_PROXY_FILTER,
                typed_config=typed(mongo_proxy_pb2.MongoProxy(stat_prefix=proxy.stat_prefix)),
            )
        )
    out.append(lc.Filter(name=TCP_PROXY_FILTER, typed_config=typed(proxy)))
    return out


def single_destination(cluster: str, protocol: Protocol, scope: Scope, subset: str = "") -> list[lc.Filter]:
    """Istio's buildOutboundNetworkFiltersWithSingleDestination (stat prefix = the cluster name)."""
    proxy = TcpProxy(stat_prefix=cluster, cluster=cluster)
    parsed = names.parse_cluster(cluster)
    rule = scope.destination_rule(parsed.host) if parsed is not None else None
    _tcp_settings(proxy, rule.spec if rule is not None else None, subset)
    return _filter_stack(protocol, proxy)


def route_filters(
    routes: Sequence[nw.RouteDestination],
    vs: VirtualServiceEntry,
    protocol: Protocol,
    scope: Scope,
    port: int,
) -> list[lc.Filter]:
    """Istio's buildOutboundNetworkFilters for the destinations of one tcp/tls route."""
    first = routes[0].destination
    if len(routes) == 1:
        cluster = destination_cluster(first, vs.namespace, scope, port)
        return single_destination(cluster, protocol, scope, first.subset)
    proxy = TcpProxy(stat_prefix=f"{vs.key.name}.{vs.namespace}")
    for route in routes:
        if route.weight > 0:
            proxy.weighted_clusters.clusters.add(
                name=destination_cluster(route.destination, vs.namespace, scope, port), weight=route.weight
            )
    if not proxy.weighted_clusters.clusters:  # all weight 0: invalid, and Envoy needs one
        proxy.weighted_clusters.clusters.add(
            name=destination_cluster(first, vs.namespace, scope, port), weight=1
        )
    rule = scope.destination_rule(hosts.resolve_shortname(first.host, vs.namespace))
    _tcp_settings(proxy, rule.spec if rule is not None else None, "")
    return _filter_stack(protocol, proxy)


# --- filter chain options per service --------------------------------------------------------------


def tls_chains(service: Service, port: int, scope: Scope, labels: Mapping[str, str]) -> list[ChainOpts]:
    """Istio's buildSidecarOutboundTLSFilterChainOpts for one service on a TLS/HTTPS port."""
    cidrs = service_cidrs(service)
    out: list[ChainOpts] = []
    handled: set[tuple[str, str]] = set()
    protocol = _protocol(service, port)
    for vs in scope.virtual_services(service.hostname):
        for route in vs.spec.tls:
            for match in route.match:
                if not _source_matches(match, labels, port, scope.namespace):
                    continue
                subnets = tuple(match.destination_subnets) or cidrs
                key = (",".join(match.sni_hosts), ",".join(match.destination_subnets))
                if key in handled:
                    continue
                handled.add(key)
                filters = route_filters(route.route, vs, protocol, scope, port)
                out.append(ChainOpts(tuple(match.sni_hosts), subnets, filters, _config(vs)))
    if out:
        return out
    # No tls route: by SNI (the host name) unless a plain VIP identifies the service.
    vip_only = bool(cidrs) and all("/" not in c for c in cidrs)
    sni = () if vip_only else (service.hostname,)
    cluster = names.outbound_cluster(service.hostname, _default_port(service, port))
    return [ChainOpts(sni, cidrs, single_destination(cluster, protocol, scope))]


def tcp_chains(service: Service, port: int, scope: Scope, labels: Mapping[str, str]) -> list[ChainOpts]:
    """Istio's buildSidecarOutboundTCPFilterChainOpts for one service on an opaque TCP port."""
    cidrs = service_cidrs(service)
    out: list[ChainOpts] = []
    protocol = _protocol(service, port)
    for vs in scope.virtual_services(service.hostname):
        for route in vs.spec.tcp:
            filters = route_filters(route.route, vs, protocol, scope, port)
            if not route.match:
                return [*out, ChainOpts((), cidrs, filters, _config(vs))]
            subnets: list[str] = []
            for match in route.match:
                if not _source_matches(match, labels, port, scope.namespace):
                    continue
                if not match.destination_subnets:
                    return [*out, ChainOpts((), cidrs, filters, _config(vs))]
                subnets.extend(match.destination_subnets)
            if subnets:
                out.append(ChainOpts((), tuple(subnets), filters, _config(vs)))
                if sorted(subnets) == sorted(cidrs):
                    return out
    cluster = names.outbound_cluster(service.hostname, _default_port(service, port))
    return [*out, ChainOpts((), cidrs, single_destination(cluster, protocol, scope))]


def _protocol(service: Service, port: int) -> Protocol:
    found = service.port(port)
    return found.protocol if found is not None else Protocol.TCP


def _default_port(service: Service, port: int) -> int:
    """A service with one port is sent to that port, else to the listener's."""
    return service.ports[0].number if len(service.ports) == 1 else port


def _config(vs: VirtualServiceEntry) -> str:
    return f"/apis/networking.istio.io/v1/namespaces/{vs.namespace}/virtual-service/{vs.key.name}"


def filter_chain(opts: ChainOpts) -> lc.FilterChain:
    chain = lc.FilterChain(filters=opts.filters)
    if opts.sni_hosts:
        chain.filter_chain_match.server_names.extend(opts.sni_hosts)
    for cidr in opts.cidrs:
        found = cidr_range(cidr)
        if found is not None:
            chain.filter_chain_match.prefix_ranges.append(found)
    if opts.metadata_config:
        chain.metadata.filter_metadata["istio"].update({"config": opts.metadata_config})
    return chain


def port_chains(
    services: Sequence[Service], port: int, scope: Scope, labels: Mapping[str, str]
) -> list[lc.FilterChain]:
    """The filter chains of listener ``0.0.0.0_port`` for every non-HTTP service on it, services in
    order; a chain whose match an earlier one already has is dropped (Envoy rejects duplicates)."""
    chains: list[lc.FilterChain] = []
    seen: set[tuple[tuple[str, ...], tuple[str, ...]]] = set()
    for service in services:
        found = service.port(port)
        is_tls = found is not None and found.protocol.is_tls
        options = (tls_chains if is_tls else tcp_chains)(service, port, scope, labels)
        for opts in options:
            if opts.match_key in seen:
                log.info(
                    "port %d: %s shadowed by an earlier chain with the same match", port, service.hostname
                )
                continue
            seen.add(opts.match_key)
            chains.append(filter_chain(opts))
    return chains


__all__ = [
    "ChainOpts",
    "cidr_range",
    "port_chains",
    "route_filters",
    "single_destination",
    "tcp_chains",
    "tls_chains",
]
