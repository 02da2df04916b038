"""Checks of one VirtualService HTTP route, as Istio's ``validateHTTPRoute`` (virtualservice.go) does."""

from __future__ import annotations

import http

from pilot._gen import networking_pb2 as nw
from pilot.config.validation.common import (
    Report,
    at,
    check_duration,
    check_gateway_names,
    check_labels,
    check_percent,
    check_percentage,
    check_port,
    is_dns1123_label,
    item,
)
from pilot.config.validation.destinations import (
    check_header_operations,
    validate_destination,
    validate_route_destinations,
)
from pilot.config.validation.http import (
    check_header_name,
    check_regex,
    check_string_match,
    is_authority_header,
)

# Envoy's x-envoy-retry-on and x-envoy-retry-grpc-on policies.
RETRY_ON_POLICIES = frozenset(
    {
        "5xx",
        "gateway-error",
        "reset",
        "reset-before-request",
        "connect-failure",
        "retriable-4xx",
        "refused-stream",
        "retriable-status-codes",
        "retriable-headers",
        "envoy-ratelimited",
        "http3-post-connect-failure",
        "cancelled",
        "deadline-exceeded",
        "internal",
        "resource-exhausted",
        "unavailable",
    }
)
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "CONNECT", "OPTIONS", "TRACE"})
GRPC_STATUSES = frozenset(
    {
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    }
)
_KNOWN_STATUS_CODES = frozenset(status.value for status in http.HTTPStatus)
_KB = 1024
_MB = 1024 * _KB


def validate_http_route(route: nw.HTTPRoute, delegate: bool, path: str, report: Report) -> None:
    """``route`` is ``spec.http[i]`` at ``path``; ``delegate``: it belongs to a delegate (host-less) VS."""
    _conflicts(route, delegate, path, report)
    _matches(route, path, report)
    if route.HasField("headers"):
        check_header_operations(route.headers, at(path, "headers"), report)
    if route.HasField("cors_policy"):
        _cors(route.cors_policy, at(path, "corsPolicy"), report)
    if route.HasField("fault"):
        _fault(route.fault, at(path, "fault"), report)
    if route.HasField("mirror_percent"):
        if route.mirror_percent.value > 100:
            report.error(
                at(path, "mirrorPercent"),
                f"mirror_percent must have a max value of 100 (it has {route.mirror_percent.value})",
            )
        report.warn(
            at(path, "mirrorPercent"),
            'using deprecated setting "mirrorPercent", use "mirrorPercentage" instead',
        )
    if route.HasField("mirror_percentage"):
        value = route.mirror_percentage.value
        _mirror_percent(value, at(path, "mirrorPercentage"), "mirror_percentage", report)
    if route.HasField("mirror"):
        validate_destination(route.mirror, at(path, "mirror"), report)
    for index, mirror in enumerate(route.mirrors):
        mirror_path = item(at(path, "mirrors"), index)
        if not mirror.HasField("destination"):
            report.error(mirror_path, "destination is required for mirrors")
            continue
        validate_destination(mirror.destination, at(mirror_path, "destination"), report)
        if mirror.HasField("percentage"):
            value = mirror.percentage.value
            _mirror_percent(value, at(mirror_path, "percentage"), "mirror percentage", report)
    if route.HasField("redirect"):
        report.check(at(path, "redirect"), _redirect(route.redirect))
    if route.HasField("direct_response"):
        _direct_response(route.direct_response, at(path, "directResponse"), report)
    if route.HasField("retries"):
        _retries(route.retries, at(path, "retries"), report)
    if route.HasField("rewrite"):
        report.check(at(path, "rewrite"), _rewrite(route.rewrite))
    _authority_rewrite(route, path, report)
    validate_route_destinations(route.route, at(path, "route"), report, http_route=True)
    if route.HasField("timeout"):
        report.check(at(path, "timeout"), check_duration(route.timeout))


def _mirror_percent(value: float, path: str, label: str, report: Report) -> None:
    """Istio's mirror percentage bounds (its messages, with the field's name as Istio spells it)."""
    if not value <= 100:
        report.error(path, f"{label} must have a max value of 100 (it has {value:f})")
    if value < 0:
        report.error(path, f"{label} must have a min value of 0 (it has {value:f})")


