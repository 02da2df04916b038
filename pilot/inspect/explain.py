"""``pilot explain PROXY 'GET http://reviews:9080/api -H end-user:jason'``: the path one request takes
through what pilot serves that proxy.

Envoy's own matching rules, read from the proxy's config dump (pilot's ``/debug/config_dump``, or
``--envoy-admin`` for what Envoy holds): the listener bound to the port, the filter chain whose match
the plain-text connection meets, the HTTP connection manager's route configuration, the virtual host
whose domain fits the Host header (exact, then the longest ``*.suffix``, then the longest
``prefix*``, then ``*``), the first route whose path, headers and query parameters match, its cluster
or weighted clusters, and each cluster's endpoints and policies. The VirtualService and
DestinationRule a route or cluster came from are named from Istio's ``filter_metadata.istio.config``;
with pilot's ``/debug/configz`` the file, and where that file is readable here, the line of the rule.
https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/route/v3/route_components.proto
"""

from __future__ import annotations

import re
import shlex
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import orjson

from pilot.config.yamlpos import format_path
from pilot.inspect import config_dump
from pilot.inspect.held_objects import held_note
from pilot.inspect.pilot_api import DEFAULT_PILOT, ApiError, PilotApi, envoy_config_dump
from pilot.inspect.yaml_lines import line_of

Json = dict[str, Any]


@dataclass(frozen=True, slots=True)
class ExplainOptions:
    proxy: str
    request: str
    pilot: str = DEFAULT_PILOT
    envoy_admin: str | None = None
    output: str = "text"


