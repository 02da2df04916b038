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

from pilot.config.kinds import (
    DESTINATION_RULE,
    GATEWAY,
    MESH_CONFIG,
    SERVICE_ENTRY,
    SIDECAR,
    VIRTUAL_SERVICE,
    WORKLOAD_ENTRY,
)
from pilot.config.objects import ConfigKey
from pilot.translate import (
    capture_listeners,
    clusters,
    endpoints,
    gateway_listeners,
    gateway_routes,
    grpc_clusters,
    grpc_listeners,
    grpc_routes,
    listeners,
    routes,
)
from pilot.translate.context import PushContext
from pilot.translate.proxy import NodeType, ProxyView
from pilot.xds import types

Resources = list[tuple[str, Message]]


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

    def generate(self, view: ProxyView, context: PushContext) -> Resources:
        return self.build(view, context)

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


def build_listeners(view: ProxyView, context: PushContext) -> Resources:
    """Routers get the listeners of their Gateways; sidecars their outbound listeners, then the
    capture listeners when intercepted; proxyless gRPC applications their API listeners."""
    if view.proxyless_grpc:
        return list(grpc_listeners.build_listeners(view, context))
    if view.type is NodeType.ROUTER:
        return list(gateway_listeners.build_gateway_listeners(view, context))
    out: Resources = list(listeners.build_listeners(view, context))
    out += [(listener.name, listener) for listener in capture_listeners.capture_listeners(view, context)]
    return out


def build_routes(view: ProxyView, context: PushContext) -> Resources:
    if view.proxyless_grpc:
        return list(grpc_routes.build_routes(view, context))
    if view.type is NodeType.ROUTER:
        return list(gateway_routes.build_gateway_routes(view, context))
    return list(routes.build_routes(view, context))


# A Sidecar decides what a sidecar proxy imports (every type) and its inbound listeners.
_SERVICES = frozenset({SERVICE_ENTRY, WORKLOAD_ENTRY, MESH_CONFIG, SIDECAR})

CDS = FunctionGenerator(types.CLUSTER, _SERVICES | {DESTINATION_RULE}, build_clusters)
EDS = FunctionGenerator(types.ENDPOINT, _SERVICES | {DESTINATION_RULE}, build_load_assignments)
# Gateways make a router's listeners and routes; their VirtualServices' tcp/tls routes its listeners.
LDS = FunctionGenerator(
    types.LISTENER, _SERVICES | {DESTINATION_RULE, GATEWAY, VIRTUAL_SERVICE}, build_listeners
)
# Routes read DestinationRules too: a consistent-hash load balancer adds the route's hash policy.
RDS = FunctionGenerator(types.ROUTE, _SERVICES | {DESTINATION_RULE, GATEWAY, VIRTUAL_SERVICE}, build_routes)

GENERATORS: Mapping[str, Generator] = MappingProxyType({g.type_url: g for g in (CDS, EDS, LDS, RDS)})

__all__ = ["CDS", "EDS", "GENERATORS", "LDS", "RDS", "FunctionGenerator", "Generator", "Resources"]
