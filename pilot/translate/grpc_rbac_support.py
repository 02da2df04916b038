"""Which RBAC matchers a gRPC server evaluates as Envoy does (gRFC A41), for AuthorizationPolicies
translated for proxyless servers.

gRPC's RBAC HTTP filter (grpc-core src/core/xds/grpc/xds_http_rbac_filter.cc) reads principals
``any``, ``and_ids``/``or_ids``/``not_id``, ``authenticated.principal_name`` (the peer certificate's
URI SANs, then DNS SANs, then its subject), ``source_ip``/``direct_remote_ip``/``remote_ip`` (all the
peer address), ``header``, ``url_path`` and ``metadata``; permissions ``any``, ``and_rules``/
``or_rules``/``not_rule``, ``header``, ``url_path`` (the full method name, ``/pkg.Service/Method``),
``destination_ip``, ``destination_port``, ``metadata`` and ``requested_server_name``. Of those it
cannot evaluate as Envoy would:

- ``metadata``: gRPC has no Envoy dynamic metadata, so it never matches (and under a NOT always
  does): JWT request principals, audiences, presenters and claims, and
  ``experimental.envoy.filters.*`` conditions;
- ``requested_server_name``: gRPC compares it with the empty string (``connection.sni``);
- a ``header`` named ``:scheme`` or ``grpc-*``: gRPC NACKs the listener;
- anything else (``filter_state``, ``uri_template``): gRPC NACKs the listener ("invalid rule").

Istio's ``{*}``/``{**}`` paths, which Envoy matches as a ``uri_template``, are sent to gRPC as the
regular expression Envoy compiles the template to (Envoy's uri_template_internal.cc
``toRegexPattern``: ``*`` one segment of RFC 3986 path characters, ``**`` any number of them with
``/``), which gRPC's ``url_path`` evaluates the same way.

Such a condition raises ``NotOnGrpcError``, an ``HttpOnlyError``, so authz_model treats it as Istio's
``checkError`` treats an HTTP-only condition on a TCP chain: an ALLOW rule holding it is dropped
(the allow is narrower), a DENY rule loses the condition (the deny is wider). Istio's grpcgen
(lds.go ``buildRBAC``) sends these matchers as they are, so there a DENY on a request principal
never denies and a ``{*}`` path makes the server NACK; pilot fails closed instead.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TypeVar

from envoy.extensions.path.match.uri_template.v3 import uri_template_match_pb2
from envoy.type.matcher.v3 import path_pb2

from pilot.translate import authz_matchers as m
from pilot.translate import authz_rules as r

_M = TypeVar("_M", r.Principal, r.Permission)

# The oneof cases gRPC reads and evaluates as Envoy does; sets and NOTs are walked into.
_PRINCIPALS = frozenset(
    {"any", "authenticated", "source_ip", "direct_remote_ip", "remote_ip", "header", "url_path"}
)
_PERMISSIONS = frozenset({"any", "header", "url_path", "destination_ip", "destination_port"})
_SETS = {"and_ids": "ids", "or_ids": "ids", "and_rules": "rules", "or_rules": "rules"}
_NOTS = ("not_id", "not_rule")
# gRPC NACKs a header matcher on these (A41: ``grpc-`` headers are not metadata a policy may see).
_REJECTED_HEADER = ":scheme"
_REJECTED_HEADER_PREFIX = "grpc-"
# Envoy's kLiteral (RFC 3986 pchar without ``*``, ``/``), and its operators' expressions.
_PCHAR = "a-zA-Z0-9\\-._~%!$&'()+,;:@="
_GLOBS = {"**": f"[{_PCHAR}/]*", "*": f"[{_PCHAR}]+"}


class NotOnGrpcError(r.HttpOnlyError):
    """A condition a gRPC server cannot evaluate as Envoy does."""


def _header_problem(name: str) -> str | None:
    if name == _REJECTED_HEADER or name.startswith(_REJECTED_HEADER_PREFIX):
        return f"header {name!r} (gRPC rejects it)"
    return None


def problem(matcher: r.Principal | r.Permission) -> str | None:
    """Why gRPC cannot evaluate ``matcher`` (a principal or a permission, walked into), or None."""
    is_principal = isinstance(matcher, r.Principal)
    kind = matcher.WhichOneof("identifier" if is_principal else "rule")
    if kind in _SETS:
        members = getattr(getattr(matcher, kind), _SETS[kind])
        return next(filter(None, map(problem, members)), None)
    if kind in _NOTS:
        return problem(getattr(matcher, kind))
    if kind == "header":
        return _header_problem(matcher.header.name)
    supported = _PRINCIPALS if is_principal else _PERMISSIONS
    return None if kind in supported else f"{kind} (gRPC cannot evaluate it)"


def template_regex(template: str) -> str:
    """An Envoy path template (``/a/*/b/**``) as the regular expression Envoy matches it with."""
    return "".join(_GLOBS.get(part) or re.escape(part) for part in re.split(r"(\*\*|\*)", template))


def _evaluable(matcher: _M) -> _M:
    """``matcher``, with a ``uri_template`` permission as the ``url_path`` regex it stands for."""
    if isinstance(matcher, r.Permission) and matcher.WhichOneof("rule") == "uri_template":
        config = uri_template_match_pb2.UriTemplateMatchConfig()
        if matcher.uri_template.typed_config.Unpack(config):
            regex = m.regex(template_regex(config.path_template))
            return r.Permission(url_path=path_pb2.PathMatcher(path=regex))
    return matcher


def for_grpc(key: str, matchers: Sequence[_M]) -> list[_M]:
    """The matchers of condition ``key`` in the shapes gRPC evaluates; ``NotOnGrpcError`` when one
    of them cannot be evaluated by gRPC."""
    out = [_evaluable(matcher) for matcher in matchers]
    for matcher in out:
        found = problem(matcher)
        if found:
            raise NotOnGrpcError(f'"{key}" is not evaluated by gRPC servers: {found}')
    return out


__all__ = ["NotOnGrpcError", "for_grpc", "problem", "template_regex"]
