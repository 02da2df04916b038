"""A VirtualService ``HTTPMatchRequest`` as an Envoy ``RouteMatch``.

Istio's ``TranslateRouteMatch`` (pilot/pkg/networking/core/route/route.go): uri exact / prefix /
regex → path / prefix / safe_regex; headers (sorted by name), then ``:method``, ``:authority``,
``:scheme``; a regex of ``*`` is a presence match; JWT claims (``@request.auth.claims.*``) match the
payload the jwt_authn filter of a RequestAuthentication verified (dynamic metadata).
``sourceLabels``, ``gateways`` and ``port`` are decided at generation time (``applies``) and never
reach Envoy.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.type.matcher.v3 import metadata_pb2, regex_pb2, string_pb2, value_pb2
from google.protobuf import wrappers_pb2

from pilot._gen import networking_pb2 as nw
from pilot.translate.config_entries import MESH_GATEWAY
from pilot.translate.jwt_authn import JWT_AUTHN_FILTER, JWT_PAYLOAD_METADATA_KEY

log = logging.getLogger("pilot.translate.matches")

METHOD = ":method"
AUTHORITY = ":authority"
SCHEME = ":scheme"
JWT_CLAIM_PREFIX = "@request.auth.claims"


def applies(
    match: nw.HTTPMatchRequest | None,
    port: int,
    labels: Mapping[str, str],
    namespace: str,
    gateways: frozenset[str] = frozenset({MESH_GATEWAY}),
) -> bool:
    """Istio's port check and ``sourceMatchHTTP``, decided when the config is generated.

    ``gateways`` are the names the proxy answers to (a sidecar: only ``mesh``); when the match names
    gateways, only they count (source labels and namespace are then not looked at, as in Istio).
    Otherwise ``sourceLabels`` must be a subset of the proxy's ``labels`` (a sidecar view carries
    the labels some selector names, pilot.translate.views).
    """
    if match is None:
        return True
    if match.port and match.port != port:
        return False
    if match.gateways:
        return any(name in gateways for name in match.gateways)
    if any(labels.get(k) != v for k, v in match.source_labels.items()):
        return False
    return not match.source_namespace or match.source_namespace == namespace


def string_matcher(match: nw.StringMatch) -> string_pb2.StringMatcher | None:
    kind = match.WhichOneof("match_type")
    if kind == "exact":
        return string_pb2.StringMatcher(exact=match.exact)
    if kind == "prefix":
        return string_pb2.StringMatcher(prefix=match.prefix)
    if kind == "regex":
        return string_pb2.StringMatcher(safe_regex=regex_pb2.RegexMatcher(regex=match.regex))
    return None


def _is_presence(match: nw.StringMatch) -> bool:
    """An empty match, or the regex ``*`` (not RE2; istio/istio#20629), means "the header is present"."""
    kind = match.WhichOneof("match_type")
    return kind is None or (kind == "regex" and match.regex == "*")


def header_matcher(name: str, match: nw.StringMatch) -> rc.HeaderMatcher:
    if _is_presence(match):
        return rc.HeaderMatcher(name=name, present_match=True)
    return rc.HeaderMatcher(name=name, string_match=string_matcher(match))


def _without_header(name: str, match: nw.StringMatch) -> rc.HeaderMatcher:
    out = header_matcher(name, match)
    out.invert_match = True
    if not _is_presence(match):
        out.treat_missing_header_as_empty = True
    return out


def query_matcher(name: str, match: nw.StringMatch) -> rc.QueryParameterMatcher:
    if _is_presence(match):
        return rc.QueryParameterMatcher(name=name, present_match=True)
    return rc.QueryParameterMatcher(name=name, string_match=string_matcher(match))


def jwt_claims(name: str) -> list[str] | None:
    """Istio's jwt.ToRoutingClaim: ``@request.auth.claims.a.b`` or ``@request.auth.claims[a][b]`` →
    ``["a", "b"]``; None for an ordinary header."""
    if not name.lower().startswith(JWT_CLAIM_PREFIX):
        return None
    rest = name[len(JWT_CLAIM_PREFIX) :]
    if rest.startswith(".") and len(rest) > 1:
        return rest[1:].split(".")
    if rest.startswith("[") and rest.endswith("]") and len(rest) > 2:
        return rest[1:-1].split("][")
    return None


def claim_matcher(claims: list[str], match: nw.StringMatch) -> metadata_pb2.MetadataMatcher:
    """Istio's MetadataMatcherForJWTClaims (pilot/pkg/security/authz/model/util.go, with
    matcher.MetadataListMatcher's extended JWT form): the claim, or any item of a list claim, in the
    payload jwt_authn verified. Without a RequestAuthentication (or without a valid token) there is
    no payload and the route does not match: narrower than ignoring the condition."""
    value = value_pb2.ValueMatcher(string_match=string_matcher(match))
    listed = value_pb2.ValueMatcher(list_match=value_pb2.ListMatcher(one_of=value))
    keys = [JWT_PAYLOAD_METADATA_KEY, *claims]
    return metadata_pb2.MetadataMatcher(
        filter=JWT_AUTHN_FILTER,
        path=[metadata_pb2.MetadataMatcher.PathSegment(key=key) for key in keys],
        value=value_pb2.ValueMatcher(or_match=value_pb2.OrMatcher(value_matchers=[listed, value])),
    )


def _headers(match: nw.HTTPMatchRequest, out: rc.RouteMatch) -> None:
    """Header and header-absence matchers (sorted by name); JWT claims as dynamic-metadata matchers."""
    headers = []
    for name, value in sorted(match.headers.items()):
        claims = jwt_claims(name)
        if claims is not None:
            out.dynamic_metadata.append(claim_matcher(claims, value))
        else:
            headers.append(header_matcher(name, value))
    for name, value in sorted(match.without_headers.items()):
        claims = jwt_claims(name)
        if claims is not None:
            inverted = claim_matcher(claims, value)
            inverted.invert = True
            out.dynamic_metadata.append(inverted)
        else:
            headers.append(_without_header(name, value))
    headers.sort(key=lambda h: h.name)
    out.headers.extend(headers)


def route_match(match: nw.HTTPMatchRequest | None) -> rc.RouteMatch:
    out = rc.RouteMatch(prefix="/")
    if match is None:
        return out
    _headers(match, out)
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
    return catch_all and not match.headers and not match.query_parameters and not match.dynamic_metadata
