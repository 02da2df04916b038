"""xDS type URLs and the order in which an ADS server sends them.

https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol#resource-types
"""

from __future__ import annotations

from typing import Final

LISTENER: Final = "type.googleapis.com/envoy.config.listener.v3.Listener"
ROUTE: Final = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
CLUSTER: Final = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
ENDPOINT: Final = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"

# Make-before-break: a cluster must exist before the endpoints and listeners that use it, and a
# listener before the routes it names, or Envoy briefly drops traffic.
# https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol#eventual-consistency-considerations
PUSH_ORDER: Final[tuple[str, ...]] = (CLUSTER, ENDPOINT, LISTENER, ROUTE)

# LDS and CDS are wildcard types: an empty resource_names list on the first request means "all".
# RDS and EDS are always requested by name.
# https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol#how-the-client-specifies-what-resources-to-return
WILDCARD_TYPES: Final[frozenset[str]] = frozenset({LISTENER, CLUSTER})

SHORT_NAMES: Final[dict[str, str]] = {
    LISTENER: "lds",
    ROUTE: "rds",
    CLUSTER: "cds",
    ENDPOINT: "eds",
}


def short_name(type_url: str) -> str:
    """'cds', 'eds', 'lds', 'rds', or the last segment of an unknown type URL (for logs and metrics)."""
    return SHORT_NAMES.get(type_url) or type_url.rsplit(".", 1)[-1]
