"""Mutual TLS on an intercepted sidecar's inbound side: Istio's PERMISSIVE ``virtualInbound``.

Istio's default peer authentication is PERMISSIVE: every inbound port (and the passthrough set) takes
both mTLS from other sidecars and plain text from workloads without one. Its chains
(filterchain_options.go ``inboundPermissive*FilterChainMatchWithMxcOptions``, ISTIO-SIDECAR-AND-SECURITY.md
§2.3) add to the plain-text ones of pilot/translate/inbound.py:

* an HTTP port: TLS with one of Istio's mesh ALPNs (``istio``, ``istio-peer-exchange``, ``istio-http/*``,
  ``istio-h2``) → the HTTP connection manager behind mTLS; plain text as before;
* a TCP port: the same for tcp_proxy, then any other TLS (the workload's own, passed through as is);
* a sniffed port: mTLS with ``istio-http/*`` → HCM, plain HTTP → HCM, mTLS with ``istio-peer-exchange``
  or ``istio`` → tcp_proxy, plain text → tcp_proxy, other TLS → tcp_proxy.

The mTLS chains terminate with Istio's ``BuildInboundTLS``: the mesh certificate ``default`` and root
``ROOTCA`` from the agent's SDS (pilot/translate/cluster_tls.py ``mesh_common_context``), a client
certificate in the mesh's trust domain required, TLS 1.2 to 1.3 with Istio's ciphers, ALPN ``h2``,
``http/1.1`` (and ``istio-peer-exchange`` first on TCP chains). The HCM forwards the peer's SPIFFE id in
``x-forwarded-client-cert`` (inbound.py ``inbound_http_connection_manager``). The TLS inspector, after
original_dst, reads the ClientHello's ALPN the chains match on.

Only a proxy whose bootstrap has the agent's ``sds-grpc`` gets this (``ProxyView.mesh_certificates``):
another Envoy would reject a listener naming an SDS cluster it lacks. The mode is fixed at PERMISSIVE;
PeerAuthentication STRICT and DISABLE select among the same options (``permissive_options`` is one
column of Istio's table).
"""

from __future__ import annotations

from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.extensions.filters.listener.tls_inspector.v3 import tls_inspector_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, tls_pb2
from google.protobuf import wrappers_pb2

from pilot.config.protocols import Protocol
from pilot.translate import cluster_tls, inbound, listeners
from pilot.translate.context import PushContext
from pilot.translate.inbound import PLAINTEXT_HTTP_ALPN, RAW_BUFFER, ChainKind, MatchOption
from pilot.translate.proxy import InterceptionMode, ProxyView

TLS = "tls"  # Envoy's transport protocol when the TLS inspector saw a ClientHello
TLS_INSPECTOR = "envoy.filters.listener.tls_inspector"
# Istio's listener.go ALPN sets: what a mesh client offers, by the protocol of its connection.
MTLS_HTTP_ALPN = ("istio-http/1.0", "istio-http/1.1", "istio-h2")
ALL_MESH_ALPN = ("istio", "istio-peer-exchange", *MTLS_HTTP_ALPN)
MTLS_TCP_ALPN = ("istio-peer-exchange", "istio")
# What the server offers back (util.go ALPNHttp, ALPNDownstreamWithMxc): never ``istio``, which would
# hide the application protocol.
DOWNSTREAM_HTTP_ALPN = ("h2", "http/1.1")
DOWNSTREAM_TCP_ALPN = ("istio-peer-exchange", *DOWNSTREAM_HTTP_ALPN)
# Istio's authn SupportedCiphers (pilot/pkg/security/authn/utils/utils.go), for TLS 1.2.
CIPHERS = (
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "AES256-GCM-SHA384",
    "AES128-GCM-SHA256",
)