@dataclass(frozen=True, slots=True)
class Request:
    """One HTTP request as curl would send it: method, authority (the Host header), path, headers."""

    method: str
    host: str
    port: int
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]  # lower-case names, with Envoy's pseudo-headers

    @classmethod
    def parse(cls, text: str) -> Request:
        """``[METHOD] URL [-H NAME:VALUE]...``; the URL's scheme gives the default port."""
        words = shlex.split(text)
        method = "GET"
        if len(words) > 1 and words[0].isalpha() and words[0].isupper():
            method = words.pop(0)
        headers: dict[str, str] = {}
        url = ""
        while words:
            word = words.pop(0)
            if word in ("-H", "--header"):
                if not words or ":" not in words[0]:
                    raise ValueError(f"-H needs NAME:VALUE, in {text!r}")
                name, _, value = words.pop(0).partition(":")
                headers[name.strip().lower()] = value.strip()
            elif not url:
                url = word
            else:
                raise ValueError(f"unexpected {word!r} in {text!r}")
        parts = urllib.parse.urlsplit(url if "://" in url else f"http://{url}")
        if not parts.hostname:
            raise ValueError(f"no host in {text!r}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        authority = parts.netloc.rpartition("@")[2]
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        headers = {":method": method, ":authority": authority, ":path": path, "host": authority, **headers}
        return cls(
            method,
            parts.hostname,
            port,
            parts.path or "/",
            dict(urllib.parse.parse_qsl(parts.query)),
            headers,
        )

    @property
    def authority(self) -> str:
        return self.headers[":authority"]


# -- matching, as Envoy does -----------------------------------------------------------------------


def string_matches(matcher: Mapping[str, Any], value: str) -> bool:
    """envoy.type.matcher.v3.StringMatcher."""
    ignore_case = bool(matcher.get("ignore_case"))
    subject = value.lower() if ignore_case else value

    def norm(text: str) -> str:
        return text.lower() if ignore_case else text

    if "exact" in matcher:
        return subject == norm(matcher["exact"])
    if "prefix" in matcher:
        return subject.startswith(norm(matcher["prefix"]))
    if "suffix" in matcher:
        return subject.endswith(norm(matcher["suffix"]))
    if "contains" in matcher:
        return norm(matcher["contains"]) in subject
    if "safe_regex" in matcher:
        return re.fullmatch(matcher["safe_regex"].get("regex", ""), value) is not None
    return False


def header_matches(matcher: Mapping[str, Any], headers: Mapping[str, str]) -> bool:
    """config.route.v3.HeaderMatcher: present, string, exact/prefix/... (legacy), inverted."""
    value = headers.get(str(matcher.get("name", "")).lower())
    if "present_match" in matcher:
        result = (value is not None) == bool(matcher["present_match"])
    elif value is None:
        result = False
    elif "string_match" in matcher:
        result = string_matches(matcher["string_match"], value)
    elif any(k in matcher for k in ("exact_match", "prefix_match", "suffix_match", "contains_match")):
        legacy = {k.removesuffix("_match"): v for k, v in matcher.items() if k.endswith("_match")}
        result = string_matches(legacy, value)
    elif "safe_regex_match" in matcher:
        result = re.fullmatch(matcher["safe_regex_match"].get("regex", ""), value) is not None
    else:
        result = True  # only the name: present
    return result != bool(matcher.get("invert_match"))


def route_matches(match: Mapping[str, Any], request: Request) -> bool:
    path = request.path
    sensitive = match.get("case_sensitive", True)
    subject = path if sensitive else path.lower()

    def norm(text: str) -> str:
        return text if sensitive else text.lower()

    if "prefix" in match:
        ok = subject.startswith(norm(match["prefix"]))
    elif "path" in match:
        ok = subject == norm(match["path"])
    elif "path_separated_prefix" in match:
        prefix = norm(match["path_separated_prefix"])
        ok = subject == prefix or subject.startswith(prefix.rstrip("/") + "/")
    elif "safe_regex" in match:
        ok = re.fullmatch(match["safe_regex"].get("regex", ""), path) is not None
    else:
        ok = True
    if not ok:
        return False
    if not all(header_matches(h, request.headers) for h in match.get("headers", [])):
        return False
    for query in match.get("query_parameters", []):
        value = request.query.get(query.get("name", ""))
        if "present_match" in query:
            if (value is not None) != bool(query["present_match"]):
                return False
        elif value is None or ("string_match" in query and not string_matches(query["string_match"], value)):
            return False
    return True


def without_port(authority: str) -> str:
    """``reviews:9080`` → ``reviews``; ``[::1]:80`` → ``[::1]``; an authority without a port as is."""
    if authority.startswith("["):
        return authority[: authority.index("]") + 1] if "]" in authority else authority
    name, colon, port = authority.rpartition(":")
    return name if colon and port.isdigit() and ":" not in name else authority


def pick_virtual_host(
    hosts: Sequence[Mapping[str, Any]], authority: str
) -> tuple[Mapping[str, Any], str] | None:
    """Envoy's domain search: exact, then the longest suffix wildcard, then the longest prefix
    wildcard, then ``*`` (RouteConfiguration.virtual_hosts, VirtualHost.domains)."""
    authority = authority.lower()
    exact = [(h, d) for h in hosts for d in h.get("domains", []) if d.lower() == authority]
    if exact:
        return exact[0]
    suffixes = [
        (h, d)
        for h in hosts
        for d in h.get("domains", [])
        if d.startswith("*") and d != "*" and authority.endswith(d[1:].lower())
    ]
    if suffixes:
        return max(suffixes, key=lambda item: len(item[1]))
    prefixes = [
        (h, d)
        for h in hosts
        for d in h.get("domains", [])
        if d.endswith("*") and d != "*" and authority.startswith(d[:-1].lower())
    ]
    if prefixes:
        return max(prefixes, key=lambda item: len(item[1]))
    star = [(h, d) for h in hosts for d in h.get("domains", []) if d == "*"]
    return star[0] if star else None


def _chain_applies(chain: Mapping[str, Any], request: Request) -> bool:
    match = chain.get("filter_chain_match", {})
    if match.get("destination_port") and int(match["destination_port"]) != request.port:
        return False
    if match.get("server_names") or match.get("transport_protocol", "raw_buffer") not in ("", "raw_buffer"):
        return False  # a plain-text request never carries SNI or a TLS handshake
    protocols = match.get("application_protocols", [])
    return not protocols or any(p.startswith("http/1") or p == "h2c" for p in protocols)


def pick_listener(listeners: Sequence[Mapping[str, Any]], request: Request) -> Mapping[str, Any] | None:
    on_port = [
        listener
        for listener in listeners
        if listener.get("address", {}).get("socket_address", {}).get("port_value") == request.port
    ]
    exact = [
        listener
        for listener in on_port
        if listener.get("address", {}).get("socket_address", {}).get("address") == request.host
    ]
    found = exact or on_port
    return found[0] if found else None


# -- provenance -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Source:
    kind: str
    namespace: str
    name: str
    origin: str = ""
    line: int | None = None
    path: str = ""  # the rule's field path, e.g. spec.http[0].match[1]

    def __str__(self) -> str:
        where = f"{self.origin}:{self.line}" if self.line else self.origin
        text = f"{self.kind} {self.namespace}/{self.name}"
        if self.path:
            text += f" {self.path}"
        return f"{text} ({where})" if where else text


_KINDS = {
    "virtual-service": "VirtualService",
    "destination-rule": "DestinationRule",
    "service-entry": "ServiceEntry",
}


def source_of(
    metadata: Mapping[str, Any] | None, objects: Mapping[tuple[str, str, str], Json]
) -> Source | None:
    """The object ``filter_metadata.istio.config`` names, with its file from ``/debug/configz``."""
    config = str(((metadata or {}).get("filter_metadata", {}).get("istio", {}) or {}).get("config", ""))
    pieces = config.split("/")
    if not config.startswith("/apis/") or len(pieces) != 8:
        return None
    kind = _KINDS.get(pieces[6], pieces[6])
    found = objects.get((kind, pieces[5], pieces[7]), {})
    return Source(kind, pieces[5], pieces[7], str(found.get("origin", "")))


def rule_of(
    source: Source,
    obj: Json | None,
    route_index: int,
    route_name: str,
    port: int,
    folders: Sequence[str] = (),
) -> Source:
    """Which ``spec.http[i].match[j]`` made the ``route_index``-th route the VirtualService gave this
    virtual host (one route per match, up to the first catch-all, as pilot.translate.routes builds
    them), with its line when the file is readable here."""
    if obj is None:
        return source
    rules = obj.get("spec", {}).get("http", [])
    pairs: list[tuple[int, int | None]] = []
    for i, rule in enumerate(rules):
        matches = rule.get("match", [])
        if not matches:
            pairs.append((i, None))
            break
        pairs.extend((i, j) for j, m in enumerate(matches) if not m.get("port") or int(m["port"]) == port)
    by_name = [pair for pair in pairs if route_name and rules[pair[0]].get("name") == route_name]
    if by_name:
        pair: tuple[int, int | None] | None = by_name[0]
    else:
        pair = pairs[route_index] if route_index < len(pairs) else None
    if pair is None:
        return source
    path: tuple[str | int, ...] = ("spec", "http", pair[0]) + (
        ("match", pair[1]) if pair[1] is not None else ()
    )
    where = _readable(source.origin, folders)
    line = line_of(where, source.kind, source.namespace, source.name, path) if where is not None else None
    origin = str(where) if where is not None else source.origin
    return Source(source.kind, source.namespace, source.name, origin, line, format_path(path))


def _readable(origin: str, folders: Sequence[str]) -> Path | None:
    """The origin's file here: as given, or under a folder pilot watches (a folder source names its
    files relative to the folder; ``/debug/sourcez`` gives the folder)."""
    for candidate in (Path(origin), *(Path(folder) / origin for folder in folders)):
        if candidate.is_file():
            return candidate
    return None


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
    index = next((i for i, chain in enumerate(chains) if _chain_applies(chain, request)), None)
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
