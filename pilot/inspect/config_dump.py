"""Envoy admin ``/config_dump`` documents (pilot's ``/debug/config_dump`` has the same shape), read as
JSON, and istioctl's ``proxy-config`` short tables over them.

The columns and cell texts follow istioctl's writer (istio/istio
istioctl/pkg/writer/envoy/configdump: cluster.go, listener.go, route.go, endpoint.go), so an operator
reads the same table from pilot as from istiod.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

Json = dict[str, Any]

CLUSTER = "cluster"
LISTENER = "listener"
ROUTE = "route"
ENDPOINT = "endpoint"
KINDS = (CLUSTER, LISTENER, ROUTE, ENDPOINT)

# The ConfigDump.configs entry of each kind: (type suffix, lists of (entry key, resource key)).
_SECTIONS: dict[str, tuple[str, tuple[tuple[str, tuple[str, ...]], ...]]] = {
    CLUSTER: (
        "ClustersConfigDump",
        (("static_clusters", ("cluster",)), ("dynamic_active_clusters", ("cluster",))),
    ),
    LISTENER: (
        "ListenersConfigDump",
        (("static_listeners", ("listener",)), ("dynamic_listeners", ("active_state", "listener"))),
    ),
    ROUTE: (
        "RoutesConfigDump",
        (("static_route_configs", ("route_config",)), ("dynamic_route_configs", ("route_config",))),
    ),
    ENDPOINT: (
        "EndpointsConfigDump",
        (
            ("static_endpoint_configs", ("endpoint_config",)),
            ("dynamic_endpoint_configs", ("endpoint_config",)),
        ),
    ),
}

HTTP_CONNECTION_MANAGER = "envoy.filters.network.http_connection_manager"
TCP_PROXY = "envoy.filters.network.tcp_proxy"
BLACK_HOLE = "BlackHoleCluster"


def resource_name(kind: str, resource: Mapping[str, Any]) -> str:
    return str(resource.get("cluster_name" if kind == ENDPOINT else "name", ""))


def resources(dump: Mapping[str, Any], kind: str, *, dynamic_only: bool = False) -> list[Json]:
    """Every resource of ``kind`` in a config dump, static ones first, in the dump's order;
    ``dynamic_only``: those a control plane sent, not the bootstrap's."""
    suffix, lists = _SECTIONS[kind]
    found: list[Json] = []
    for config in dump.get("configs", ()):
        if not str(config.get("@type", "")).endswith(suffix):
            continue
        for entry_key, path in lists:
            if dynamic_only and entry_key.startswith("static_"):
                continue
            for entry in config.get(entry_key, ()):
                value: Any = entry
                for key in path:
                    value = value.get(key, {}) if isinstance(value, Mapping) else {}
                if value:
                    found.append(dict(value))
    return found


def by_name(dump: Mapping[str, Any], kind: str, *, dynamic_only: bool = False) -> dict[str, Json]:
    return {resource_name(kind, r): r for r in resources(dump, kind, dynamic_only=dynamic_only)}


# -- istioctl's cells -----------------------------------------------------------------------------


def parse_subset_key(name: str) -> tuple[str, str, str, str] | None:
    """Istio's cluster name ``direction|port|subset|host`` as (direction, port, subset, host);
    None for any other name (istio/istio pilot/pkg/model ParseSubsetKey)."""
    parts = name.split("|")
    if len(parts) < 4:
        return None
    return parts[0], parts[1], parts[2], parts[3]


def describe_management(metadata: Mapping[str, Any] | None) -> str:
    """The Istio object named in ``filter_metadata.istio.config`` (``name.namespace``), like
    istioctl's describeManagement; empty when there is none."""
    config = ((metadata or {}).get("filter_metadata", {}).get("istio", {}) or {}).get("config", "")
    if not config:
        return ""
    pieces = str(config).split("/")
    if str(config).startswith("/apis/networking.istio.io/") and len(pieces) == 8:
        return f"{pieces[7]}.{pieces[5]}"
    return "<unknown>"


