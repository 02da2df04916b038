"""Small real Envoy resources and snapshots for server tests (built with the real envoy protos)."""

from __future__ import annotations

from collections.abc import Iterable

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2, config_source_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2

from pilot.cache.snapshot import Snapshot
from pilot.xds import types

VIEW = "view-a"


# -- resources ------------------------------------------------------------------------------------


def cluster(name: str, timeout_ms: int = 1000) -> cluster_pb2.Cluster:
    c = cluster_pb2.Cluster(name=name, type=cluster_pb2.Cluster.EDS)
    c.connect_timeout.FromMilliseconds(timeout_ms)
    c.eds_cluster_config.eds_config.ads.SetInParent()
    c.eds_cluster_config.eds_config.resource_api_version = config_source_pb2.V3
    return c


def endpoints(name: str, *ports: int) -> endpoint_pb2.ClusterLoadAssignment:
    lb_endpoints = [
        endpoint_components_pb2.LbEndpoint(
            endpoint=endpoint_components_pb2.Endpoint(
                address=address_pb2.Address(
                    socket_address=address_pb2.SocketAddress(address="127.0.0.1", port_value=port)
                )
            )
        )
        for port in ports
    ]
    return endpoint_pb2.ClusterLoadAssignment(
        cluster_name=name, endpoints=[endpoint_components_pb2.LocalityLbEndpoints(lb_endpoints=lb_endpoints)]
    )


def listener(name: str, port: int) -> listener_pb2.Listener:
    return listener_pb2.Listener(
        name=name,
        address=address_pb2.Address(
            socket_address=address_pb2.SocketAddress(address="0.0.0.0", port_value=port)
        ),
    )


def route(name: str, cluster_name: str) -> route_pb2.RouteConfiguration:
    return route_pb2.RouteConfiguration(
        name=name,
        virtual_hosts=[
            route_components_pb2.VirtualHost(
                name=f"{cluster_name}:80",
                domains=["*"],
                routes=[
                    route_components_pb2.Route(
                        match=route_components_pb2.RouteMatch(prefix="/"),
                        route=route_components_pb2.RouteAction(cluster=cluster_name),
                    )
                ],
            )
        ],
    )


def make_snapshot(
    version: str,
    *,
    clusters: Iterable[cluster_pb2.Cluster] = (),
    loads: Iterable[endpoint_pb2.ClusterLoadAssignment] = (),
    listeners: Iterable[listener_pb2.Listener] = (),
    routes: Iterable[route_pb2.RouteConfiguration] = (),
) -> Snapshot:
    return Snapshot.from_messages(
        version,
        {
            types.CLUSTER: [(c.name, c) for c in clusters],
            types.ENDPOINT: [(e.cluster_name, e) for e in loads],
            types.LISTENER: [(x.name, x) for x in listeners],
            types.ROUTE: [(r.name, r) for r in routes],
        },
    )


def base_snapshot(
    version: str = "v1",
    *,
    clusters: Iterable[cluster_pb2.Cluster] | None = None,
    loads: Iterable[endpoint_pb2.ClusterLoadAssignment] | None = None,
    listeners: Iterable[listener_pb2.Listener] | None = None,
    routes: Iterable[route_pb2.RouteConfiguration] | None = None,
) -> Snapshot:
    """Two clusters with endpoints, two listeners, two route configurations; any of the four
    lists may be replaced."""
    return make_snapshot(
        version,
        clusters=[cluster("a"), cluster("b")] if clusters is None else clusters,
        loads=[endpoints("a", 8001), endpoints("b", 8002)] if loads is None else loads,
        listeners=[listener("0.0.0.0_80", 80), listener("0.0.0.0_81", 81)]
        if listeners is None
        else listeners,
        routes=[route("80", "a"), route("81", "b")] if routes is None else routes,
    )
