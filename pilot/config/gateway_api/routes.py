"""HTTPRoute and GRPCRoute rules → VirtualService ``http`` routes; TCPRoute and TLSRoute rules → ``tcp``
and ``tls`` routes. istiod's conversion.go (``convertHTTPRoute``, ``createRewriteFilter``,
``createRedirectFilter``, ``createMirrorFilter``, ``createHeadersFilter``, ``buildHTTPDestination``),
as VirtualService JSON.

Every match becomes its own VirtualService route, so that routes of all HTTPRoutes of one host can be
sorted by the spec's precedence (``HTTPRouteRule``: an Exact path first, then the longest prefix, a
method, the most headers, the most query parameters, then the oldest route, by namespace/name
here since pilot has no creation times, then rule order). A ``PathPrefix`` match is path-segment
aware (``/foo`` matches ``/foo`` and ``/foo/bar``, not ``/foobar``): it becomes an exact match of
``/foo`` and a prefix match of ``/foo/``, each with its own prefix rewrite.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pilot.config.gateway_api import conditions as cond
from pilot.config.gateway_api.conditions import Condition
from pilot.config.gateway_api.references import References, resolve_backend

Json = dict[str, Any]
# A redirect uri that replaces the matched prefix rather than the path (istiod's convention, honoured
# only on VirtualServices converted from the Gateway API).
PREFIX_REDIRECT = "%PREFIX()%"
_PATH_RANK = {"Exact": 0, "PathPrefix": 1, "RegularExpression": 2}


@dataclass(frozen=True, slots=True)
class HttpEntry:
    """One VirtualService http route and its place in the spec's precedence."""

    order: tuple[Any, ...]
    route: Json


@dataclass(slots=True)
class Converted:
    """What one route's rules became, and what went wrong (for its status)."""

    http: list[HttpEntry] = field(default_factory=list)
    tcp: list[Json] = field(default_factory=list)
    tls: list[Json] = field(default_factory=list)
    refs: list[Condition] = field(default_factory=list)  # unresolved references
    unsupported: list[str] = field(default_factory=list)  # rules left out, and why

    def resolved_refs(self) -> Condition:
        return self.refs[0] if self.refs else cond.resolved()


def _replaced_prefix(replacement: str, tail: str | None) -> str:
    """What a ReplacePrefixMatch puts in place of the matched prefix of one match half."""
    stem = replacement.rstrip("/")
    return f"{stem}/" if tail == "/" else (stem or "/")


def _header_operations(modifier: Mapping[str, Any]) -> Json:
    out: Json = {}
    for verb in ("set", "add"):
        if modifier.get(verb):
            out[verb] = {str(h["name"]).lower(): h["value"] for h in modifier[verb]}
    if modifier.get("remove"):
        out["remove"] = [str(name).lower() for name in modifier["remove"]]
    return out


def _string_matches(matches: list[Mapping[str, Any]], lower: bool) -> Json:
    out: Json = {}
    for match in matches:
        name = str(match["name"]).lower() if lower else str(match["name"])
        kind = "regex" if match.get("type") == "RegularExpression" else "exact"
        out.setdefault(name, {kind: match["value"]})  # the first of repeated names counts (spec)
    return out


