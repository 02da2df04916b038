"""The Gateway API's OpenAPI schema, as plain data: what ``spec`` of each kind may hold.

No protos exist for gateway.networking.k8s.io, and generating some would add a build step for
types pilot only reads; the spec is kept as the parsed mapping (stored as a ``google.protobuf.Struct``
so that ``ConfigObject``, the store's equality and ``/debug/configz`` work unchanged), and checked
first (pilot.config.gateway_api.openapi) against the upstream CRDs' schema written here (standard
channel, v1.2: types, enums, bounds, patterns, required fields) and the CEL rules that need only one
object, each problem at its field path and line.
https://github.com/kubernetes-sigs/gateway-api/tree/main/apis/v1
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pilot.config.gateway_api.openapi import Int, Obj, Rule, Seq, Str, StrMap, Type

# -- the Gateway API's types (apis/v1/shared_types.go, gateway_types.go, httproute_types.go) ------

_DNS_SUBDOMAIN = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
GROUP = Str(r"^$|" + _DNS_SUBDOMAIN, max_length=253, what="a DNS subdomain or empty")
KIND = Str(r"[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?", max_length=63, min_length=1, what="a kind name")
NAME = Str(max_length=253, min_length=1)
NAMESPACE = Str(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", max_length=63, min_length=1, what="a DNS-1123 label")
SECTION_NAME = Str(_DNS_SUBDOMAIN, max_length=253, min_length=1, what="a DNS subdomain")
PORT = Int(1, 65535)
HOSTNAME = Str(
    r"(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*",
    max_length=253,
    min_length=1,
    what="a lower-case DNS name, optionally starting with *.",
)
DURATION = Str(r"([0-9]{1,5}(h|m|s|ms)){1,4}", what='a duration such as "10s" or "1h30m" (h, m, s, ms)')
HEADER_NAME = Str(r"[A-Za-z0-9!#$%&'*+\-.^_`|~]+", max_length=256, min_length=1, what="an HTTP header name")
LABELS = Obj(
    {
        "matchLabels": StrMap(),
        "matchExpressions": Seq(
            Obj(
                {
                    "key": Str(min_length=1),
                    "operator": Str(enum=("In", "NotIn", "Exists", "DoesNotExist")),
                    "values": Seq(Str(), 64),
                },
                frozenset({"key", "operator"}),
            ),
            64,
        ),
    }
)


def _parent_ref() -> Obj:
    return Obj(
        {
            "group": GROUP,
            "kind": KIND,
            "namespace": NAMESPACE,
            "name": NAME,
            "sectionName": SECTION_NAME,
            "port": PORT,
        },
        frozenset({"name"}),
    )


def _backend_ref(filters: Type | None = None) -> Obj:
    fields: dict[str, Type] = {
        "group": GROUP,
        "kind": KIND,
        "name": NAME,
        "namespace": NAMESPACE,
        "port": PORT,
        "weight": Int(0, 1_000_000),
    }
    if filters is not None:
        fields["filters"] = filters
    return Obj(fields, frozenset({"name"}), (_port_for_service,))


def _port_for_service(ref: Mapping[str, Any]) -> list[tuple[str, str]]:
    # CEL: (size(self.group) == 0 && self.kind == 'Service') ? has(self.port) : true
    if ref.get("group", "") == "" and ref.get("kind", "Service") == "Service" and "port" not in ref:
        return [("port", "required when referring to a Service")]
    return []


_HEADER = Obj(
    {"name": HEADER_NAME, "value": Str(max_length=4096, min_length=1)}, frozenset({"name", "value"})
)
HEADER_MODIFIER = Obj(
    {"set": Seq(_HEADER, 16), "add": Seq(_HEADER, 16), "remove": Seq(HEADER_NAME, 16)},
    rules=(lambda m: _unique_names(m, "set") + _unique_names(m, "add") + _unique_remove(m),),
)


def _unique_names(modifier: Mapping[str, Any], list_name: str) -> list[tuple[str, str]]:
    seen: set[str] = set()
    problems = []
    for index, header in enumerate(modifier.get(list_name, ())):
        name = str(header.get("name", "")).lower()
        if name in seen:
            problems.append((f"{list_name}[{index}].name", f'header "{name}" is listed twice'))
        seen.add(name)
    return problems


def _unique_remove(modifier: Mapping[str, Any]) -> list[tuple[str, str]]:
    names = [str(name).lower() for name in modifier.get("remove", ())]
    return [("remove", "lists a header twice")] if len(set(names)) != len(names) else []


_PATH_MODIFIER = Obj(
    {
        "type": Str(enum=("ReplaceFullPath", "ReplacePrefixMatch")),
        "replaceFullPath": Str(max_length=1024),
        "replacePrefixMatch": Str(max_length=1024),
    },
    frozenset({"type"}),
    (
        lambda m: _member_of_type(
            m, {"ReplaceFullPath": "replaceFullPath", "ReplacePrefixMatch": "replacePrefixMatch"}
        ),
    ),
)
_MIRROR = Obj(
    {
        "backendRef": _backend_ref(),
        "percent": Int(0, 100),
        "fraction": Obj({"numerator": Int(0, 2**31 - 1), "denominator": Int(1, 2**31 - 1)}),
    },
    frozenset({"backendRef"}),
)
_EXTENSION_REF = Obj({"group": GROUP, "kind": KIND, "name": NAME}, frozenset({"group", "kind", "name"}))

_HTTP_FILTER_FIELDS = {
    "RequestHeaderModifier": "requestHeaderModifier",
    "ResponseHeaderModifier": "responseHeaderModifier",
    "RequestMirror": "requestMirror",
    "RequestRedirect": "requestRedirect",
    "URLRewrite": "urlRewrite",
    "ExtensionRef": "extensionRef",
}


def _member_of_type(value: Mapping[str, Any], members: Mapping[str, str]) -> list[tuple[str, str]]:
    """CEL's "the field named by type must be set, and no other": each union member at most with its type."""
    kind = value.get("type")
    problems = []
    wanted = members.get(str(kind))
    if wanted is not None and wanted not in value:
        problems.append((wanted, f"required when type is {kind}"))
    for member_type, member in members.items():
        if member in value and member_type != kind:
            problems.append((member, f"must be set only when type is {member_type}"))
    return problems


