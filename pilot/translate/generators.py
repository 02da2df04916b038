"""One generator per xDS type URL, in a registry keyed by type URL.

Istio's ``XdsResourceGenerator`` (one method), plus the cheap "not me" test of its ``cds.go``
(``skippedCdsConfigs``): ``affected_by`` says whether a change to the given config keys can alter
what the generator produces, without translating anything.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Protocol

from google.protobuf.message import Message

from pilot.cache.snapshot import Encoded
from pilot.config.jwks import JWKS_KIND
from pilot.config.kinds import (
    AUTHORIZATION_POLICY,
    DESTINATION_RULE,
    GATEWAY,
    MESH_CONFIG,
    PEER_AUTHENTICATION,
    REQUEST_AUTHENTICATION,
    SERVICE_ENTRY,
    SIDECAR,
    VIRTUAL_SERVICE,
    WORKLOAD_ENTRY,
)
from pilot.config.objects import ConfigKey
from pilot.translate import (
    authz_listeners,
    capture_listeners,
    cluster_encoding,
    clusters,
    endpoints,
    gateway_listeners,
    gateway_routes,
    grpc_clusters,
    grpc_listeners,
    grpc_routes,
    listeners,
    peer_authentication,
    routes,
    virtual_hosts,
)
from pilot.translate.context import PushContext
from pilot.translate.proxy import NodeType, ProxyView
from pilot.xds import types

Resources = list[tuple[str, Message]]
# Some resources serialized already (pilot.cache.snapshot.Encoded), for build_snapshot.
EncodedResources = list[tuple[str, Message | Encoded]]


class Generator(Protocol):
    @property
    def type_url(self) -> str: ...

    def generate(self, view: ProxyView, context: PushContext) -> Resources: ...

    def affected_by(self, changed: Iterable[ConfigKey]) -> bool: ...


@dataclass(frozen=True, slots=True)
class FunctionGenerator:
    """A generator made of a build function and the config kinds it reads."""

    type_url: str
    kinds: frozenset[str]
    build: Callable[[ProxyView, PushContext], Resources]
    # The same resources, some of them serialized already (what build_snapshot asks for).
    encode: Callable[[ProxyView, PushContext], EncodedResources] | None = None

    def generate(self, view: ProxyView, context: PushContext) -> Resources:
        return self.build(view, context)

    def generate_encoded(self, view: ProxyView, context: PushContext) -> EncodedResources:
        if self.encode is None:
            return list(self.build(view, context))
        return self.encode(view, context)

    def affected_by(self, changed: Iterable[ConfigKey]) -> bool:
        """True if any changed key is of a kind this generator reads (no keys: anything changed)."""
        keys = list(changed)
        return not keys or any(key.kind in self.kinds for key in keys)


def build_load_assignments(view: ProxyView, context: PushContext) -> Resources:
    """A ClusterLoadAssignment for every EDS cluster CDS sends, empty when nothing matches."""
    if view.proxyless_grpc:
        return list(grpc_clusters.build_load_assignments(view, context))
    scope = context.scope_of(view)
    out: Resources = []
    made: endpoints.LbEndpoints = {}
    for target in clusters.outbound_targets(scope, router=view.type is NodeType.ROUTER):
        if target.eds:
            assignment = clusters.load_assignment(target, context, made)
            out.append((target.name, assignment))
    return out


def build_clusters(view: ProxyView, context: PushContext) -> Resources:
    """Outbound and special clusters; an intercepted sidecar's inbound clusters after them."""
    if view.proxyless_grpc:
        return list(grpc_clusters.build_clusters(view, context))
    out: Resources = list(clusters.build_clusters(view, context))
    out += [(cluster.name, cluster) for cluster in capture_listeners.capture_clusters(view, context)]
    return out


def encode_clusters(view: ProxyView, context: PushContext) -> EncodedResources:
    """``build_clusters``, the outbound clusters joined from their policy templates
    (pilot.translate.cluster_encoding)."""
    if view.proxyless_grpc:
        return list(grpc_clusters.build_clusters(view, context))
    out: EncodedResources = list(cluster_encoding.encode_clusters(view, context))
    out += [(cluster.name, cluster) for cluster in capture_listeners.capture_clusters(view, context)]
    return out


