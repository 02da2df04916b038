"""The RBAC filters of a proxy's AuthorizationPolicies, placed in its inbound and gateway listeners.

Istio's authz plugin (pilot/pkg/networking/plugin/authz/authorization.go) and the filter stacks of
ISTIO-SIDECAR-AND-SECURITY.md §2.4 (listener_builder.go ``buildHTTPConnectionManager``): in an HTTP
connection manager the CUSTOM filters (RBAC shadow + ext_authz, pilot.translate.authz_custom) come
first, before ``envoy.filters.http.jwt_authn``; the RBAC HTTP filters of AUDIT, DENY and ALLOW come
after it (its verified payload is what request principals and claims match) and before fault, CORS
and the router; on a TCP chain the CUSTOM and then the other network RBAC filters come right before
``tcp_proxy``. Only inbound listeners (``traffic_direction: INBOUND``: ``virtualInbound`` and a
Sidecar's bound ingress listeners) and a router's listeners take them; the loop guard chain
(``virtualInbound-blackhole``) does not.

The listeners are built first and the filters placed afterwards, so this is the one place that knows
where authorization sits in a chain; whatever filters other features put in front stay in front.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial

from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_components_pb2 as lc
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2

from pilot.config.objects import ConfigKey
from pilot.translate import authz_custom
from pilot.translate import authz_policies as ap
from pilot.translate import authz_rules as r
from pilot.translate.context import PushContext
from pilot.translate.ext_authz import ExtAuthzProvider, resolve_providers
from pilot.translate.inbound import BLACKHOLE_CHAIN
from pilot.translate.jwt_authn import JWT_AUTHN_FILTER
from pilot.translate.listeners import HCM_FILTER, typed
from pilot.translate.proxy import NodeType, ProxyView
from pilot.translate.tcp_routes import TCP_PROXY_FILTER


class AuthorizationFilters:
    """The HTTP and network RBAC filters of one set of policies, built once and placed in any number
    of listeners; ``untranslatable``: the policies among them that failed closed, with why."""

    def __init__(
        self,
        buckets: ap.Buckets,
        trust: r.TrustDomains,
        providers: Mapping[str, ExtAuthzProvider] | None = None,
    ) -> None:
        known = providers or {}
        http = ap.http_filter_configs(ap.action_rules(buckets, trust, for_tcp=False))
        network = ap.network_filter_configs(ap.action_rules(buckets, trust, for_tcp=True))
        self.custom_http = authz_custom.http_filters(buckets.custom, trust, known)
        self.http = [hcm_pb2.HttpFilter(name=ap.HTTP_RBAC_FILTER, typed_config=typed(c)) for c in http]
        self.network = [
            *authz_custom.network_filters(buckets.custom, trust, known),
            *(lc.Filter(name=ap.NETWORK_RBAC_FILTER, typed_config=typed(c)) for c in network),
        ]
        # The reasons are found again only for the (rare) policies whose deny-all is in a filter;
        # CUSTOM policies (rare too) are asked directly, their deny sits in authz_custom's filters.
        built = {name for config in (*http, *network) for name in config.rules.policies}
        self.untranslatable: dict[ConfigKey, str] = {}
        for policy in buckets.custom:
            reason = ap.untranslatable(policy, trust)
            if reason is not None:
                self.untranslatable[policy.key] = reason
        for policy in (*buckets.audit, *buckets.deny, *buckets.allow):
            if ap.untranslatable_name(policy.namespace, policy.name) in built:
                self.untranslatable[policy.key] = ap.untranslatable(policy, trust) or "unknown"

    def apply(self, listeners: Sequence[listener_pb2.Listener], inbound_only: bool = True) -> None:
        """Place the filters in every chain of ``listeners`` (of the inbound ones, with ``inbound_only``)."""
        if not self.custom_http and not self.http and not self.network:
            return
        for listener in listeners:
            if inbound_only and listener.traffic_direction != base_pb2.INBOUND:
                continue
            for chain in listener.filter_chains:
                if chain.name != BLACKHOLE_CHAIN:
                    self._apply_chain(chain)
            if listener.HasField("default_filter_chain"):
                self._apply_chain(listener.default_filter_chain)

    def _apply_chain(self, chain: lc.FilterChain) -> None:
        filters = chain.filters
        for index, network_filter in enumerate(filters):
            if network_filter.name == HCM_FILTER and (self.http or self.custom_http):
                manager = hcm_pb2.HttpConnectionManager()
                network_filter.typed_config.Unpack(manager)
                _insert_http(manager, self.custom_http, self.http)
                network_filter.typed_config.Pack(manager)
            elif network_filter.name == TCP_PROXY_FILTER and self.network:
                for offset, rbac in enumerate(self.network):
                    filters.insert(index + offset, rbac)
                return


def _insert_http(
    manager: hcm_pb2.HttpConnectionManager,
    custom: Sequence[hcm_pb2.HttpFilter],
    rbac: Sequence[hcm_pb2.HttpFilter],
) -> None:
    """``custom`` first; ``rbac`` after the last jwt_authn filter if there is one, else right after
    ``custom`` (Istio: CUSTOM and jwt_authn are the only filters before RBAC on an inbound or gateway
    connection manager)."""
    names = [f.name for f in manager.http_filters]
    at = max((i + 1 for i, name in enumerate(names) if name == JWT_AUTHN_FILTER), default=0)
    existing = list(manager.http_filters)
    del manager.http_filters[:]
    manager.http_filters.extend([*custom, *existing[:at], *rbac, *existing[at:]])


def view_buckets(view: ProxyView, context: PushContext) -> ap.Buckets:
    """The policies that select ``view`` at ``context``, by action."""
    return ap.applicable(
        context.authorization_policies, view.namespace, view.labels, context.mesh.root_namespace
    )


def trust_domains(context: PushContext) -> r.TrustDomains:
    """The mesh trust domain and its aliases, as principals are rewritten for."""
    return r.TrustDomains((context.mesh.trust_domain, *context.mesh.trust_domain_aliases))


def authorization_filters(view: ProxyView, context: PushContext) -> AuthorizationFilters:
    """The RBAC filters of the policies that select ``view`` at ``context``: built once per namespace
    and labels at a context (every view of them has the same), and read again by
    pilot.translate.problems."""
    return context.derived(
        ("authorization-filters", view.namespace, view.labels),
        partial(build_authorization_filters, view, context),
    )


def build_authorization_filters(view: ProxyView, context: PushContext) -> AuthorizationFilters:
    """``authorization_filters`` without the memo (what it costs: bench.authorization)."""
    mesh = context.mesh
    buckets = view_buckets(view, context)
    trust = trust_domains(context)
    if not buckets.custom:
        return AuthorizationFilters(buckets, trust)
    providers = context.derived(
        "ext-authz-providers", lambda: resolve_providers(mesh.extension_providers, context.services)
    )
    return AuthorizationFilters(buckets, trust, providers)


def apply_authorization(
    view: ProxyView, context: PushContext, listeners: Sequence[listener_pb2.Listener]
) -> None:
    """Place the view's RBAC filters: in every listener of a router, in the inbound ones of a sidecar."""
    authorization_filters(view, context).apply(listeners, inbound_only=view.type is not NodeType.ROUTER)


__all__ = [
    "AuthorizationFilters",
    "apply_authorization",
    "authorization_filters",
    "build_authorization_filters",
    "trust_domains",
    "view_buckets",
]
