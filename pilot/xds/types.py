"""xDS type URLs and the order in which an ADS server sends them.

https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol#resource-types
"""

from __future__ import annotations

from typing import Final

LISTENER: Final = "type.googleapis.com/envoy.config.listener.v3.Listener"
ROUTE: Final = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
CLUSTER: Final = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
ENDPOINT: Final = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
# VHDS: the virtual hosts of a route configuration, delivered one by one over delta ADS.
# https://www.envoyproxy.io/docs/envoy/latest/configuration/http/http_conn_man/vhds
VIRTUAL_HOST: Final = "type.googleapis.com/envoy.config.route.v3.VirtualHost"

# Make-before-break: a cluster must exist before the endpoints and listeners that use it, and a
# listener before the routes it names, or Envoy briefly drops traffic.
# https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol#eventual-consistency-considerations
PUSH_ORDER: Final[tuple[str, ...]] = (CLUSTER, ENDPOINT, LISTENER, ROUTE)
# What an ADS stream sends in that order: the four, then a route configuration's virtual hosts
# (Envoy starts their VHDS subscription when it takes the route configuration).
SEND_ORDER: Final[tuple[str, ...]] = (*PUSH_ORDER, VIRTUAL_HOST)

# LDS and CDS are wildcard types: an empty resource_names list on the first request means "all".
# RDS and EDS are always requested by name.
# https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol#how-the-client-specifies-what-resources-to-return
WILDCARD_TYPES: Final[frozenset[str]] = frozenset({LISTENER, CLUSTER})

# Types subscribed by namespace: Envoy's VHDS subscribes to a route configuration's name and wants
# every resource named ``NAME/...`` (its SubscriptionOptions.use_namespace_matching_; the
# namespace of a name is what precedes its last "/").
# https://github.com/envoyproxy/envoy/blob/main/source/common/router/vhds.cc
NAMESPACED_TYPES: Final[frozenset[str]] = frozenset({VIRTUAL_HOST})


def namespace_of(name: str) -> str:
    """The namespace of a resource name under namespace matching: up to its last "/"."""
    return name.rpartition("/")[0]


SHORT_NAMES: Final[dict[str, str]] = {
    LISTENER: "lds",
    ROUTE: "rds",
    CLUSTER: "cds",
    ENDPOINT: "eds",
    VIRTUAL_HOST: "vhds",
}


def short_name(type_url: str) -> str:
    """'cds', 'eds', 'lds', 'rds', 'vhds', or the last segment of an unknown type URL (logs, metrics)."""
    return SHORT_NAMES.get(type_url) or type_url.rsplit(".", 1)[-1]