def _filter(allowed: tuple[str, ...]) -> Obj:
    fields: dict[str, Type] = {"type": Str(enum=allowed)}
    members = {kind: _HTTP_FILTER_FIELDS[kind] for kind in allowed}
    schemas: dict[str, Type] = {
        "requestHeaderModifier": HEADER_MODIFIER,
        "responseHeaderModifier": HEADER_MODIFIER,
        "requestMirror": _MIRROR,
        "requestRedirect": Obj(
            {
                "scheme": Str(enum=("http", "https")),
                "hostname": HOSTNAME,
                "path": _PATH_MODIFIER,
                "port": PORT,
                "statusCode": Int(301, 308),
            },
            rules=(_redirect_code,),
        ),
        "urlRewrite": Obj({"hostname": HOSTNAME, "path": _PATH_MODIFIER}),
        "extensionRef": _EXTENSION_REF,
    }
    fields.update((name, schemas[name]) for name in members.values())
    return Obj(fields, frozenset({"type"}), (lambda f: _member_of_type(f, members),))


def _redirect_code(redirect: Mapping[str, Any]) -> list[tuple[str, str]]:
    code = redirect.get("statusCode")
    if code is not None and code not in (301, 302, 303, 307, 308):
        return [("statusCode", f"{code} is not a redirect status code (301, 302, 303, 307 or 308)")]
    return []


def _path_value(path: Mapping[str, Any]) -> list[tuple[str, str]]:
    kind, value = path.get("type", "PathPrefix"), path.get("value", "/")
    if kind in ("Exact", "PathPrefix") and not str(value).startswith("/"):
        return [("value", "must be an absolute path (start with /)")]
    if kind in ("Exact", "PathPrefix") and ("//" in value or "/./" in value or "/../" in value):
        return [("value", "must not contain //, /./ or /../")]
    if kind == "RegularExpression":
        try:
            re.compile(str(value))
        except re.error as err:
            return [("value", f"invalid regular expression: {err}")]
    return []


