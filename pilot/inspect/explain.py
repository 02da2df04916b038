"""``pilot explain PROXY 'GET http://reviews:9080/api -H end-user:jason'``: the path one request takes
through what pilot serves that proxy.

Envoy's own matching rules (pilot.inspect.request_matching), over the proxy's config dump (pilot's
``/debug/config_dump``, or ``--envoy-admin`` for what Envoy holds): the listener bound to the port, the
filter chain whose match the plain-text connection meets, the HTTP connection manager's route
configuration, the virtual host whose domain fits the Host header, the first route that matches, its
cluster or weighted clusters, and each cluster's endpoints and policies. The VirtualService and
DestinationRule a route or cluster came from, and the rule's file line, are named as
pilot.inspect.provenance reads them from Istio's ``filter_metadata.istio.config``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

import orjson

from pilot.inspect import config_dump
from pilot.inspect.held_objects import held_note
from pilot.inspect.pilot_api import DEFAULT_PILOT, ApiError, PilotApi, envoy_config_dump
from pilot.inspect.provenance import rule_of, source_of
from pilot.inspect.request_matching import (
    Request,
    chain_applies,
    pick_listener,
    pick_virtual_host,
    route_matches,
    without_port,
)

Json = dict[str, Any]


@dataclass(frozen=True, slots=True)
class ExplainOptions:
    proxy: str
    request: str
    pilot: str = DEFAULT_PILOT
    envoy_admin: str | None = None
    output: str = "text"


# -- the walk -------------------------------------------------------------------------------------


@dataclass
class Explanation:
    request: Request
    steps: list[tuple[str, str]] = field(default_factory=list)  # (what, text)
    clusters: list[Json] = field(default_factory=list)
    found: bool = False

    def add(self, what: str, text: str) -> None:
        self.steps.append((what, text))


def _policies(cluster: Mapping[str, Any]) -> str:
    parts = [f"type {cluster.get('type', 'EDS' if 'eds_cluster_config' in cluster else 'STATIC')}"]
    parts.append(f"lb {cluster.get('lb_policy', 'ROUND_ROBIN')}")
    if cluster.get("outlier_detection"):
        detection = cluster["outlier_detection"]
        parts.append("outlier detection " + ", ".join(f"{k}={v}" for k, v in sorted(detection.items())))
    socket = cluster.get("transport_socket", {}).get("name")
    parts.append(f"TLS ({socket})" if socket else "plain text")
    thresholds = cluster.get("circuit_breakers", {}).get("thresholds", [])
    limited = {
        k: v
        for t in thresholds
        for k, v in t.items()
        if isinstance(v, int) and not isinstance(v, bool) and v < 4294967295
    }
    if limited:
        parts.append("circuit breakers " + ", ".join(f"{k}={v}" for k, v in sorted(limited.items())))
    return "; ".join(parts)


def _route_action(route: Mapping[str, Any]) -> tuple[str, list[tuple[str, int | None]]]:
    """What the route does (text) and the clusters it sends to, with weights."""
    if "redirect" in route:
        return f"redirect {orjson.dumps(route['redirect']).decode()}", []
    if "direct_response" in route:
        return f"direct response {route['direct_response'].get('status')}", []
    action = route.get("route", {})
    extras = []
    if action.get("timeout") not in (None, "0s"):
        extras.append(f"timeout {action['timeout']}")
    retry = action.get("retry_policy")
    if retry:
        extras.append(f"retries {retry.get('num_retries', 1)} on {retry.get('retry_on', '')}")
    if "cluster" in action:
        targets: list[tuple[str, int | None]] = [(action["cluster"], None)]
    else:
        targets = [
            (c["name"], int(c.get("weight", 0)))
            for c in action.get("weighted_clusters", {}).get("clusters", [])
        ]
    shown = ", ".join(f"{name} ({weight}%)" if weight is not None else name for name, weight in targets)
    return f"to {shown}" + (f"; {'; '.join(extras)}" if extras else ""), targets


def explain(
    dump: Mapping[str, Any],
    request: Request,
    objects: Mapping[tuple[str, str, str], Json],
    folders: Sequence[str] = (),
) -> Explanation:
    """Walk ``request`` through ``dump``; ``objects`` (by kind, namespace, name) and ``folders`` (of
    relative origins) name the rule that made the route."""
    out = Explanation(request)
    listener = pick_listener(config_dump.resources(dump, config_dump.LISTENER), request)
    if listener is None:
        out.add("listener", f"none on port {request.port}: the connection is refused (or passed through)")
        return out
    chains = list(listener.get("filter_chains", []))
    index = next((i for i, chain in enumerate(chains) if chain_applies(chain, request)), None)
    chain = chains[index] if index is not None else listener.get("default_filter_chain")
    if chain is None:
        out.add("listener", f"{listener.get('name')}: no filter chain takes a plain-text connection")
        return out
    which = f"filter chain {index}" if index is not None else "the default filter chain"
    match_text = config_dump.describe_match(chain.get("filter_chain_match"))
    out.add("listener", f"{listener.get('name')}, {which} ({match_text})")
    manager = next(
        (
            f.get("typed_config", {})
            for f in chain.get("filters", [])
            if f.get("name") == config_dump.HTTP_CONNECTION_MANAGER
        ),
        None,
    )
    if manager is None:
        out.add(
            "filter", config_dump.describe_destination(chain.get("filters", [])) + " (not HTTP: no routes)"
        )
        return out
    if "route_config" in manager:
        routes, route_name = manager["route_config"], "(inline)"
    else:
        route_name = manager.get("rds", {}).get("route_config_name", "")
        routes = config_dump.by_name(dump, config_dump.ROUTE).get(route_name)
        if routes is None:
            out.add("routes", f"{route_name!r} is not in the config: Envoy waits for it")
            return out
    filters = [f.get("name", "") for f in manager.get("http_filters", [])]
    out.add("http filters", ", ".join(name.removeprefix("envoy.filters.http.") for name in filters))
    authority = request.authority
    if routes.get("ignore_port_in_host_matching"):
        authority = without_port(authority)  # Envoy matches the Host header's name only
    picked = pick_virtual_host(routes.get("virtual_hosts", []), authority)
    if picked is None:
        out.add("virtual host", f"none in {route_name} for {authority!r}: 404")
        return out
    vhost, domain = picked
    out.add("virtual host", f"{vhost.get('name')} in route configuration {route_name} (domain {domain!r})")
    candidates = vhost.get("routes", [])
    position = next((i for i, r in enumerate(candidates) if route_matches(r.get("match", {}), request)), None)
    if position is None:
        out.add("route", "none matches: 404")
        return out
    route = candidates[position]
    described = config_dump.describe_route_match(route.get("match", {})) or "*"
    headers = route.get("match", {}).get("headers", [])
    if headers:
        described += " with headers " + ", ".join(str(h.get("name")) for h in headers)
    label = f" {route['name']!r}" if route.get("name") else ""
    out.add("route", f"#{position}{label}: {described}")
    source = source_of(route.get("metadata"), objects)
    if source is not None:
        same_source = [r for r in candidates[:position] if source_of(r.get("metadata"), objects) == source]
        obj = objects.get((source.kind, source.namespace, source.name))
        held = [r for r in (obj or {}).get("rejected", []) if r.get("view") == dump.get("view")]
        if held:
            # The route comes from the version the proxy accepted, not the store's: no rule of the
            # store's version (what /debug/configz holds) can be named.
            out.add("from", f"{source} at revision {held[0].get('held_revision')}")
        else:
            rule = rule_of(source, obj, len(same_source), str(route.get("name", "")), request.port, folders)
            out.add("from", str(rule))
        for rejection in held:
            out.add("held back", held_note(rejection))
    text, targets = _route_action(route)
    out.add("action", text)
    clusters = config_dump.by_name(dump, config_dump.CLUSTER)
    endpoints = config_dump.by_name(dump, config_dump.ENDPOINT)
    for name, weight in targets:
        cluster = clusters.get(name)
        if cluster is None:
            out.add("cluster", f"{name}: not in the config (503 NC)")
            continue
        out.add("cluster", f"{name}: {_policies(cluster)}")
        policy = source_of(cluster.get("metadata"), objects)
        if policy is not None:
            out.add("policy", str(policy))
        picked_endpoints = config_dump.endpoint_rows([endpoints[name]]) if name in endpoints else []
        shown = ", ".join(f"{row[0]} {row[1]}" for row in picked_endpoints)
        out.add(
            "endpoints", shown or ("none: 503 UH" if cluster.get("type", "EDS") == "EDS" else "(not EDS)")
        )
        out.clusters.append(
            {"name": name, "weight": weight, "endpoints": [row[0] for row in picked_endpoints]}
        )
    out.found = bool(out.clusters) or not targets
    return out


def run(options: ExplainOptions, out: TextIO) -> int:
    """Exit 0 when the request reaches a route with clusters (or a redirect, a direct response);
    1 otherwise."""
    try:
        request = Request.parse(options.request)
    except ValueError as err:
        raise ApiError(str(err)) from err
    api = PilotApi(options.pilot)
    if options.envoy_admin is not None:
        dump = envoy_config_dump(options.envoy_admin)
        objects: dict[tuple[str, str, str], Json] = {}
        folders: list[str] = []
    else:
        dump = api.config_dump(options.proxy)
        objects = {(o["kind"], o["namespace"], o["name"]): o for o in api.configz().get("objects", [])}
        sources = api.get("/debug/sourcez").get("sources", [])
        folders = [str(source["path"]) for source in sources if source.get("path")]
    result = explain(dump, request, objects, folders)
    if options.output == "json":
        data = {"steps": [{"step": k, "text": v} for k, v in result.steps], "clusters": result.clusters}
        out.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        print(f"{'request':<13} {request.method} {request.authority}{request.headers[':path']}", file=out)
        for what, text in result.steps:
            print(f"{what:<13} {text}", file=out)
    return 0 if result.found else 1
