"""Istio's names for Envoy resources, built and parsed in one place.

Cluster: ``outbound|PORT|SUBSET|HOST`` (subset empty when none), ``inbound|TARGET_PORT||`` for what the
proxy's own workload serves; listener: ``0.0.0.0_PORT``;
sidecar outbound route configuration: ``PORT``; virtual host: ``HOST:PORT``.
"""

from __future__ import annotations

from typing import Final, NamedTuple

BLACKHOLE_CLUSTER: Final = "BlackHoleCluster"
PASSTHROUGH_CLUSTER: Final = "PassthroughCluster"
INBOUND_PASSTHROUGH_CLUSTER: Final = "InboundPassthroughCluster"
WILDCARD_ADDRESS: Final = "0.0.0.0"


class ClusterName(NamedTuple):
    direction: str
    port: int
    subset: str
    host: str


def outbound_cluster(host: str, port: int, subset: str = "") -> str:
    return f"outbound|{port}|{subset}|{host}"


def inbound_cluster(target_port: int) -> str:
    """Istio 1.10+ names inbound clusters by the workload's port alone (``BuildInboundSubsetKey``)."""
    return f"inbound|{target_port}||"


def parse_cluster(name: str) -> ClusterName | None:
    """Split an Istio cluster name; None for anything else (BlackHoleCluster, ...)."""
    parts = name.split("|", 3)
    if len(parts) != 4 or not parts[1].isdigit():
        return None
    return ClusterName(parts[0], int(parts[1]), parts[2], parts[3])


def listener_name(port: int, bind: str = WILDCARD_ADDRESS) -> str:
    return f"{bind}_{port}"


def route_config_name(port: int) -> str:
    return str(port)


def virtual_host_name(host: str, port: int) -> str:
    return f"{host}:{port}"
