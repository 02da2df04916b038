"""The parts of an Envoy route a VirtualService ``HTTPRoute`` decides, besides the match.

Istio's route.go (``applyHTTPRouteDestination``, ``ApplyRedirect``, ``ApplyDirectResponse``,
``TranslateHeadersOperations``, ``TranslateFault``, ``consistentHashToHashPolicy``). Retries are in
retries.py, mirroring in mirror.py, CORS in cors.py.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from envoy.config.core.v3 import base_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.filters.http.fault.v3 import fault_pb2
from envoy.type.matcher.v3 import regex_pb2
from envoy.type.v3 import percent_pb2
from google.protobuf import any_pb2
from google.protobuf.message import Message

from pilot._gen import networking_pb2 as nw
from pilot.config.gateway_api.routes import PREFIX_REDIRECT
from pilot.translate import hosts, traffic_policy
from pilot.translate.context import Scope
from pilot.translate.mirror import per_hundred, per_million
from pilot.xds import names

log = logging.getLogger("pilot.translate.route_actions")

HeaderValueOption: TypeAlias = base_pb2.HeaderValueOption
FractionalPercent: TypeAlias = percent_pb2.FractionalPercent

# Istio's grpc.SupportedGRPCStatus.
GRPC_STATUS = {
    name: code
    for code, name in enumerate(
        "OK CANCELLED UNKNOWN INVALID_ARGUMENT DEADLINE_EXCEEDED NOT_FOUND ALREADY_EXISTS PERMISSION_DENIED "
        "RESOURCE_EXHAUSTED FAILED_PRECONDITION ABORTED OUT_OF_RANGE UNIMPLEMENTED INTERNAL UNAVAILABLE "
        "DATA_LOSS UNAUTHENTICATED".split()
    )
}
REDIRECT_CODES = {
    0: rc.RedirectAction.MOVED_PERMANENTLY,
    301: rc.RedirectAction.MOVED_PERMANENTLY,
    302: rc.RedirectAction.FOUND,
    303: rc.RedirectAction.SEE_OTHER,
    307: rc.RedirectAction.TEMPORARY_REDIRECT,
    308: rc.RedirectAction.PERMANENT_REDIRECT,
}


def typed(message: Message) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


# --- fault ---------------------------------------------------------------------------------------


def _fault_percent(
    spec: nw.HTTPFaultInjection.Delay | nw.HTTPFaultInjection.Abort,
) -> FractionalPercent | None:
    if spec.HasField("percentage"):
        return per_million(spec.percentage.value)
    if spec.percent:
        return per_hundred(spec.percent)
    return None


def fault(spec: nw.HTTPFaultInjection) -> fault_pb2.HTTPFault | None:
    out = fault_pb2.HTTPFault()
    if spec.HasField("delay"):
        if spec.delay.HasField("fixed_delay"):
            out.delay.fixed_delay.CopyFrom(spec.delay.fixed_delay)
            # Istio: a delay without a percentage is the deprecated integer percent (0 if unset).
            found = _fault_percent(spec.delay)
            out.delay.percentage.CopyFrom(found or FractionalPercent(denominator=FractionalPercent.HUNDRED))
        else:
            log.warning("only fixed delays can be injected; delay ignored")
    if spec.HasField("abort"):
        abort = _abort(spec.abort)
        if abort is not None:
            out.abort.CopyFrom(abort)
    if not out.HasField("delay") and not out.HasField("abort"):
        return None
    return out


def _abort(spec: nw.HTTPFaultInjection.Abort) -> fault_pb2.FaultAbort | None:
    out = fault_pb2.FaultAbort()
    kind = spec.WhichOneof("error_type")
    if kind == "http_status":
        out.http_status = spec.http_status
    elif kind == "grpc_status" and (spec.grpc_status in GRPC_STATUS or spec.grpc_status.isdigit()):
        code = GRPC_STATUS.get(spec.grpc_status)
        out.grpc_status = code if code is not None else int(spec.grpc_status)
    else:
        log.warning("only HTTP and gRPC status aborts are supported; abort ignored")
        return None
    found = _fault_percent(spec)
    if found is not None:
        out.percentage.CopyFrom(found)
    return out


# --- headers -------------------------------------------------------------------------------------


@dataclass(slots=True)
class HeaderOperations:
    request_add: list[HeaderValueOption] = field(default_factory=list)
    request_remove: list[str] = field(default_factory=list)
    response_add: list[HeaderValueOption] = field(default_factory=list)
    response_remove: list[str] = field(default_factory=list)
    authority: str = ""


def _is_internal(name: str) -> bool:
    return name.startswith(":") or name.lower() == "host"


def _is_authority(name: str) -> bool:
    return name.lower() in (":authority", "host")


def _append(headers: Mapping[str, str], action: int) -> tuple[list[HeaderValueOption], str]:
    options, authority = [], ""
    for key in sorted(headers):
        if _is_authority(key):
            authority = headers[key]
        if _is_internal(key):
            continue
        header = base_pb2.HeaderValue(key=key, value=headers[key])
        options.append(HeaderValueOption(header=header, append_action=action))
    return options, authority


def header_operations(spec: nw.Headers) -> HeaderOperations:
    """set → OVERWRITE_IF_EXISTS_OR_ADD, add → APPEND_IF_EXISTS_OR_ADD; ``host`` becomes a rewrite."""
    out = HeaderOperations()
    request, response = spec.request, spec.response
    set_add, set_authority = _append(request.set, HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD)
    add_add, add_authority = _append(request.add, HeaderValueOption.APPEND_IF_EXISTS_OR_ADD)
    out.request_add = set_add + add_add
    out.authority = set_authority or add_authority
    out.response_add = (
        _append(response.set, HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD)[0]
        + _append(response.add, HeaderValueOption.APPEND_IF_EXISTS_OR_ADD)[0]
    )
    out.request_remove = [h for h in request.remove if not _is_internal(h)]
    out.response_remove = [h for h in response.remove if not _is_internal(h)]
    return out


def apply_headers(target: Any, ops: HeaderOperations) -> None:
    """Append to a Route's or a ClusterWeight's header lists."""
    target.request_headers_to_add.extend(ops.request_add)
    target.request_headers_to_remove.extend(ops.request_remove)
    target.response_headers_to_add.extend(ops.response_add)
    target.response_headers_to_remove.extend(ops.response_remove)


# --- destinations, redirect, direct response ------------------------------------------------------


def destination_cluster(destination: nw.Destination, namespace: str, scope: Scope, listener_port: int) -> str:
    """Istio's GetDestinationCluster: the destination's port, else the service's only port, else
    the listener's; the host is resolved in the VirtualService's namespace."""
    host = hosts.resolve_shortname(destination.host, namespace)
    if destination.HasField("port") and destination.port.number:
        port = destination.port.number
    else:
        service = scope.service(host)
        port = service.ports[0].number if service is not None and len(service.ports) == 1 else listener_port
    return names.outbound_cluster(host, port, destination.subset)


def consistent_hash(scope: Scope, cluster: str) -> nw.LoadBalancerSettings.ConsistentHashLB | None:
    """The consistent-hash settings of the DestinationRule (subset, port) behind an outbound cluster."""
    parsed = names.parse_cluster(cluster)
    rule = scope.destination_rule(parsed.host) if parsed is not None else None
    if parsed is None or rule is None:
        return None
    spec = rule.spec
    top = spec.traffic_policy if spec.HasField("traffic_policy") else None
    policy = traffic_policy.for_port(top, parsed.port)
    subset = next((s for s in spec.subsets if parsed.subset and s.name == parsed.subset), None)
    if subset is not None and subset.HasField("traffic_policy"):
        policy = traffic_policy.for_subset(policy, subset.traffic_policy, parsed.port)
    lb = policy.load_balancer
    return lb.consistent_hash if lb is not None and lb.HasField("consistent_hash") else None


def hash_policy(hashing: nw.LoadBalancerSettings.ConsistentHashLB | None) -> rc.RouteAction.HashPolicy | None:
    """Istio's consistentHashToHashPolicy: the request attribute a ring-hash/maglev cluster hashes."""
    if hashing is None:
        return None
    kind = hashing.WhichOneof("hash_key")
    HashPolicy = rc.RouteAction.HashPolicy
    if kind == "http_header_name":
        return HashPolicy(header=HashPolicy.Header(header_name=hashing.http_header_name))
    if kind == "http_cookie":
        cookie = HashPolicy.Cookie(name=hashing.http_cookie.name, path=hashing.http_cookie.path)
        if hashing.http_cookie.HasField("ttl"):
            cookie.ttl.CopyFrom(hashing.http_cookie.ttl)
        return HashPolicy(cookie=cookie)
    if kind == "use_source_ip":
        source = HashPolicy.ConnectionProperties(source_ip=hashing.use_source_ip)
        return HashPolicy(connection_properties=source)
    if kind == "http_query_parameter_name":
        return HashPolicy(query_parameter=HashPolicy.QueryParameter(name=hashing.http_query_parameter_name))
    return None