def cluster_rows(clusters: Sequence[Mapping[str, Any]]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for cluster in sorted(clusters, key=lambda c: str(c.get("name", ""))):
        name = str(cluster.get("name", ""))
        kind = str(cluster.get("type", "EDS" if "eds_cluster_config" in cluster else "STATIC"))
        managed = describe_management(cluster.get("metadata"))
        key = parse_subset_key(name)
        if key is None:
            rows.append((name, "-", "-", "-", kind, managed))
        else:
            direction, port, subset, host = key
            rows.append((host, port, subset or "-", direction, kind, managed))
    return rows


def _socket_address(address: Mapping[str, Any] | None) -> tuple[str, int]:
    socket = (address or {}).get("socket_address", {})
    return str(socket.get("address", "")), int(socket.get("port_value", 0) or 0)


def describe_match(match: Mapping[str, Any] | None) -> str:
    """istioctl's getMatches: SNI, transport, ALPN, destination prefix and port; ALL when none."""
    match = match or {}
    parts: list[str] = []
    if match.get("server_names"):
        parts.append("SNI: " + ",".join(match["server_names"]))
    if match.get("transport_protocol"):
        parts.append(f"Trans: {match['transport_protocol']}")
    if match.get("application_protocols"):
        parts.append("App: " + ",".join(match["application_protocols"]))
    port = f":{match['destination_port']}" if match.get("destination_port") else ""
    if match.get("prefix_ranges"):
        prefixes = ",".join(
            f"{p.get('address_prefix', '')}/{p.get('prefix_len', 0)}" for p in match["prefix_ranges"]
        )
        parts.append(f"Addr: {prefixes}{port}")
    elif port:
        parts.append(f"Addr: *{port}")
    return "; ".join(parts) or "ALL"


def describe_route_match(match: Mapping[str, Any]) -> str:
    conditions: list[str] = []
    if "prefix" in match:
        conditions.append(f"{match['prefix']}*")
    if match.get("path_separated_prefix"):
        conditions.append(f"PathPrefix:{match['path_separated_prefix']}")
    if match.get("path"):
        conditions.append(str(match["path"]))
    if match.get("safe_regex"):
        conditions.append(f"regex {match['safe_regex'].get('regex', '')}")
    return " ".join(conditions)


def _inline_routes(config: Mapping[str, Any]) -> str:
    hosts = config.get("virtual_hosts", [])
    if len(hosts) == 1 and hosts[0].get("domains") == ["*"] and len(hosts[0].get("routes", [])) == 1:
        only = hosts[0]["routes"][0]
        cluster = only.get("route", {}).get("cluster")
        if only.get("match", {}).get("prefix") == "/" and cluster:
            return cluster if "Cluster" in cluster else f"Cluster: {cluster}"
    described = []
    for host in hosts:
        domains = "" if host.get("domains") == ["*"] else "/".join(host.get("domains", []))
        routes = ", ".join(describe_route_match(r.get("match", {})) for r in host.get("routes", []))
        described.append(f"{domains} {routes}".strip())
    return "Inline Route: " + "; ".join(described)


def describe_destination(filters: Sequence[Mapping[str, Any]]) -> str:
    """istioctl's getFilterType: the RDS name, inline routes or TCP cluster the chain sends to."""
    for network_filter in filters:
        config = network_filter.get("typed_config", {})
        if network_filter.get("name") == HTTP_CONNECTION_MANAGER:
            if "route_config" in config:
                return _inline_routes(config["route_config"])
            name = config.get("rds", {}).get("route_config_name", "")
            return f"Route: {name}" if name else "HTTP"
        if network_filter.get("name") == TCP_PROXY:
            cluster = str(config.get("cluster", ""))
            if cluster and BLACK_HOLE not in cluster:
                return cluster if "Cluster" in cluster else f"Cluster: {cluster}"
    return "Non-HTTP/Non-TCP"


def listener_rows(listeners: Sequence[Mapping[str, Any]]) -> list[tuple[str, ...]]:
    """istioctl's verbose listener summary: one row per filter chain (ADDRESSES PORT MATCH DESTINATION),
    sorted by port then address."""

    def order(listener: Mapping[str, Any]) -> tuple[int, str]:
        address, port = _socket_address(listener.get("address"))
        return port, address

    rows: list[tuple[str, ...]] = []
    for listener in sorted(listeners, key=order):
        address, port = _socket_address(listener.get("address"))
        extra = [_socket_address(a.get("address"))[0] for a in listener.get("additional_addresses", [])]
        addresses = ",".join([address, *extra])
        chains = list(listener.get("filter_chains", []))
        if "default_filter_chain" in listener:
            chains.append(listener["default_filter_chain"])
        described = [
            (describe_match(c.get("filter_chain_match")), describe_destination(c.get("filters", [])))
            for c in chains
        ]
        for match, destination in sorted(described, key=lambda item: item[1], reverse=True):
            rows.append((addresses, str(port), match, destination))
        if not chains:
            rows.append((addresses, str(port), "ALL", "Non-HTTP/Non-TCP"))
    return rows


def describe_domains(domains: Sequence[str]) -> str:
    """istioctl's describeRouteDomains: the domains without ports, short forms only, at most two."""
    if len(domains) <= 1:
        return "".join(domains)
    bare = [d for d in domains if ":" not in d or (d.count(":") > 2 and d.endswith("]"))]
    unique = set(bare)
    redundant = {
        d
        for d in bare
        for short in (d.removesuffix(".svc.cluster.local"), d.removesuffix(".svc"))
        if short != d and short in unique
    }
    kept = [d for d in bare if d not in redundant]
    if len(kept) > 2:
        return f"{', '.join(kept[:2])} + {len(kept) - 2} more..."
    return ", ".join(kept)


def route_rows(route_configs: Sequence[Mapping[str, Any]]) -> list[tuple[str, ...]]:
    """istioctl's verbose route summary: NAME VHOST NAME DOMAINS MATCH VIRTUAL SERVICE."""
    rows: list[tuple[str, ...]] = []
    for config in sorted(route_configs, key=lambda c: str(c.get("name", ""))):
        name = str(config.get("name", ""))
        for host in config.get("virtual_hosts", []):
            domains = describe_domains(host.get("domains", []))
            routes = host.get("routes", [])
            for route in routes:
                rows.append(
                    (
                        name,
                        str(host.get("name", "")),
                        domains,
                        describe_route_match(route.get("match", {})),
                        describe_management(route.get("metadata")),
                    )
                )
            if not routes:
                rows.append((name, str(host.get("name", "")), domains, "/*", "404"))
    return rows


def endpoint_rows(assignments: Sequence[Mapping[str, Any]]) -> list[tuple[str, ...]]:
    """istioctl's endpoint summary: NAME (address:port) STATUS LOCALITY CLUSTER."""
    rows: list[tuple[str, ...]] = []
    for assignment in sorted(assignments, key=lambda a: str(a.get("cluster_name", ""))):
        cluster = str(assignment.get("cluster_name", ""))
        for group in assignment.get("endpoints", []):
            locality = group.get("locality", {})
            where = "/".join(str(locality[k]) for k in ("region", "zone", "sub_zone") if locality.get(k))
            for lb_endpoint in group.get("lb_endpoints", []):
                address, port = _socket_address(lb_endpoint.get("endpoint", {}).get("address"))
                status = str(lb_endpoint.get("health_status", "HEALTHY"))
                rows.append((f"{address}:{port}", status, where, cluster))
    return rows


HEADERS: dict[str, tuple[str, ...]] = {
    CLUSTER: ("SERVICE FQDN", "PORT", "SUBSET", "DIRECTION", "TYPE", "DESTINATION RULE"),
    LISTENER: ("ADDRESSES", "PORT", "MATCH", "DESTINATION"),
    ROUTE: ("NAME", "VHOST NAME", "DOMAINS", "MATCH", "VIRTUAL SERVICE"),
    ENDPOINT: ("NAME", "STATUS", "LOCALITY", "CLUSTER"),
}

ROWS = {CLUSTER: cluster_rows, LISTENER: listener_rows, ROUTE: route_rows, ENDPOINT: endpoint_rows}


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded like Go's tabwriter in istioctl (three spaces between columns)."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=False)]
    lines = [
        "   ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in (headers, *rows)
    ]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True, slots=True)
class Selection:
    """Which resources of a kind to show: all, or those named ``name`` (a cluster's FQDN or full
    name, a listener's or route's name, an endpoint's cluster)."""

    name: str | None = None

    def pick(self, kind: str, found: Sequence[Json]) -> Iterator[Json]:
        for resource in found:
            if self.name is None or self.name == resource_name(kind, resource):
                yield resource
            elif kind == CLUSTER and (key := parse_subset_key(resource_name(kind, resource))) is not None:
                if key[3] == self.name:
                    yield resource
