"""A VirtualService ``HTTPMatchRequest`` as an Envoy ``RouteMatch``.

Istio's ``TranslateRouteMatch`` (pilot/pkg/networking/core/route/route.go): uri exact / prefix /
regex → path / prefix / safe_regex; headers (sorted by name), then ``:method``, ``:authority``,
``:scheme``; a regex of ``*`` is a presence match. ``sourceLabels``, ``gateways`` and ``port`` are
decided at generation time (``applies``) and never reach Envoy.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.type.matcher.v3 import regex_pb2, string_pb2
from google.protobuf import wrappers_pb2

from pilot.translate.context import MESH_GATEWAY

log = logging.getLogger("pilot.translate.matches")

METHOD = ":method"
AUTHORITY = ":authority"
SCHEME = ":scheme"
JWT_CLAIM_PREFIX = "@request.auth.claims"


def applies(match: Any | None, port: int, labels: Mapping[str, str], namespace: str) -> bool:
    """Istio's port check and ``sourceMatchHTTP`` for a sidecar (whose only gateway is ``mesh``)."""
    if match is None:
        return True
    if match.port and match.port != port:
        return False
    if match.gateways:
        return MESH_GATEWAY in match.gateways
    if any(labels.get(k) != v for k, v in match.source_labels.items()):
        return False
    return not match.source_namespace or match.source_namespace == namespace


def string_matcher(match: Any) -> string_pb2.StringMatcher | None:
    kind = match.WhichOneof("match_type")
    if kind == "exact":
        return string_pb2.StringMatcher(exact=match.exact)
    if kind == "prefix":
        return string_pb2.StringMatcher(prefix=match.prefix)
    if kind == "regex":
        return string_pb2.StringMatcher(safe_regex=regex_pb2.RegexMatcher(regex=match.regex))
    return None


def _is_presence(match: Any) -> bool:
    """An empty match, or the regex ``*`` (not RE2; istio/istio#20629), means "the header is present"."""
    kind = match.WhichOneof("match_type")
    return kind is None or (kind == "regex" and match.regex == "*")


def header_matcher(name: str, match: Any) -> rc.HeaderMatcher:
    if _is_presence(match):
        return rc.HeaderMatcher(name=name, present_match=True)
    return rc.HeaderMatcher(name=name, string_match=string_matcher(match))


def _without_header(name: str, match: Any) -> rc.HeaderMatcher:
    out = header_matcher(name, match)
    out.invert_match = True
    if not _is_presence(match):
        out.treat_missing_header_as_empty = True
    return out


def query_matcher(name: str, match: Any) -> rc.QueryParameterMatcher:
    if _is_presence(match):
        return rc.QueryParameterMatcher(name=name, present_match=True)
    return rc.QueryParameterMatcher(name=name, string_match=string_matcher(match))


def _headers(match: Any) -> list[rc.HeaderMatcher]:
    out = []
    for name, value in sorted(match.headers.items()):
        if name.startswith(JWT_CLAIM_PREFIX):
            log.warning("header match %r (JWT claim) is not supported; ignored", name)
            continue
        out.append(header_matcher(name, value))
    for name, value in sorted(match.without_headers.items()):
        if name.startswith(JWT_CLAIM_PREFIX):
            log.warning("withoutHeaders %r (JWT claim) is not supported; ignored", name)
            continue
        out.append(_without_header(name, value))
    out.sort(key=lambda h: h.name)
    return out


def route_match(match: Any | None) -> rc.RouteMatch:
    out = rc.RouteMatch(prefix="/")
    if match is None:
        return out
    out.headers.extend(_headers(match))
    if match.HasField("uri"):
        kind = match.uri.WhichOneof("match_type")
        if kind == "exact":
            out.path = match.uri.exact
        elif kind == "prefix":
            out.prefix = match.uri.prefix
        elif kind == "regex":
            out.safe_regex.CopyFrom(regex_pb2.RegexMatcher(regex=match.uri.regex))
    out.case_sensitive.CopyFrom(wrappers_pb2.BoolValue(value=not match.ignore_uri_case))
    for name, field in ((METHOD, "method"), (AUTHORITY, "authority"), (SCHEME, "scheme")):
        if match.HasField(field):
            out.headers.append(header_matcher(name, getattr(match, field)))
    for name, value in sorted(match.query_params.items()):
        out.query_parameters.append(query_matcher(name, value))
    return out


def is_catch_all(match: rc.RouteMatch) -> bool:
    """Istio's IsCatchAllRoute: prefix ``/`` or regex ``.*`` with no header or query conditions."""
    kind = match.WhichOneof("path_specifier")
    catch_all = (kind == "prefix" and match.prefix == "/") or (
        kind == "safe_regex" and match.safe_regex.regex == ".*"
    )
    return catch_all and not match.headers and not match.query_parameters