def _http_rule(rule: Mapping[str, Any]) -> list[tuple[str, str]]:
    """CEL rules of HTTPRouteRule: at most one of each filter but the mirror and the header modifiers;
    RequestRedirect and URLRewrite not together; ReplacePrefixMatch only with one PathPrefix match."""
    problems: list[tuple[str, str]] = []
    filters = list(rule.get("filters", ()))
    types = [f.get("type") for f in filters]
    for once in ("RequestHeaderModifier", "ResponseHeaderModifier", "RequestRedirect", "URLRewrite"):
        if types.count(once) > 1:
            problems.append(("filters", f"{once} may be given once"))
    if "RequestRedirect" in types and "URLRewrite" in types:
        problems.append(("filters", "RequestRedirect and URLRewrite cannot be used together"))
    if "RequestRedirect" in types and rule.get("backendRefs"):
        problems.append(("backendRefs", "a rule with a RequestRedirect filter sends no request to a backend"))
    prefix_replaced = any(
        f.get(member, {}).get("path", {}).get("type") == "ReplacePrefixMatch"
        for f in filters
        for member in ("requestRedirect", "urlRewrite")
    )
    if prefix_replaced:
        matches = list(rule.get("matches", ()))
        if len(matches) > 1 or any(
            m.get("path", {}).get("type", "PathPrefix") != "PathPrefix" for m in matches
        ):
            problems.append(("filters", "ReplacePrefixMatch needs exactly one match, of type PathPrefix"))
    return problems


def _listener_tls(listener: Mapping[str, Any]) -> list[tuple[str, str]]:
    """CEL rules of Listener: tls for HTTPS and TLS only, required for HTTPS; no hostname for TCP/UDP;
    Terminate needs certificateRefs."""
    protocol, tls = listener.get("protocol"), listener.get("tls")
    problems: list[tuple[str, str]] = []
    if protocol in ("HTTP", "TCP", "UDP") and tls is not None:
        problems.append(("tls", f"must not be set for protocol {protocol}"))
    if protocol in ("HTTPS", "TLS") and tls is None:
        problems.append(("tls", f"required for protocol {protocol}"))
    if protocol in ("TCP", "UDP") and "hostname" in listener:
        problems.append(("hostname", f"must not be set for protocol {protocol}"))
    if isinstance(tls, Mapping):
        mode = tls.get("mode", "Terminate")
        if mode == "Terminate" and not tls.get("certificateRefs"):
            problems.append(("tls.certificateRefs", "required when tls.mode is Terminate"))
        if protocol == "HTTPS" and mode == "Passthrough":
            problems.append(("tls.mode", "must be Terminate for protocol HTTPS"))
    return problems


HTTP_FILTERS = Seq(_filter(tuple(_HTTP_FILTER_FIELDS)), 16)
_STRING_MATCH = Obj(
    {
        "type": Str(enum=("Exact", "RegularExpression")),
        "name": HEADER_NAME,
        "value": Str(max_length=4096, min_length=1),
    },
    frozenset({"name", "value"}),
)
_HTTP_MATCH = Obj(
    {
        "path": Obj(
            {
                "type": Str(enum=("Exact", "PathPrefix", "RegularExpression")),
                "value": Str(max_length=1024),
            },
            rules=(_path_value,),
        ),
        "headers": Seq(_STRING_MATCH, 16),
        "queryParams": Seq(_STRING_MATCH, 16),
        "method": Str(enum=("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH")),
    }
)


def _route(rule: Mapping[str, Type], rules: tuple[Rule, ...] = ()) -> Obj:
    """An HTTPRoute or GRPCRoute: parents, hostnames, and up to 16 rules of ``rule``'s fields."""
    fields = {"parentRefs": Seq(_parent_ref(), 32), "hostnames": Seq(HOSTNAME, 16)}
    return Obj({**fields, "rules": Seq(Obj({"name": SECTION_NAME, **rule}, rules=rules), 16)})


HTTP_ROUTE = _route(
    {
        "matches": Seq(_HTTP_MATCH, 64),
        "filters": HTTP_FILTERS,
        "backendRefs": Seq(_backend_ref(HTTP_FILTERS), 16),
        "timeouts": Obj({"request": DURATION, "backendRequest": DURATION}),
    },
    (_http_rule,),
)
GRPC_FILTERS = Seq(
    _filter(("RequestHeaderModifier", "ResponseHeaderModifier", "RequestMirror", "ExtensionRef")), 16
)
GRPC_ROUTE = _route(
    {
        "matches": Seq(
            Obj(
                {
                    "method": Obj(
                        {
                            "type": Str(enum=("Exact", "RegularExpression")),
                            "service": Str(max_length=1024),
                            "method": Str(max_length=1024),
                        }
                    ),
                    "headers": Seq(_STRING_MATCH, 16),
                }
            ),
            64,
        ),
        "filters": GRPC_FILTERS,
        "backendRefs": Seq(_backend_ref(GRPC_FILTERS), 16),
    }
)


