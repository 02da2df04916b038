"""The RBAC HTTP filters of a proxyless gRPC server's listeners, from its AuthorizationPolicies.

Istio's grpcgen (pilot/pkg/networking/grpcgen/lds.go ``buildInboundFilterChain``): an xDS-enabled
gRPC server runs Envoy's RBAC HTTP filter (gRFC A41), so its inbound connection manager gets, before
the router, a DENY filter named ``envoy.filters.http.rbac.DENY`` and then an ALLOW filter named
``envoy.filters.http.rbac`` (gRPC NACKs two filters of one name), each only when it has policies.
Only DENY and ALLOW policies are translated, as Istio does: istiod builds no ext_authz for gRPC,
so CUSTOM policies are not enforced on proxyless servers (logged), and gRPC ignores AUDIT's ``LOG``
action (gRFC A41).

The rules are the sidecar's (pilot.translate.authz_policies with ``grpc``): the same selection,
names, trust-domain aliases, a rule-less policy that never matches, and a policy that cannot be
translated denying everything. Principals match the peer certificate's URI SAN
(``authenticated.principal_name``, ``spiffe://...``), so they need the server's mTLS chain; a call in
plain text has no principal. A ``paths`` value is the full gRPC method name (``/pkg.Service/Method``).
``{*}``/``{**}`` paths go as the regular expression Envoy compiles the template to. What gRPC cannot
evaluate (JWT request principals and claims, ``connection.sni``, ``grpc-`` headers:
pilot.translate.grpc_rbac_support) drops an ALLOW rule and is left out of a DENY rule, so a deny
only widens.

Dry-run policies (``istio.io/dry-run``) go in ``shadow_rules``, which gRPC does not read: a dry-run
policy is not enforced. (Istio's grpcgen enforces them; pilot keeps the annotation's meaning.)
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial

from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2

from pilot.config.objects import ConfigKey
from pilot.translate import authz_policies as ap
from pilot.translate import authz_rules as r
from pilot.translate.authz_listeners import trust_domains, view_buckets
from pilot.translate.context import PushContext
from pilot.translate.listeners import typed
from pilot.translate.proxy import ProxyView

log = logging.getLogger("pilot.translate.authz")

ALLOW_FILTER = ap.HTTP_RBAC_FILTER  # Istio's RBACHTTPFilterName
DENY_FILTER = f"{ap.HTTP_RBAC_FILTER}.DENY"  # Istio's RBACHTTPFilterNameDeny


@dataclass(frozen=True, slots=True)
class ServerAuthorization:
    """The RBAC filters of a gRPC server's listeners, DENY then ALLOW (none without policies), and
    ``untranslatable``: the policies among them that failed closed, with why
    (pilot.translate.problems)."""

    filters: tuple[hcm_pb2.HttpFilter, ...] = ()
    untranslatable: Mapping[ConfigKey, str] = field(default_factory=dict)


def server_authorization(view: ProxyView, context: PushContext) -> ServerAuthorization:
    """``view``'s ServerAuthorization: built once per namespace and labels at a context (every view
    of them has the same)."""
    return context.derived(
        ("grpc-server-authorization", view.namespace, view.labels),
        partial(_build_server_authorization, view, context),
    )


def server_rbac_filters(view: ProxyView, context: PushContext) -> list[hcm_pb2.HttpFilter]:
    """The RBAC filters of ``view``'s server listeners, DENY then ALLOW (none without policies)."""
    return list(server_authorization(view, context).filters)


def _build_server_authorization(view: ProxyView, context: PushContext) -> ServerAuthorization:
    buckets = view_buckets(view, context)
    for policy in buckets.custom:
        log.warning(
            "AuthorizationPolicy %s/%s: CUSTOM is not enforced on proxyless gRPC servers",
            policy.namespace,
            policy.name,
        )
    enforced = ap.Buckets(deny=buckets.deny, allow=buckets.allow)
    if enforced.empty:
        return ServerAuthorization()
    trust = trust_domains(context)
    out = []
    denied: set[str] = set()
    for rules in ap.action_rules(enforced, trust, for_tcp=False, grpc=True):
        [config] = ap.http_filter_configs([rules])
        either = rules.rules if rules.rules is not None else rules.shadow
        assert either is not None
        name = DENY_FILTER if either.action == r.DENY else ALLOW_FILTER
        out.append(hcm_pb2.HttpFilter(name=name, typed_config=typed(config)))
        denied.update(config.rules.policies if either.action == r.DENY else ())
    # As for sidecars (pilot.translate.authz_listeners): the reason is found again only for the
    # (rare) policies whose deny-all is in the filter.
    failed = {
        policy.key: ap.untranslatable(policy, trust, grpc=True) or "unknown"
        for policy in (*enforced.deny, *enforced.allow)
        if ap.untranslatable_name(policy.namespace, policy.name) in denied
    }
    return ServerAuthorization(tuple(out), failed)


__all__ = [
    "ALLOW_FILTER",
    "DENY_FILTER",
    "ServerAuthorization",
    "server_authorization",
    "server_rbac_filters",
]