def _conflicts(route: nw.HTTPRoute, delegate: bool, path: str, report: Report) -> None:
    if not delegate and route.HasField("delegate"):
        # A root route: it hands its traffic to the delegate, so it may not route or redirect itself.
        if route.HasField("redirect"):
            report.error(at(path, "redirect"), f"root HTTP route {route.name} must not specify redirect")
        if len(route.route):
            report.error(at(path, "route"), f"root HTTP route {route.name} must not specify route")
        return
    if delegate and route.HasField("delegate"):
        report.error(at(path, "delegate"), "delegate HTTP route cannot contain delegate")
    has_route = len(route.route) > 0
    if route.HasField("redirect"):
        if has_route:
            report.error(path, "HTTP route cannot contain both route and redirect")
        if route.HasField("fault"):
            report.error(path, "HTTP route cannot contain both fault and redirect")
        if route.HasField("rewrite"):
            report.error(path, "HTTP route rule cannot contain both rewrite and redirect")
        if route.HasField("direct_response"):
            report.error(path, "HTTP route rule cannot contain both direct_response and redirect")
    elif route.HasField("direct_response"):
        if has_route:
            report.error(path, "HTTP route cannot contain both route and direct_response")
        if route.HasField("fault"):
            report.error(path, "HTTP route cannot contain both fault and direct_response")
        if route.HasField("rewrite"):
            report.error(path, "HTTP route rule cannot contain both rewrite and direct_response")
    elif not has_route:
        report.error(path, "HTTP route, redirect or direct_response is required")
    if route.HasField("mirror") and len(route.mirrors):
        report.error(path, "HTTP route cannot contain both mirror and mirrors")


def _matches(route: nw.HTTPRoute, path: str, report: Report) -> None:
    for index, match in enumerate(route.match):
        match_path = item(at(path, "match"), index)
        for name, header in sorted(match.headers.items()):
            header_path = item(at(match_path, "headers"), name)
            report.check(header_path, check_header_name(name, allow_jwt_claim=True))
            report.check(header_path, check_string_match(header, "headers"))
        for name, header in sorted(match.without_headers.items()):
            header_path = item(at(match_path, "withoutHeaders"), name)
            report.check(header_path, check_header_name(name, allow_jwt_claim=True))
            if header.regex != "*":  # "*" is a presence match, not a regex
                report.check(header_path, check_string_match(header, "withoutHeaders"))
        # The uri may match the empty prefix; scheme, method and authority may not (Envoy's rules).
        for field, name in (
            ("uri", "uri"),
            ("scheme", "scheme"),
            ("method", "method"),
            ("authority", "authority"),
        ):
            if match.HasField(field):
                string_match = getattr(match, field)
                field_path = at(match_path, name)
                report.check(
                    field_path, check_string_match(string_match, name, allow_empty_prefix=field == "uri")
                )
                if string_match.WhichOneof("match_type") is None:
                    report.warn(field_path, "no exact, prefix or regex set: matches anything")
        for name, param in sorted(match.query_params.items()):
            report.check(item(at(match_path, "queryParams"), name), check_string_match(param, "queryParams"))
        if match.port != 0:
            report.check(at(match_path, "port"), check_port(match.port))
        report.check_all(at(match_path, "sourceLabels"), check_labels(match.source_labels))
        errors, warnings = check_gateway_names(match.gateways)
        report.check_all(at(match_path, "gateways"), errors)
        for warning in warnings:
            report.warn(at(match_path, "gateways"), warning)
        if match.source_namespace and not is_dns1123_label(match.source_namespace):
            report.error(
                at(match_path, "sourceNamespace"),
                f"sourceNamespace match {match.source_namespace} is invalid",
            )


def _cors(policy: nw.CorsPolicy, path: str, report: Report) -> None:
    for index, origin in enumerate(policy.allow_origins):
        origin_path = item(at(path, "allowOrigins"), index)
        kind = origin.WhichOneof("match_type")
        if kind is None or not getattr(origin, kind):
            report.error(origin_path, "'' is not a valid match type for CORS allow origins")
        elif kind == "regex":
            report.check(origin_path, check_regex(origin.regex, "corsPolicy.allowOrigins"))
    for index, method in enumerate(policy.allow_methods):
        if method not in HTTP_METHODS:
            report.error(item(at(path, "allowMethods"), index), f'"{method}" is not a supported HTTP method')
    for field in ("allowHeaders", "exposeHeaders"):
        for index, name in enumerate(
            getattr(policy, "allow_headers" if field == "allowHeaders" else "expose_headers")
        ):
            if name != "*":
                report.check(item(at(path, field), index), check_header_name(name))
    if policy.HasField("max_age"):
        report.check(at(path, "maxAge"), check_duration(policy.max_age))
        if policy.max_age.nanos > 0:
            report.error(at(path, "maxAge"), "max_age duration is accurate only to seconds precision")


