"""HTTP-level checks: protocols, header names and values, string matches and (RE2) regexes.

Ported from Istio's webhook validation (``pkg/config/validation/validation.go``,
``header_value_validator.go``, ``pkg/config/protocol/instance.go``) with Istio's messages.
"""

from __future__ import annotations

import re
import warnings

import re2  # type: ignore[import-untyped]  # google-re2: the RE2 Envoy compiles regexes with

from pilot._gen import networking_pb2 as nw
from pilot.config import protocols

# --- protocols and HTTP ---------------------------------------------------------------------------------

HTTP_PROTOCOLS = frozenset({"HTTP", "HTTP2", "HTTP_PROXY", "GRPC", "GRPC-Web"})
TLS_PROTOCOLS = frozenset({"HTTPS", "TLS"})
TCP_PROTOCOLS = frozenset({"TCP", "HTTPS", "TLS", "Mongo", "Redis", "MySQL"})


def parse_protocol(name: str) -> str | None:
    """Istio's canonical protocol name for ``name`` (case-insensitive), or None if unsupported."""
    protocol = protocols.parse_protocol(name)
    return None if protocol is protocols.Protocol.UNSUPPORTED else protocol.value


def check_protocol(name: str) -> str | None:
    if name and parse_protocol(name) is None:
        return f"unsupported protocol: {name}"
    return None


_HEADER_NAME_RE = re.compile(r"[-_A-Za-z0-9]+")
_HEADER_VALUE_RE = re.compile(r"[^\x00-\x08\x0a-\x1f\x7f]*")
JWT_CLAIM_PREFIXES = ("@request.auth.claims.", "@request.auth.claims[")


def is_jwt_claim_route(name: str) -> bool:
    return any(name.startswith(prefix) and len(name) > len(prefix) for prefix in JWT_CLAIM_PREFIXES)


def check_header_name(name: str, allow_jwt_claim: bool = False) -> str | None:
    if not name:
        return "header name cannot be empty"
    if allow_jwt_claim and is_jwt_claim_route(name):
        return None
    if _HEADER_NAME_RE.fullmatch(name) is None:
        return f"header name {name} is not a valid header name"
    return None


def is_internal_header(name: str) -> bool:
    return name.startswith(":") or name.lower() == "host"


def is_authority_header(name: str) -> bool:
    return name.lower() in (":authority", "host")


def check_header_operation_name(name: str, allow_authority: bool) -> str | None:
    """A header to add/set (``allow_authority``: request set/add) or to remove / set on responses."""
    if not name:
        return "header name cannot be empty"
    if allow_authority:
        if is_internal_header(name) and not is_authority_header(name):
            return f'invalid header "{name}": header cannot have ":" prefix'
        return None
    if name.lower() == "host":
        return f'invalid header "{name}": cannot set Host header'
    if is_internal_header(name):
        return f'invalid header "{name}": header cannot have ":" prefix'
    return None


def check_header_value(value: str) -> str | None:
    """Istio's ``ValidateHTTPHeaderValue``: no control characters, well-formed ``%VAR%`` expressions."""
    if _HEADER_VALUE_RE.fullmatch(value) is None:
        return f"header value configuration {value} is invalid"
    problem = _header_value_expressions(value)
    return None if problem is None else f"header value configuration: {problem}"


def _header_value_expressions(value: str) -> str | None:
    # A port of Envoy's header_parser.cc state machine, as in Istio's header_value_validator.go.
    literal, name, expect_array, expect_string, string, delimiter, args_end, var_end = range(8)
    state, pos = literal, 0
    while pos < len(value):
        ch = value[pos]
        has_next = pos + 1 < len(value)
        if state == literal:
            if ch == "%":
                if not has_next:
                    return "invalid header configuration. Un-escaped %"
                if value[pos + 1] == "%":
                    pos += 1
                else:
                    state = name
        elif state == name:
            if ch == "%":
                state = literal
            elif ch == "(":
                state = expect_array
        elif state == expect_array:
            if ch == "[":
                state = expect_string
            elif ch != " ":
                state = string
        elif state == delimiter:
            if ch == ",":
                state = expect_string
            elif ch == "]":
                state = args_end
            elif ch != " ":
                return "invalid header configuration. Expecting ',', ']', or whitespace"
        elif state == expect_string:
            if ch == '"':
                state = string
            elif ch != " ":
                return "invalid header configuration. Expecting '\"'"
        elif state == string:
            if ch == "\\":
                if not has_next:
                    return "invalid header configuration. Un-terminated backslash in JSON string"
                pos += 1
            elif ch == ")":
                state = var_end
            elif ch == '"':
                state = delimiter
        elif state == args_end:
            if ch == ")":
                state = var_end
            elif ch != " ":
                return "invalid header configuration. Expecting ')' or whitespace"
        elif state == var_end:
            if ch == "%":
                state = literal
            elif ch != " ":
                return "invalid header configuration. Expecting '%' or whitespace after"
        pos += 1
    if state != literal:
        return f"invalid header configuration. Un-terminated variable expression '{value}'"
    return None


