"""Gateway API objects read from YAML: their schema (types, enums, bounds, required fields, the CEL rules
of one object), with every problem at its file, object, field path and line."""

from __future__ import annotations

from google.protobuf import json_format

from pilot.config import kinds
from pilot.config.objects import ConfigKey
from pilot.config.parse import parse_text

GATEWAY = """\
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: infra}
spec:
  gatewayClassName: istio
  listeners:
  - name: http
    port: 80
    protocol: HTTP
    allowedRoutes: {namespaces: {from: All}}
"""


def errors(text: str) -> list[str]:
    return [str(e) for e in parse_text(text, "routes.yaml").errors]


def test_valid_gateway_is_kept_as_parsed_and_keyed_apart_from_istios_gateway() -> None:
    result = parse_text(GATEWAY, "gw.yaml")
    assert result.errors == ()
    (obj,) = result.objects
    assert obj.key == ConfigKey(kinds.K8S_GATEWAY, "infra", "gw")
    assert kinds.K8S_GATEWAY_INFO.holds(obj)
    spec = json_format.MessageToDict(obj.spec)
    assert spec["listeners"][0]["allowedRoutes"] == {"namespaces": {"from": "All"}}


def test_problems_name_file_object_field_and_line() -> None:
    text = """\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r}
spec:
  parentRefs: [{name: gw, port: 0}]
  hostnames: ["Foo.example.com"]
  rules:
  - matches: [{path: {type: Prefix, value: /a}}]
    backendRefs: [{name: a}]
    timeouts: {request: 10}
    bogus: 1
"""
    assert errors(text) == [
        "routes.yaml:5: HTTPRoute default/r: spec.parentRefs[0].port: 0 is out of range (1..65535)",
        'routes.yaml:6: HTTPRoute default/r: spec.hostnames[0]: invalid value "Foo.example.com"; '
        "must be a lower-case DNS name, optionally starting with *.",
        'routes.yaml:8: HTTPRoute default/r: spec.rules[0].matches[0].path.type: invalid value "Prefix"; '
        "must be one of Exact, PathPrefix, RegularExpression",
        "routes.yaml:9: HTTPRoute default/r: spec.rules[0].backendRefs[0].port: "
        "required when referring to a Service",
        "routes.yaml:10: HTTPRoute default/r: spec.rules[0].timeouts.request: "
        "expected a string, got an integer",
        "routes.yaml:11: HTTPRoute default/r: spec.rules[0].bogus: unknown field",
    ]
    assert parse_text(text, "routes.yaml").rejected == {ConfigKey(kinds.HTTP_ROUTE, "default", "r")}


def test_cel_rules_of_one_object() -> None:
    text = """\
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  gatewayClassName: istio
  listeners:
  - {name: a, port: 443, protocol: HTTPS}
  - {name: a, port: 80, protocol: TCP, hostname: x.example.com}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r}
spec:
  rules:
  - matches: [{path: {value: /a}}, {path: {value: /b}}]
    filters:
    - {type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /}}}
    - {type: RequestRedirect, requestHeaderModifier: {}}
"""
    found = "\n".join(errors(text))
    for expected in (
        "spec.listeners[0].tls: required for protocol HTTPS",
        'spec.listeners[1].name: listener name "a" is used twice',
        "spec.listeners[1].hostname: must not be set for protocol TCP",
        "filters[1].requestRedirect: required when type is RequestRedirect",
        "filters[1].requestHeaderModifier: must be set only when type is RequestHeaderModifier",
        "RequestRedirect and URLRewrite cannot be used together",
        "ReplacePrefixMatch needs exactly one match, of type PathPrefix",
    ):
        assert expected in found


def test_every_version_of_every_kind_resolves() -> None:
    for info in kinds.GATEWAY_API_KINDS:
        for api_version in info.api_versions():
            assert kinds.resolve(api_version, info.written_kind).info is info
    assert kinds.resolve("gateway.networking.k8s.io/v1alpha2", "UDPRoute").not_served
    wrong = kinds.resolve("gateway.networking.k8s.io/v9", "HTTPRoute")
    assert wrong.wrong_version is kinds.HTTP_ROUTE_INFO
    # Istio's Gateway is still Istio's
    assert kinds.resolve("networking.istio.io/v1", "Gateway").info is kinds.GATEWAY_INFO
