"""Which VirtualServices a gateway server serves: bound by ``gateways``, hosts meeting the server's.

Istio's push_context.go (``VirtualServicesForGateway``: bound to the gateway, by its resolved
``namespace/name``, and exported to the router's namespace), pkg/config/host (``NamesForNamespace``,
``Names.Intersection``) and gateway.go (``pickMatchingGatewayHosts``, ``l4SingleMatch``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeAlias

from pilot._gen import networking_pb2 as nw
from pilot.translate import hosts
from pilot.translate.context import PushContext, VirtualServiceEntry
from pilot.translate.gateway import GatewayServer, resolve_gateway_name
from pilot.translate.registry import visible


def bound_gateways(vs: VirtualServiceEntry) -> frozenset[str]:
    return frozenset(resolve_gateway_name(g, vs.namespace) for g in vs.gateways)


def virtual_services_for_gateway(
    context: PushContext, proxy_namespace: str, gateway: str
) -> list[VirtualServiceEntry]:
    """Istio's VirtualServicesForGateway: bound to ``gateway`` and exported to the router's namespace,
    in istiod's order (VirtualServiceEntry.precedence_in)."""
    found = [
        vs
        for vs in context.virtual_services
        if gateway in bound_gateways(vs) and visible(vs.export_to, proxy_namespace)
    ]
    return sorted(found, key=lambda vs: vs.precedence_in(proxy_namespace))


# The match conditions of a tcp route, and of a tls route: both have a port and gateways.
L4Match: TypeAlias = nw.L4MatchAttributes | nw.TLSMatchAttributes


def match_gateway_names(
    matches: Iterable[nw.HTTPMatchRequest], namespace: str, gateway: str
) -> frozenset[str]:
    """The names in the matches' ``gateways`` lists that mean ``gateway`` (as written, for
    ``matches.applies``)."""
    return frozenset(
        name
        for match in matches
        for name in match.gateways
        if resolve_gateway_name(name, namespace) == gateway
    )


def names_for_namespace(server_hosts: Iterable[str], namespace: str) -> list[str]:
    """Istio's host.NamesForNamespace: hosts of ``namespace`` (or of any), namespace stripped."""
    out = []
    for host in server_hosts:
        if "/" in host:
            prefix, _, host = host.partition("/")
            if prefix not in (namespace, "*"):
                continue
        out.append(host)
    return out


def intersection(left: Iterable[str], right: Iterable[str]) -> list[str]:
    """Istio's host.Names.Intersection: for each overlapping pair, the more specific host."""
    right = list(right)
    out: dict[str, None] = {}  # ordered, and a linear membership test (16,000 hosts)
    for a in left:
        for b in right:
            found = a if hosts.subset_of(a, b) else b if hosts.subset_of(b, a) else None
            if found is not None:
                out.setdefault(found)
    return list(out)


def matching_gateway_hosts(server_hosts: Iterable[str], vs: VirtualServiceEntry) -> list[str]:
    """Istio's pickMatchingGatewayHosts: VirtualService hosts a server host (of the VirtualService's
    namespace, when qualified) matches."""
    out: dict[str, None] = {}  # ordered, and a linear membership test
    for vs_host in vs.hosts:
        for host in server_hosts:
            if "/" in host:
                prefix, _, host = host.partition("/")
                if prefix != vs.namespace:
                    continue
            if hosts.matches(host, vs_host):
                out.setdefault(vs_host)
    return list(out)


def l4_match(match: L4Match, server: GatewayServer, vs: VirtualServiceEntry) -> bool:
    """Istio's l4SingleMatch for a gateway: the port (if given) and the gateways (if given)."""
    if match.port and match.port != server.number:
        return False
    return not match.gateways or server.gateway in {
        resolve_gateway_name(g, vs.namespace) for g in match.gateways
    }


__all__ = [
    "bound_gateways",
    "intersection",
    "l4_match",
    "match_gateway_names",
    "matching_gateway_hosts",
    "names_for_namespace",
    "virtual_services_for_gateway",
]