def _fault(fault: nw.HTTPFaultInjection, path: str, report: Report) -> None:
    if not fault.HasField("abort") and not fault.HasField("delay"):
        report.error(path, "HTTP fault injection must have an abort and/or a delay")
    if fault.HasField("abort"):
        abort, abort_path = fault.abort, at(path, "abort")
        if abort.HasField("percentage"):
            report.check(at(abort_path, "percentage"), check_percentage(abort.percentage))
        if abort.percent:
            report.check(at(abort_path, "percent"), check_percent(abort.percent))
            report.warn(
                at(abort_path, "percent"), 'using deprecated setting "percent", use "percentage" instead'
            )
        kind = abort.WhichOneof("error_type")
        if kind == "grpc_status":
            if abort.grpc_status not in GRPC_STATUSES:
                report.error(
                    at(abort_path, "grpcStatus"),
                    f'gRPC status "{abort.grpc_status}" is not supported. '
                    "See https://github.com/grpc/grpc/blob/master/doc/statuscodes.md for a list of "
                    "supported codes, for example 'NOT_FOUND'",
                )
        elif kind == "http2_error":
            report.error(at(abort_path, "http2Error"), "HTTP/2 abort fault injection not supported yet")
        elif kind == "http_status":
            report.check(at(abort_path, "httpStatus"), check_http_status(abort.http_status))
        else:
            report.warn(abort_path, "abort configured, but error type not set")
    if fault.HasField("delay"):
        delay, delay_path = fault.delay, at(path, "delay")
        if delay.HasField("percentage"):
            report.check(at(delay_path, "percentage"), check_percentage(delay.percentage))
        if delay.percent:
            report.check(at(delay_path, "percent"), check_percent(delay.percent))
            report.warn(
                at(delay_path, "percent"), 'using deprecated setting "percent", use "percentage" instead'
            )
        kind = delay.WhichOneof("http_delay_type")
        if kind == "fixed_delay":
            report.check(at(delay_path, "fixedDelay"), check_duration(delay.fixed_delay))
        elif kind == "exponential_delay":
            report.check(at(delay_path, "exponentialDelay"), check_duration(delay.exponential_delay))
            report.error(at(delay_path, "exponentialDelay"), "exponentialDelay not supported yet")
        else:
            report.error(delay_path, "delay must set fixedDelay")


def check_http_status(status: int) -> str | None:
    return None if 200 <= status <= 599 else f"HTTP status {status} is not in range 200-599"


def _redirect(redirect: nw.HTTPRedirect) -> str | None:
    if (
        not redirect.uri
        and not redirect.authority
        and redirect.WhichOneof("redirect_port") is None
        and not redirect.scheme
    ):
        return "redirect must specify URI, authority, scheme, or port"
    if redirect.redirect_code and not 300 <= redirect.redirect_code <= 399:
        return f"{redirect.redirect_code} is not a valid redirect code, must be 3xx"
    if redirect.scheme and redirect.scheme not in ("http", "https"):
        return 'invalid redirect scheme, must be "http" or "https"'
    if redirect.port > 0:
        return check_port(redirect.port)
    return None


def _direct_response(response: nw.HTTPDirectResponse, path: str, report: Report) -> None:
    if response.HasField("body"):
        kind = response.body.WhichOneof("specifier")
        size = 0 if kind is None else len(getattr(response.body, kind))
        if size > _MB:
            report.error(
                at(path, "body"),
                "large direct_responses may impact control plane performance, must be less than 1MB",
            )
        elif size > 100 * _KB:
            report.warn(at(path, "body"), "large direct_responses may impact control plane performance")
    report.check(at(path, "status"), check_http_status(response.status))


def _retries(retries: nw.HTTPRetry, path: str, report: Report) -> None:
    if retries.attempts < 0:
        report.error(at(path, "attempts"), "attempts cannot be negative")
    if retries.attempts == 0 and (
        retries.HasField("per_try_timeout") or retries.retry_on or retries.HasField("retry_remote_localities")
    ):
        report.error(path, "http retry policy configured when attempts are set to 0 (disabled)")
    if retries.HasField("per_try_timeout"):
        report.check(at(path, "perTryTimeout"), check_duration(retries.per_try_timeout))
    if retries.retry_on:
        for policy in retries.retry_on.split(","):
            code = int(policy) if policy.isascii() and policy.isdigit() and len(policy) < 5 else 0
            if code not in _KNOWN_STATUS_CODES and policy not in RETRY_ON_POLICIES:
                report.error(at(path, "retryOn"), f'"{policy}" is not a valid retryOn policy')


def _rewrite(rewrite: nw.HTTPRewrite) -> str | None:
    has_regex = rewrite.HasField("uri_regex_rewrite")
    if rewrite.uri and has_regex:
        return "rewrite may only contain one of URI or UriRegexRewrite"
    if not rewrite.uri and not has_regex and not rewrite.authority:
        return (
            "rewrite must specify at least one of URI, UriRegexRewrite, or authority. "
            "Only one of URI or UriRegexRewrite may be specified"
        )
    if has_regex:
        regex = rewrite.uri_regex_rewrite
        if not regex.match or not regex.rewrite:
            return (
                "UriRegexRewrite has errors: UriRegexRewrite requires both Rewrite and Match fields to be "
                "specified"
            )
        problem = check_regex(regex.match, "HTTPRewrite.UriRegexRewrite.Match")
        if problem is not None:
            return f"UriRegexRewrite has errors: {problem}"
    return None


def _authority_rewrite(route: nw.HTTPRoute, path: str, report: Report) -> None:
    """The authority may be rewritten in one place only: ``rewrite.authority`` or one header operation."""
    current = route.rewrite.authority
    request = route.headers.request
    for operation in ("set", "add"):
        for name, value in sorted(getattr(request, operation).items()):
            if not is_authority_header(name):
                continue
            if current:
                report.error(
                    at(path, "headers"),
                    f'authority header cannot be set multiple times: have "{current}", '
                    f'attempting to set "{value}"',
                )
                return
            current = value
