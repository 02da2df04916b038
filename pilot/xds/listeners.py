"""What a Listener makes Envoy fetch next: the RouteConfigurations its HTTP connection managers name.

Envoy fetches over RDS every route configuration an HTTP connection manager of a listener names in
``rds.route_config_name`` (LDS before RDS: https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol#api-flow).
Envoy picks a network filter's implementation by the type URL of its ``typed_config``, so that is
what is matched here, not the filter's name. Used by translation's consistency check and by
anything that subscribes the way Envoy does (tests, the benchmark's simulated proxies).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Final

from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2

HCM_TYPE_URL: Final = (
    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
)

# The Envoy protos ship without type stubs: to mypy, a listener and a filter are Any.
Listener = Any
NetworkFilter = Any
HttpConnectionManager = Any


def http_connection_managers(listener: Listener) -> Iterator[tuple[NetworkFilter, HttpConnectionManager]]:
    """Every HTTP connection manager filter of ``listener`` (its filter chains, then its default
    chain), with its config decoded. The config is a copy: repack it into the filter to change it."""
    chains = [*listener.filter_chains]
    if listener.HasField("default_filter_chain"):
        chains.append(listener.default_filter_chain)
    for chain in chains:
        for network_filter in chain.filters:
            if network_filter.typed_config.type_url == HCM_TYPE_URL:
                manager = hcm_pb2.HttpConnectionManager.FromString(network_filter.typed_config.value)
                yield network_filter, manager


def route_config_names(listeners: Iterable[Listener]) -> set[str]:
    """The names of the route configurations ``listeners`` fetch over RDS."""
    return {
        manager.rds.route_config_name
        for listener in listeners
        for _, manager in http_connection_managers(listener)
        if manager.HasField("rds")
    }
