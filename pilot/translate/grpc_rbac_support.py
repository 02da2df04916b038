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
- anything else (``uri_template``, Istio's ``{*}``/``{**}`` paths; ``filter_state``): gRPC NACKs the
  listener ("invalid rule").

Such a condition raises ``NotOnGrpcError``, an ``HttpOnlyError``, so authz_model treats it as Istio's
``checkError`` treats an HTTP-only condition on a TCP chain: an ALLOW rule holding it is dropped
(the allow is narrower), a DENY rule loses the condition (the deny is wider). Istio's grpcgen
(lds.go ``buildRBAC``) sends these matchers as they are, so there a DENY on a request principal
never denies and a ``{*}`` path makes the server NACK; pilot fails closed instead.
"""

from __future__ import annotations

from collections.abc import Sequence

from pilot.translate import authz_rules as r

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


def check(key: str, matchers: Sequence[r.Principal] | Sequence[r.Permission]) -> None:
    """Raise ``NotOnGrpcError`` when a matcher of condition ``key`` is one gRPC cannot evaluate."""
    for matcher in matchers:
        found = problem(matcher)
        if found:
            raise NotOnGrpcError(f'"{key}" is not evaluated by gRPC servers: {found}')


__all__ = ["NotOnGrpcError", "check", "problem"]