def _l4_route(with_hostnames: bool) -> Obj:
    fields: dict[str, Type] = {
        "parentRefs": Seq(_parent_ref(), 32),
        "rules": Seq(
            Obj(
                {"name": SECTION_NAME, "backendRefs": Seq(_backend_ref(), 16, 1)}, frozenset({"backendRefs"})
            ),
            16,
            1,
        ),
    }
    if with_hostnames:
        fields["hostnames"] = Seq(HOSTNAME, 16)
    return Obj(fields, frozenset({"rules"}))


_CERTIFICATE_REF = Obj(
    {"group": GROUP, "kind": KIND, "name": NAME, "namespace": NAMESPACE}, frozenset({"name"})
)
_LISTENER = Obj(
    {
        "name": SECTION_NAME,
        "hostname": HOSTNAME,
        "port": PORT,
        "protocol": Str(
            r"[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?(/[a-zA-Z0-9]+)?", max_length=255, min_length=1
        ),
        "tls": Obj(
            {
                "mode": Str(enum=("Terminate", "Passthrough")),
                "certificateRefs": Seq(_CERTIFICATE_REF, 64),
                "options": StrMap(16),
            }
        ),
        "allowedRoutes": Obj(
            {
                "namespaces": Obj(
                    {"from": Str(enum=("All", "Selector", "Same")), "selector": LABELS},
                    rules=(
                        lambda n: (
                            [("selector", "required when from is Selector")]
                            if n.get("from") == "Selector" and "selector" not in n
                            else []
                        ),
                    ),
                ),
                "kinds": Seq(Obj({"group": GROUP, "kind": KIND}, frozenset({"kind"})), 8),
            }
        ),
    },
    frozenset({"name", "port", "protocol"}),
    (_listener_tls,),
)


def _listeners_unique(spec: Mapping[str, Any]) -> list[tuple[str, str]]:
    problems = []
    names: set[str] = set()
    bound: set[tuple[object, object, object]] = set()
    for index, listener in enumerate(spec.get("listeners", ())):
        name = listener.get("name")
        if name in names:
            problems.append((f"listeners[{index}].name", f'listener name "{name}" is used twice'))
        names.add(name)
        triple = (listener.get("port"), listener.get("protocol"), listener.get("hostname"))
        if triple in bound:
            problems.append(
                (f"listeners[{index}]", "another listener has the same port, protocol and hostname")
            )
        bound.add(triple)
    return problems


GATEWAY = Obj(
    {
        "gatewayClassName": SECTION_NAME,
        "listeners": Seq(_LISTENER, 64, 1),
        "addresses": Seq(
            Obj(
                {"type": Str(max_length=253), "value": Str(max_length=253, min_length=1)},
                frozenset({"value"}),
            ),
            16,
        ),
        "infrastructure": Obj(
            {
                "labels": StrMap(8),
                "annotations": StrMap(8),
                "parametersRef": Obj(
                    {"group": GROUP, "kind": KIND, "name": NAME}, frozenset({"group", "kind", "name"})
                ),
            }
        ),
    },
    frozenset({"gatewayClassName", "listeners"}),
    (_listeners_unique,),
)
GATEWAY_CLASS = Obj(
    {
        "controllerName": Str(
            r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/[A-Za-z0-9\/\-._~%!$&'()*+,;=:]+",
            what="a domain-prefixed path such as istio.io/gateway-controller",
        ),
        "parametersRef": Obj(
            {"group": GROUP, "kind": KIND, "name": NAME, "namespace": NAMESPACE},
            frozenset({"group", "kind", "name"}),
        ),
        "description": Str(max_length=64),
    },
    frozenset({"controllerName"}),
)
REFERENCE_GRANT = Obj(
    {
        "from": Seq(
            Obj(
                {"group": GROUP, "kind": KIND, "namespace": NAMESPACE},
                frozenset({"group", "kind", "namespace"}),
            ),
            16,
            1,
        ),
        "to": Seq(Obj({"group": GROUP, "kind": KIND, "name": NAME}, frozenset({"group", "kind"})), 16, 1),
    },
    frozenset({"from", "to"}),
)
TCP_ROUTE = _l4_route(with_hostnames=False)
TLS_ROUTE = _l4_route(with_hostnames=True)