def cluster_hash_policy(scope: Scope, cluster: str) -> rc.RouteAction.HashPolicy | None:
    """The hash policy of routes to ``cluster``, if its DestinationRule hashes (found once per scope
    and cluster: every route to the cluster asks)."""
    return scope.derived(("hash-policy", cluster), lambda: hash_policy(consistent_hash(scope, cluster)))


def add_hash_policy(action: rc.RouteAction, scope: Scope, cluster: str) -> bool:
    """Append the hash policy for ``cluster`` (``cluster_hash_policy``); True if there is one."""
    policy = cluster_hash_policy(scope, cluster)
    if policy is not None:
        action.hash_policy.append(policy)
    return policy is not None


def apply_destinations(
    route: rc.Route,
    action: rc.RouteAction,
    spec: nw.HTTPRoute,
    namespace: str,
    scope: Scope,
    port: int,
    clusters: Sequence[str] | None = None,
) -> bool:
    """One destination: ``cluster``; several: ``weighted_clusters`` without the weight-0 ones.
    Returns True when the single destination is consistent-hashed (retries then stay on the host).
    ``clusters``: each destination's ``destination_cluster``, when the caller has them already."""
    if clusters is None:
        clusters = [destination_cluster(d.destination, namespace, scope, port) for d in spec.route]
    if len(spec.route) == 1:
        destination = spec.route[0]
        action.cluster = clusters[0]
        if destination.HasField("headers"):
            ops = header_operations(destination.headers)
            apply_headers(route, ops)
            if ops.authority and not action.HasField("host_rewrite_literal"):
                action.host_rewrite_literal = ops.authority
        return add_hash_policy(action, scope, action.cluster)
    weighted = [(d, c) for d, c in zip(spec.route, clusters, strict=True) if d.weight > 0]
    if not weighted:
        log.warning("%d destinations all of weight 0 (invalid); splitting evenly", len(spec.route))
        weighted = list(zip(spec.route, clusters, strict=True))
    for destination, cluster in weighted:
        entry = action.weighted_clusters.clusters.add(name=cluster)
        entry.weight.value = destination.weight or 1  # set in place: a UInt32Value(...) costs twice
        if destination.HasField("headers"):
            ops = header_operations(destination.headers)
            apply_headers(entry, ops)
            if ops.authority:
                entry.host_rewrite_literal = ops.authority
        add_hash_policy(action, scope, entry.name)
    return False