# --- regular expressions (Istio's checks with Python's re, then RE2 itself) ---------------------------------

_RE2_ONLY = re.compile(r"\\[pP]\{[^}]*\}|\\[pP][A-Za-z]|\[:\^?[a-z]+:\]|\\z|\\Q|\\E|\\C")
_RE2_NAMED_GROUP = re.compile(r"\(\?<(?=[A-Za-z_])")
_PERL_ONLY = re.compile(r"\(\?<?[=!]|\(\?P=|\\[1-9]|\(\?>")


def check_regex(regex: str, where: str) -> str | None:
    """Istio compiles with RE2 (Go's regexp). Python's ``re`` is close but not the same: RE2-only
    syntax (``\\pL``, ``[[:alpha:]]``, ``\\z``) is neutralised before compiling, and Perl features RE2
    lacks (lookaround, backreferences, atomic groups) are rejected up front."""
    if len(regex) > 1024:
        return f'"{where}": regex is too large, max length allowed is 1024'
    suffix = "; Istio uses RE2 style regex-based match (https://github.com/google/re2/wiki/Syntax)"
    perl = _PERL_ONLY.search(regex)
    if perl is not None:
        return (
            f'"{where}": error parsing regexp: invalid or unsupported Perl syntax: `{perl.group(0)}`{suffix}'
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            re.compile(_RE2_NAMED_GROUP.sub("(?P<", _RE2_ONLY.sub("a", regex)))
    except (re.error, RecursionError, OverflowError, ValueError) as err:
        return f'"{where}": error parsing regexp: {err}{suffix}'
    return check_program_size(regex, where)


# Envoy refuses a regex whose compiled RE2 program is larger than the runtime key
# ``re2.max_program_size.error_level`` (default 100; pilot's bootstrap keeps it) and NACKs the whole
# response that carries it. https://www.envoyproxy.io/docs/envoy/latest/api-v3/type/matcher/v3/regex.proto
ENVOY_MAX_PROGRAM_SIZE = 100
_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # Envoy compiles with RE2::Quiet; the error is returned, not logged


def check_program_size(regex: str, where: str, limit: int = ENVOY_MAX_PROGRAM_SIZE) -> str | None:
    """Compile ``regex`` with RE2 as Envoy does and predict its rejection: a syntax RE2 refuses,
    or a program larger than Envoy's limit."""
    try:
        size = int(re2.compile(regex, _RE2_OPTIONS).programsize)
    except re2.error as err:
        detail = err.args[0].decode() if err.args and isinstance(err.args[0], bytes) else str(err)
        return f'"{where}": error parsing regexp: {detail} (RE2, as Envoy compiles it)'
    if size > limit:
        return (
            f'"{where}": regex RE2 program size of {size} > max program size of {limit} that Envoy '
            "accepts (its re2.max_program_size.error_level); Envoy would reject the route: "
            "simplify the regex (fewer alternatives or repetitions)"
        )
    return None


def check_string_match(match: nw.StringMatch, where: str, allow_empty_prefix: bool = False) -> str | None:
    """A ``StringMatch``: a non-empty prefix (the uri may match the empty prefix), a valid regex."""
    kind = match.WhichOneof("match_type")
    if kind == "prefix" and not match.prefix and not allow_empty_prefix:
        return f'"{where}": prefix string match should not be empty'
    if kind == "regex":
        if not match.regex:
            return f'"{where}": regex string match should not be empty'
        return check_regex(match.regex, where)
    return None