def build_listeners(view: ProxyView, context: PushContext) -> Resources:
    """Routers get the listeners of their Gateways; sidecars their outbound listeners, then the
    capture listeners when intercepted; proxyless gRPC applications their API listeners."""
    if view.proxyless_grpc:
        # A proxyless server's one chain per port by its PeerAuthentication (pilot.translate.grpc_tls).
        policy = peer_authentication.of_view(view, context)
        return list(grpc_listeners.build_listeners(view, context, policy.for_port))
    if view.type is NodeType.ROUTER:
        routers = list(gateway_listeners.build_gateway_listeners(view, context))
        authz_listeners.apply_authorization(view, context, [listener for _, listener in routers])
        return list(routers)
    out: Resources = list(listeners.build_listeners(view, context))
    inbound = capture_listeners.capture_listeners(view, context)
    authz_listeners.apply_authorization(view, context, inbound)
    out += [(listener.name, listener) for listener in inbound]
    return out


def _full_routes(view: ProxyView, context: PushContext) -> Resources:
    if view.proxyless_grpc:
        return list(grpc_routes.build_routes(view, context))
    if view.type is NodeType.ROUTER:
        return list(gateway_routes.build_gateway_routes(view, context))
    return list(routes.build_routes(view, context))


_vhds_routes = virtual_hosts.RouteMemo(_full_routes)


def uses_vhds(view: ProxyView) -> bool:
    """Whether ``view`` gets its virtual hosts over VHDS (pilot.translate.virtual_hosts)."""
    return view.virtual_host_discovery and not view.proxyless_grpc  # gRPC's xDS client has no VHDS


def build_routes(view: ProxyView, context: PushContext) -> Resources:
    """The route configurations; for a VHDS view, without their virtual hosts."""
    if uses_vhds(view):
        return virtual_hosts.shells(_vhds_routes(view, context, keep=True))
    return _full_routes(view, context)


def encode_routes(view: ProxyView, context: PushContext) -> EncodedResources:
    """``build_routes``, a sidecar's kept route configurations serialized from their kept virtual
    hosts (pilot.translate.route_records)."""
    if uses_vhds(view) or view.proxyless_grpc or view.type is NodeType.ROUTER:
        return list(build_routes(view, context))
    return list(routes.encode_routes(view, context))


def build_virtual_hosts(view: ProxyView, context: PushContext) -> Resources:
    """A VHDS view's virtual hosts, one resource each; nothing for any other view."""
    if uses_vhds(view):
        return virtual_hosts.split(_vhds_routes(view, context, keep=False))
    return []


# A Sidecar decides what a sidecar proxy imports (every type) and its inbound listeners.
_SERVICES = frozenset({SERVICE_ENTRY, WORKLOAD_ENTRY, MESH_CONFIG, SIDECAR})

# PeerAuthentication decides the inbound listeners' mTLS chains and, through auto mTLS, whether a
# client's cluster originates mTLS (CDS) and which endpoints carry the tlsMode metadata (EDS: a
# workload DISABLE); AuthorizationPolicy and RequestAuthentication add listener filters, and the JWKS
# pilot fetched for RequestAuthentications are inlined into the jwt_authn filter. An edit translates
# these types again for every view; a view whose effective policies did not change gets the same
# resources, so the same type version, and nothing is sent to its proxies
# (pilot.cache.snapshot.TypeResources.build).
_POLICIES = frozenset({PEER_AUTHENTICATION, AUTHORIZATION_POLICY, REQUEST_AUTHENTICATION, JWKS_KIND})

CDS = FunctionGenerator(
    types.CLUSTER, _SERVICES | {DESTINATION_RULE, PEER_AUTHENTICATION}, build_clusters, encode_clusters
)
EDS = FunctionGenerator(
    types.ENDPOINT, _SERVICES | {DESTINATION_RULE, PEER_AUTHENTICATION}, build_load_assignments
)
# Gateways make a router's listeners and routes; their VirtualServices' tcp/tls routes its listeners.
LDS = FunctionGenerator(
    types.LISTENER, _SERVICES | _POLICIES | {DESTINATION_RULE, GATEWAY, VIRTUAL_SERVICE}, build_listeners
)
# Routes read DestinationRules too: a consistent-hash load balancer adds the route's hash policy.
RDS = FunctionGenerator(
    types.ROUTE, _SERVICES | {DESTINATION_RULE, GATEWAY, VIRTUAL_SERVICE}, build_routes, encode_routes
)
VHDS = FunctionGenerator(
    types.VIRTUAL_HOST, _SERVICES | {DESTINATION_RULE, GATEWAY, VIRTUAL_SERVICE}, build_virtual_hosts
)

# Every view's generators; a VHDS view (uses_vhds) has VHDS too.
GENERATORS: Mapping[str, Generator] = MappingProxyType({g.type_url: g for g in (CDS, EDS, LDS, RDS)})

__all__ = [
    "CDS",
    "EDS",
    "GENERATORS",
    "LDS",
    "RDS",
    "VHDS",
    "EncodedResources",
    "FunctionGenerator",
    "Generator",
    "Resources",
    "uses_vhds",
]
