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

The mode of each port is the workload's effective PeerAuthentication (pilot/translate/peer_authentication.py)
for its target port, and it picks a column of Istio's table (``getFilterChainMatchOptions``): STRICT
only the ``tls`` chains (plain text matches no chain of the port and is closed), PERMISSIVE both,
DISABLE plain text only. The port-0 passthrough set follows the workload-level mode; each
``portLevelMtls`` port no service (or Sidecar ingress) exposes gets a passthrough set of its own
matching that port (Istio's ``ForPassthrough``). The TLS inspector runs only where some chain of the
port matches ``tls`` (Istio's ``buildTLSInspector``).

A Sidecar ingress port that binds a listener of its own gets the chains of its mode there too.

Only a proxy whose bootstrap has the agent's ``sds-grpc`` gets mTLS chains
(``ProxyView.mesh_certificates``): another Envoy would reject a listener naming an SDS cluster it
lacks. Such a proxy cannot terminate mTLS, so PERMISSIVE and DISABLE give it plain text, and a port
whose mode is STRICT gets one chain that takes every connection to the BlackHoleCluster: closed, as
STRICT means, rather than open through the passthrough chains (Istio sends STRICT chains such a
proxy could never load; pilot fails closed and logs a warning instead).
"""

from __future__ import annotations

import logging

from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.extensions.filters.listener.tls_inspector.v3 import tls_inspector_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, tls_pb2
from google.protobuf import wrappers_pb2

from pilot.config.protocols import Protocol
from pilot.translate import cluster_tls, inbound, listeners, peer_authentication
from pilot.translate.context import PushContext
from pilot.translate.inbound import PLAINTEXT_HTTP_ALPN, RAW_BUFFER, ChainKind, ChainOptions, MatchOption
from pilot.translate.peer_authentication import EffectivePolicy, MtlsMode
from pilot.translate.proxy import InterceptionMode, ProxyView

log = logging.getLogger("pilot.translate.inbound_tls")

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


# Istio's inboundStrict{HTTP,TCP,}FilterChainMatchOptions: TLS only; on a sniffed port the mesh HTTP
# ALPNs go to the HCM and any other TLS to tcp_proxy.
_STRICT_HTTP = (MatchOption(ChainKind.HTTP, TLS, tls=True),)
_STRICT_TCP = (MatchOption(ChainKind.TCP, TLS, tls=True),)
_STRICT_AUTO = (MatchOption(ChainKind.HTTP, TLS, MTLS_HTTP_ALPN, tls=True), *_STRICT_TCP)
# STRICT on a proxy without mesh certificates: every connection to the port is closed.
_REFUSED = (MatchOption(ChainKind.TCP, "", refused=True),)


def permissive_options(protocol: Protocol, target_port: int = 0) -> tuple[MatchOption, ...]:
    """The chains of a port of ``protocol`` under PERMISSIVE, in Istio's order."""
    if protocol.is_http:
        return _PERMISSIVE_HTTP
    if protocol is Protocol.UNSUPPORTED:
        return _PERMISSIVE_AUTO
    return _PERMISSIVE_TCP


def strict_options(protocol: Protocol, target_port: int = 0) -> tuple[MatchOption, ...]:
    """The chains of a port of ``protocol`` under STRICT, in Istio's order."""
    if protocol.is_http:
        return _STRICT_HTTP
    if protocol is Protocol.UNSUPPORTED:
        return _STRICT_AUTO
    return _STRICT_TCP


def mode_options(
    mode: MtlsMode, protocol: Protocol, mesh_certificates: bool = True
) -> tuple[MatchOption, ...]:
    """Istio's ``getFilterChainMatchOptions``: the column of ``mode``; without mesh certificates
    plain text, and STRICT refused (module docstring)."""
    if not mesh_certificates:
        return _REFUSED if mode is MtlsMode.STRICT else inbound.match_options(protocol)
    if mode is MtlsMode.STRICT:
        return strict_options(protocol)
    if mode is MtlsMode.PERMISSIVE:
        return permissive_options(protocol)
    return inbound.match_options(protocol)


def policy_options(policy: EffectivePolicy, mesh_certificates: bool) -> ChainOptions:
    """The chains of each port under ``policy``: its port-level mode, else the workload's."""

    def options(protocol: Protocol, target_port: int) -> tuple[MatchOption, ...]:
        return mode_options(policy.for_port(target_port), protocol, mesh_certificates)

    return options


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


def tls_inspector(chains: list[inbound.FilterChain]) -> listener_components_pb2.ListenerFilter | None:
    """Istio's ``buildTLSInspector``: the TLS inspector if some chain matches ``tls``; when the
    passthrough (port 0) chains need it, turned off for the ports whose chains do not, else turned
    on only for the ports whose chains do."""
    needs: dict[int, bool] = {}
    for chain in chains:
        port = chain.filter_chain_match.destination_port.value
        needs[port] = needs.get(port, False) or chain.filter_chain_match.transport_protocol == TLS
    if not any(needs.values()):
        return None
    inspector = listener_components_pb2.ListenerFilter(
        name=TLS_INSPECTOR, typed_config=listeners.typed(tls_inspector_pb2.TlsInspector())
    )
    default = needs.get(0, False)
    ports = sorted(port for port, needed in needs.items() if port and needed != default)
    if ports:
        excluded = inbound.ports_excluded(ports)
        if default:
            inspector.filter_disabled.CopyFrom(excluded)
        else:
            inspector.filter_disabled.CopyFrom(
                listener_components_pb2.ListenerFilterChainMatchPredicate(not_match=excluded)
            )
    return inspector


def passthrough_ports(view: ProxyView, context: PushContext, policy: EffectivePolicy) -> tuple[int, ...]:
    """0, then the ``portLevelMtls`` ports no inbound port of the proxy exposes (Istio's
    ``needPerPortPassthroughFilterChain``), sorted."""
    exposed = {port.target_port for port in inbound.inbound_ports(view, context)}
    return (0, *(port for port, _ in policy.per_port if port not in exposed))


def virtual_inbound_listener(view: ProxyView, context: PushContext) -> listener_pb2.Listener:
    """``virtualInbound`` for ``view``, each port's chains by its peer authentication mode, the TLS
    inspector after original_dst where a chain matches TLS."""
    policy = peer_authentication.of_view(view, context)
    options, sockets = _chain_settings(view, context, policy)
    ports = passthrough_ports(view, context, policy)
    listener = inbound.virtual_inbound_listener(view, context, options, sockets, ports)
    _add_tls_inspector(listener, 1)  # Istio's order: original_dst, tls_inspector, http_inspector
    return listener


def _chain_settings(
    view: ProxyView, context: PushContext, policy: EffectivePolicy
) -> tuple[ChainOptions, inbound.TlsSocket | None]:
    if not view.mesh_certificates and MtlsMode.STRICT in policy.modes:
        log.warning(
            "%s: PeerAuthentication STRICT, but the proxy has no mesh certificate (it runs without pilot "
            "agent, node metadata SDS): the STRICT ports refuse every connection",
            view,
        )
    sockets = tls_sockets(context.mesh.trust_domain) if view.mesh_certificates else None
    return policy_options(policy, view.mesh_certificates), sockets


def _add_tls_inspector(listener: listener_pb2.Listener, position: int) -> None:
    inspector = tls_inspector(list(listener.filter_chains))
    if inspector is not None:
        listener.listener_filters.insert(position, inspector)


def inbound_listeners(view: ProxyView, context: PushContext) -> list[listener_pb2.Listener]:
    """inbound.py's ``inbound_listeners`` with peer authentication: ``virtualInbound`` in REDIRECT
    mode, then the Sidecar ingress listeners that bind, each port's chains by its mode (Istio's
    inboundCustomListener takes the same ``ForPort`` settings)."""
    out = []
    if view.interception_mode is InterceptionMode.REDIRECT:
        out.append(virtual_inbound_listener(view, context))
    if not any(port.binds for port in inbound.inbound_ports(view, context)):
        return out
    options, sockets = _chain_settings(view, context, peer_authentication.of_view(view, context))
    bound = inbound.bound_inbound_listeners(view, context, options, sockets)
    for listener in bound:
        _add_tls_inspector(listener, 0)
    return out + bound


__all__ = [
    "ALL_MESH_ALPN",
    "downstream_tls_context",
    "mode_options",
    "inbound_listeners",
    "permissive_options",
    "strict_options",
    "tls_inspector",
    "tls_sockets",
    "virtual_inbound_listener",
]