def apply_rewrite(action: rc.RouteAction, rewrite: nw.HTTPRewrite) -> None:
    if rewrite.HasField("uri_regex_rewrite"):
        action.regex_rewrite.pattern.CopyFrom(regex_pb2.RegexMatcher(regex=rewrite.uri_regex_rewrite.match))
        action.regex_rewrite.substitution = rewrite.uri_regex_rewrite.rewrite
    elif rewrite.uri:
        action.prefix_rewrite = rewrite.uri
    if rewrite.authority:
        action.host_rewrite_literal = rewrite.authority


def redirect(
    spec: nw.HTTPRedirect, listener_port: int, is_tls: bool = False, gateway_semantics: bool = False
) -> rc.RedirectAction | None:
    """Istio's ApplyRedirect; None for a response code Envoy cannot send (the route is dropped).
    ``is_tls``: the listener terminates TLS (a gateway's HTTPS server), so the default scheme is https.
    ``gateway_semantics`` (a VirtualService converted from the Gateway API): a uri ``%PREFIX()%P``
    replaces the matched prefix with P (Envoy's ``prefix_rewrite``), as istiod's route.go does for a
    RequestRedirect's ReplacePrefixMatch; elsewhere the uri is the new path, whatever it holds.
    https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/route/v3/route_components.proto#envoy-v3-api-field-config-route-v3-redirectaction-prefix-rewrite"""
    code = REDIRECT_CODES.get(spec.redirect_code)
    if code is None:
        log.warning("redirect code %d is not supported; route dropped", spec.redirect_code)
        return None
    out = rc.RedirectAction(host_redirect=spec.authority, response_code=code)
    if gateway_semantics and spec.uri.startswith(PREFIX_REDIRECT):
        out.prefix_rewrite = spec.uri.removeprefix(PREFIX_REDIRECT)
    elif spec.uri:
        out.path_redirect = spec.uri
    if spec.scheme:
        out.scheme_redirect = spec.scheme
    which = spec.WhichOneof("redirect_port")
    if which is not None:
        if which == "port":
            out.port_redirect = spec.port
        elif spec.derive_port == nw.HTTPRedirect.FROM_REQUEST_PORT:
            out.port_redirect = listener_port
        scheme = spec.scheme or ("https" if is_tls else "http")
        if (out.port_redirect, scheme) in ((80, "http"), (443, "https")):
            out.port_redirect = 0
    return out


def direct_response(spec: nw.HTTPDirectResponse) -> rc.DirectResponseAction:
    out = rc.DirectResponseAction(status=spec.status)
    kind = spec.body.WhichOneof("specifier") if spec.HasField("body") else None
    if kind == "string":
        out.body.inline_string = spec.body.string
    elif kind == "bytes":
        out.body.inline_bytes = spec.body.bytes
    return out
