"""RDS for proxyless gRPC: one RouteConfiguration ``outbound|PORT||HOST`` per service port.

Istio's grpcgen/rds.go: gRPC names the route configuration of each target it dials (the name its
API listener gives, see ``grpc_listeners``), and the configuration holds the one virtual host of
that service, matching every authority (``*``), as Istio's ``BuildSidecarOutboundVirtualHosts``
leaves it for a single host. The routes are the sidecar's (``routes.service_routes``: the
VirtualService's matches, weighted destinations, retries, fault injection), reshaped for what the
gRPC xDS client reads (gRFC A28, A31, A33, A44):

- the timeout is ``max_stream_duration`` (A31: gRPC ignores ``timeout``; Istio's setTimeout does
  the same for proxyless nodes); 0 means none;
- only the fault filter's per-route config is kept: gRPC NACKs a route whose
  ``typed_per_filter_config`` names a filter it does not implement (CORS);
- what gRPC ignores is not sent: mirrors, header rewrites, path and authority rewrites,
  decorators, metadata, ``max_grpc_timeout``, and of a retry policy all but ``retry_on``,
  ``num_retries`` and ``retry_back_off``.
"""

from __future__ import annotations

from typing import TypeAlias

from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2

from pilot.translate import routes
from pilot.translate.context import Protocol, PushContext, Scope, Service
from pilot.translate.listeners import FAULT_FILTER
from pilot.translate.proxy import ProxyView
from pilot.xds import names

RouteConfiguration: TypeAlias = route_pb2.RouteConfiguration

# RouteAction fields gRPC's xDS client does not implement (A28 lists what it reads).
_IGNORED_ACTION_FIELDS = (
    "request_mirror_policies",
    "prefix_rewrite",
    "regex_rewrite",
    "host_rewrite_literal",
    "max_grpc_timeout",
)
_HEADER_FIELDS = (
    "request_headers_to_add",
    "request_headers_to_remove",
    "response_headers_to_add",
    "response_headers_to_remove",
)
_IGNORED_ROUTE_FIELDS = ("decorator", "metadata", *_HEADER_FIELDS)


def route_config_name(hostname: str, port: int) -> str:
    """What Istio's grpcgen names it: the service's default cluster key."""
    return names.outbound_cluster(hostname, port)


def grpc_route(route: rc.Route) -> rc.Route:
    """A copy of a sidecar route with what gRPC reads of it."""
    out = rc.Route()
    out.CopyFrom(route)
    for field in _IGNORED_ROUTE_FIELDS:
        out.ClearField(field)
    for filter_name in list(out.typed_per_filter_config):
        if filter_name != FAULT_FILTER:
            del out.typed_per_filter_config[filter_name]
    if out.HasField("route"):
        action = out.route
        # Istio's setTimeout for proxyless nodes: max_stream_duration alone (gRPC reads
        # grpc_timeout_header_max before it, so a sidecar's copy there is left out).
        action.ClearField("max_stream_duration")
        action.max_stream_duration.max_stream_duration.CopyFrom(action.timeout)
        action.ClearField("timeout")
        for field in _IGNORED_ACTION_FIELDS:
            action.ClearField(field)
        for weighted in action.weighted_clusters.clusters:
            for field in (*_HEADER_FIELDS, "host_rewrite_literal"):
                weighted.ClearField(field)
        if action.HasField("retry_policy"):
            action.retry_policy.CopyFrom(grpc_retry_policy(action.retry_policy))
    return out


def grpc_retry_policy(policy: rc.RetryPolicy) -> rc.RetryPolicy:
    """What gRFC A44 reads of a retry policy: the gRPC status names of ``retry_on`` (gRPC skips
    the others), ``num_retries`` and ``retry_back_off``; host predicates, retriable HTTP codes and
    ``per_try_timeout`` have no effect on gRPC."""
    out = rc.RetryPolicy(retry_on=policy.retry_on)
    if policy.HasField("num_retries"):
        out.num_retries.CopyFrom(policy.num_retries)
    if policy.HasField("retry_back_off"):
        out.retry_back_off.CopyFrom(policy.retry_back_off)
    return out


def route_configuration(service: Service, port: int, scope: Scope, view: ProxyView) -> RouteConfiguration:
    host = rc.VirtualHost(
        name=names.virtual_host_name(service.hostname, port),
        domains=["*"],
        routes=[grpc_route(r) for r in routes.service_routes(service, port, scope, dict(view.labels))],
    )
    return RouteConfiguration(name=route_config_name(service.hostname, port), virtual_hosts=[host])


def grpc_ports(service: Service) -> list[int]:
    """The ports a gRPC client may dial: every port but UDP ones (gRPC is HTTP/2 whatever the
    ServiceEntry declares, as Istio's grpcgen builds a listener for every port)."""
    return [port.number for port in service.ports if port.protocol is not Protocol.UDP]


def build_routes(view: ProxyView, context: PushContext) -> list[tuple[str, RouteConfiguration]]:
    scope = context.scope_of(view)
    out: list[tuple[str, RouteConfiguration]] = []
    for service in scope.services:
        for port in grpc_ports(service):
            config = route_configuration(service, port, scope, view)
            out.append((config.name, config))
    return out


__all__ = [
    "build_routes",
    "grpc_ports",
    "grpc_retry_policy",
    "grpc_route",
    "route_config_name",
    "route_configuration",
]