class RuleConverter:
    """The rules of one route, in its namespace."""

    def __init__(self, kind: str, namespace: str, name: str, references: References) -> None:
        self.kind, self.namespace, self.name = kind, namespace, name
        self.references = references
        self.out = Converted()

    def destination(self, ref: Mapping[str, Any], weight: bool) -> Json | None:
        backend = resolve_backend(ref, self.kind, self.namespace, self.references)
        if backend.problem is not None:
            self.out.refs.append(backend.problem)
            if not backend.host:
                return None
        destination: Json = {"destination": {"host": backend.host}}
        if backend.port:
            destination["destination"]["port"] = {"number": backend.port}
        if weight:
            destination["weight"] = int(ref.get("weight", 1))
        return destination

    # -- HTTP and gRPC ------------------------------------------------------------------------------

    def http_rules(self, rules: list[Mapping[str, Any]]) -> Converted:
        for index, rule in enumerate(rules):
            base: Json = {"name": f"{self.namespace}.{self.name}.{index}"}
            problem = self._http_filters(rule.get("filters", ()), base)
            if problem is None:
                problem = self._backends(rule, base)
            if problem is not None:
                self.out.unsupported.append(f"rules[{index}]: {problem}")
                continue
            timeouts = rule.get("timeouts", {})
            timeout = timeouts.get("request") or timeouts.get("backendRequest")
            if timeout and timeout not in ("0s", "0ms", "0m", "0h"):
                base["timeout"] = timeout
            matches = rule.get("matches") or [{}]
            for match_index, match in enumerate(matches):
                if self.kind == "GRPCRoute":
                    self._grpc_match(match, base, (index, match_index))
                else:
                    self._http_match(match, base, (index, match_index))
        return self.out

    def _http_filters(self, filters: list[Mapping[str, Any]], route: Json) -> str | None:
        headers: Json = {}
        for item in filters:
            kind = item["type"]
            if kind == "RequestHeaderModifier":
                headers["request"] = _header_operations(item["requestHeaderModifier"])
            elif kind == "ResponseHeaderModifier":
                headers["response"] = _header_operations(item["responseHeaderModifier"])
            elif kind == "RequestRedirect":
                route["redirect"] = self._redirect(item["requestRedirect"])
                path = item["requestRedirect"].get("path")
                if path is not None and path["type"] == "ReplacePrefixMatch":
                    route["_redirect_prefix"] = path["replacePrefixMatch"]  # per match, as rewrites
            elif kind == "URLRewrite":
                route["_rewrite"] = item["urlRewrite"]  # applied per match (prefix rewrites differ)
            elif kind == "RequestMirror":
                mirror = item["requestMirror"]
                destination = self.destination(mirror["backendRef"], weight=False)
                if destination is None:
                    continue
                policy: Json = {"destination": destination["destination"]}
                if "fraction" in mirror:
                    fraction = mirror["fraction"]
                    policy["percentage"] = {
                        "value": 100 * fraction["numerator"] / fraction.get("denominator", 100)
                    }
                elif "percent" in mirror:
                    policy["percentage"] = {"value": float(mirror["percent"])}
                route.setdefault("mirrors", []).append(policy)
            else:  # ExtensionRef: pilot knows no extension kinds
                ref = item.get("extensionRef", {})
                named = f"{ref.get('group', '')}/{ref.get('kind', '')} {ref.get('name', '')}"
                return f"filter {kind} ({named}) is not supported"
        if headers:
            route["headers"] = headers
        return None

    def _redirect(self, spec: Mapping[str, Any]) -> Json:
        out: Json = {"redirectCode": int(spec.get("statusCode", 302))}
        if "scheme" in spec:
            out["scheme"] = spec["scheme"]
        if "hostname" in spec:
            out["authority"] = spec["hostname"]
        if "port" in spec:
            out["port"] = int(spec["port"])
        else:
            # "When empty, port (if specified) of the request is used" (unless the scheme changes).
            out["derivePort"] = "FROM_PROTOCOL_DEFAULT" if "scheme" in spec else "FROM_REQUEST_PORT"
        path = spec.get("path")
        if path is not None and path["type"] == "ReplaceFullPath":
            out["uri"] = path["replaceFullPath"]
        return out

    def _backends(self, rule: Mapping[str, Any], route: Json) -> str | None:
        if "redirect" in route:
            return None
        destinations = []
        for ref in rule.get("backendRefs", ()):
            destination = self.destination(ref, weight=True)
            if destination is None:
                continue
            for item in ref.get("filters", ()):
                if item["type"] == "RequestHeaderModifier":
                    destination.setdefault("headers", {})["request"] = _header_operations(
                        item["requestHeaderModifier"]
                    )
                elif item["type"] == "ResponseHeaderModifier":
                    destination.setdefault("headers", {})["response"] = _header_operations(
                        item["responseHeaderModifier"]
                    )
                else:
                    return f"backendRef filter {item['type']} is not supported"
            destinations.append(destination)
        live = [d for d in destinations if d["weight"] > 0]
        if not live:
            # "If all entries in BackendRefs are invalid, and there are also no filters specified in
            # this route rule, all traffic which matches this rule MUST receive a 500 status code."
            route["directResponse"] = {"status": 500}
            return None
        if len(live) == 1:
            del live[0]["weight"]
        route["route"] = live
        return None

    def _entry(self, route: Json, match: Json, order: tuple[Any, ...], position: tuple[int, int]) -> None:
        entry = {key: value for key, value in route.items() if not key.startswith("_")}
        if match:
            entry["match"] = [match]
        self.out.http.append(HttpEntry((*order, self.namespace, self.name, *position), entry))

    def _http_match(self, match: Mapping[str, Any], base: Json, position: tuple[int, int]) -> None:
        path = match.get("path", {})
        kind, value = path.get("type", "PathPrefix"), path.get("value", "/")
        common: Json = {}
        if match.get("headers"):
            common["headers"] = _string_matches(match["headers"], lower=True)
        if match.get("queryParams"):
            common["queryParams"] = _string_matches(match["queryParams"], lower=False)
        if "method" in match:
            common["method"] = {"exact": match["method"]}
        order = (
            _PATH_RANK[kind],
            -len(value),
            0 if "method" in match else 1,
            -len(match.get("headers", ())),
            -len(match.get("queryParams", ())),
        )
        rewrite = base.get("_rewrite")
        if kind == "RegularExpression":
            self._entry(
                self._rewritten(base, rewrite, None), {**common, "uri": {"regex": value}}, order, position
            )
        elif kind == "Exact":
            self._entry(
                self._rewritten(base, rewrite, None), {**common, "uri": {"exact": value}}, order, position
            )
        else:
            stem = value.rstrip("/")
            if stem:
                exact = {**common, "uri": {"exact": stem}}
                self._entry(self._rewritten(base, rewrite, None), exact, order, position)
            prefix = {**common, "uri": {"prefix": f"{stem}/"}}
            self._entry(self._rewritten(base, rewrite, "/"), prefix, order, position)

    def _rewritten(self, base: Json, rewrite: Mapping[str, Any] | None, tail: str | None) -> Json:
        """``base`` with a URLRewrite, and a RequestRedirect's ReplacePrefixMatch, for one match:
        ``tail`` is ``/`` for the prefix half of a PathPrefix (the replacement keeps a trailing
        slash), None for its exact half. A redirect's prefix replacement is istiod's: the uri
        ``%PREFIX()%REPLACEMENT``, which translation makes Envoy's ``prefix_rewrite`` on the redirect
        (conversion.go createRedirectFilter; route.go applyRedirect)."""
        prefix = base.get("_redirect_prefix")
        if prefix is not None:
            uri = PREFIX_REDIRECT + _replaced_prefix(str(prefix), tail)
            base = {**base, "redirect": {**base["redirect"], "uri": uri}}
        if rewrite is None:
            return base
        out: Json = {}
        if "hostname" in rewrite:
            out["authority"] = rewrite["hostname"]
        path = rewrite.get("path")
        if path is not None and path["type"] == "ReplaceFullPath":
            out["uriRegexRewrite"] = {"match": "/.*", "rewrite": path["replaceFullPath"]}
        elif path is not None:
            out["uri"] = _replaced_prefix(str(path["replacePrefixMatch"]), tail)
        return {**base, "rewrite": out} if out else base

    def _grpc_match(self, match: Mapping[str, Any], base: Json, position: tuple[int, int]) -> None:
        method = match.get("method", {})
        service, name = method.get("service", ""), method.get("method", "")
        uri: Json = {}
        if method.get("type") == "RegularExpression":
            uri = {"regex": f"/{service or '[^/]+'}/{name or '[^/]+'}"}
        elif service and name:
            uri = {"exact": f"/{service}/{name}"}
        elif service:
            uri = {"prefix": f"/{service}/"}
        elif name:
            uri = {"regex": f"/[^/]+/{name}"}
        out: Json = {"uri": uri} if uri else {}
        if match.get("headers"):
            out["headers"] = _string_matches(match["headers"], lower=True)
        order = (0 if "exact" in uri else 1, -len(service) - len(name), 1, -len(match.get("headers", ())), 0)
        self._entry(base, out, order, position)

    # -- TCP and TLS --------------------------------------------------------------------------------

    def l4_rules(self, rules: list[Mapping[str, Any]]) -> list[Json]:
        """Each rule's weighted destinations (TCPRoute and TLSRoute rules have nothing else)."""
        out = []
        for rule in rules:
            destinations = [d for ref in rule.get("backendRefs", ()) if (d := self.destination(ref, True))]
            live = [d for d in destinations if d["weight"] > 0]
            if len(live) == 1:
                del live[0]["weight"]
            if live:
                out.append({"route": live})
        return out