_PERMISSIVE_HTTP = (
    MatchOption(ChainKind.HTTP, TLS, ALL_MESH_ALPN, tls=True),
    MatchOption(ChainKind.HTTP, RAW_BUFFER),
)
_PERMISSIVE_TCP = (
    MatchOption(ChainKind.TCP, TLS, ALL_MESH_ALPN, tls=True),
    MatchOption(ChainKind.TCP, TLS),
    MatchOption(ChainKind.TCP, RAW_BUFFER),
)
_PERMISSIVE_AUTO = (
    MatchOption(ChainKind.HTTP, TLS, MTLS_HTTP_ALPN, tls=True),
    MatchOption(ChainKind.HTTP, RAW_BUFFER, PLAINTEXT_HTTP_ALPN),
    MatchOption(ChainKind.TCP, TLS, MTLS_TCP_ALPN, tls=True),
    MatchOption(ChainKind.TCP, RAW_BUFFER),
    MatchOption(ChainKind.TCP, TLS),
)


def permissive_options(protocol: Protocol) -> tuple[MatchOption, ...]:
    """The chains of a port of ``protocol`` under PERMISSIVE, in Istio's order."""
    if protocol.is_http:
        return _PERMISSIVE_HTTP
    if protocol is Protocol.UNSUPPORTED:
        return _PERMISSIVE_AUTO
    return _PERMISSIVE_TCP


def downstream_tls_context(kind: ChainKind, trust_domain: str) -> tls_pb2.DownstreamTlsContext:
    """Istio's ``BuildInboundTLS``: the mesh certificate, the mesh root, a client certificate required,
    whose SPIFFE id is in the mesh's trust domain (``ApplyToCommonTLSContext``: a URI prefix)."""
    alpn = DOWNSTREAM_HTTP_ALPN if kind is ChainKind.HTTP else DOWNSTREAM_TCP_ALPN
    common = cluster_tls.mesh_common_context(alpn, ())
    common.combined_validation_context.default_validation_context.match_subject_alt_names.add(
        prefix=f"{cluster_tls.SPIFFE_PREFIX}{trust_domain}/"
    )
    common.tls_params.cipher_suites.extend(CIPHERS)
    common.tls_params.tls_minimum_protocol_version = common_pb2.TlsParameters.TLSv1_2
    return tls_pb2.DownstreamTlsContext(
        common_tls_context=common, require_client_certificate=wrappers_pb2.BoolValue(value=True)
    )


def tls_sockets(trust_domain: str) -> inbound.TlsSocket:
    """The transport socket of an mTLS chain, by what the chain runs (built once per kind)."""
    sockets = {
        kind: base_pb2.TransportSocket(
            name=cluster_tls.TLS_SOCKET,
            typed_config=listeners.typed(downstream_tls_context(kind, trust_domain)),
        )
        for kind in ChainKind
    }
    return sockets.__getitem__


def tls_inspector() -> listener_components_pb2.ListenerFilter:
    return listener_components_pb2.ListenerFilter(
        name=TLS_INSPECTOR, typed_config=listeners.typed(tls_inspector_pb2.TlsInspector())
    )


def virtual_inbound_listener(view: ProxyView, context: PushContext) -> listener_pb2.Listener:
    """``virtualInbound`` for ``view``: PERMISSIVE with the TLS inspector after original_dst when the
    proxy has mesh certificates, plain text (inbound.py's) otherwise."""
    if not view.mesh_certificates:
        return inbound.virtual_inbound_listener(view, context)
    sockets = tls_sockets(context.mesh.trust_domain)
    listener = inbound.virtual_inbound_listener(view, context, permissive_options, sockets)
    # Istio's populateListenerFilters order: original_dst, tls_inspector, http_inspector.
    listener.listener_filters.insert(1, tls_inspector())
    return listener


def inbound_listeners(view: ProxyView, context: PushContext) -> list[listener_pb2.Listener]:
    """inbound.py's ``inbound_listeners`` with this ``virtualInbound``: it in REDIRECT mode, then the
    Sidecar ingress listeners that bind (plain text: Istio's custom ingress listeners take mTLS from
    peer authentication, which pilot does not read yet)."""
    out = []
    if view.interception_mode is InterceptionMode.REDIRECT:
        out.append(virtual_inbound_listener(view, context))
    return out + inbound.bound_inbound_listeners(view, context)


__all__ = [
    "ALL_MESH_ALPN",
    "downstream_tls_context",
    "inbound_listeners",
    "permissive_options",
    "tls_inspector",
    "tls_sockets",
    "virtual_inbound_listener",
]
