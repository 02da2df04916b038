"""The authentication and authorization HTTP filters of a proxy's inbound (sidecar) or gateway
(router) HTTP connection managers, in front of fault, CORS and the router.

Istio's order (ISTIO-SIDECAR-AND-SECURITY.md §2.4; pilot/pkg/networking/core/listener_builder.go,
``buildInboundHTTPFilters`` and gateway.go): CUSTOM authorization (rbac shadow + ext_authz), then
``jwt_authn`` (RequestAuthentication), then the RBAC filters of AuthorizationPolicy (AUDIT, DENY,
ALLOW), which read the payload jwt_authn verified (pilot.translate.jwt_authn
``JWT_AUTHN_FILTER``/``JWT_PAYLOAD_METADATA_KEY``). Outbound listeners get none of them.
"""

from __future__ import annotations

from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2

from pilot.translate.context import PushContext
from pilot.translate.jwt_authn import jwt_filter_for
from pilot.translate.proxy import NodeType, ProxyView


def auth_filters(view: ProxyView, context: PushContext) -> list[hcm_pb2.HttpFilter]:
    """The filters, in order, for ``view``'s inbound (a sidecar) or gateway (a router) listeners."""
    out = []
    jwt = jwt_filter_for(view, context, gateway=view.type is NodeType.ROUTER)
    if jwt is not None:
        out.append(jwt)
    return out
