"""A DestinationRule's client ``tls`` and ``proxyProtocol`` as an outbound cluster's transport socket.

Istio's cluster_tls.go (``buildUpstreamClusterTLSContext``, ``constructUpstreamTLS``,
``setAutoSniAndAutoSanValidation``) and cluster_traffic_policy.go (``applyUpstreamProxyProtocol``):

* ``DISABLE``: plaintext.
* ``SIMPLE`` / ``MUTUAL``: an UpstreamTlsContext with ``sni``; without one, Envoy's ``auto_sni`` (the
  request's host), and ``auto_san_validation`` too when no ``subjectAltNames`` are given. The server is
  verified against ``caCertificates`` (empty or ``system``: the OS bundle, as Istio's agent resolves it
  on Istio's Debian-based proxy image, ``SYSTEM_CA_BUNDLE``), its certificate
  against ``subjectAltNames`` (a ServiceEntry's ``subjectAltNames`` when the rule has none),
  ``caCrl``; ``insecureSkipVerify`` verifies nothing. ``MUTUAL`` presents ``clientCertificate`` and
  ``privateKey``. HTTP/2 clusters offer ALPN ``h2``. Istio hands the files to its node agent as SDS
  secrets; pilot serves no SDS, so Envoy reads the files itself: they must exist on Envoy's host.
* ``credentialName`` (a Kubernetes secret) on a sidecar: Istio sends no TLS settings at all; pilot too.
* ``ISTIO_MUTUAL``: Istio's mesh certificates come from its CA through the node agent's SDS. pilot runs
  no CA, so the connection stays plaintext (validation warns about it).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TypeAlias

from envoy.config.core.v3 import base_pb2, proxy_protocol_pb2
from envoy.extensions.transport_sockets.proxy_protocol.v3 import upstream_proxy_protocol_pb2
from envoy.extensions.transport_sockets.raw_buffer.v3 import raw_buffer_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, tls_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2 as upstream_http
from envoy.type.matcher.v3 import string_pb2
from google.protobuf import any_pb2
from google.protobuf.message import Message

from pilot._gen import networking_pb2 as nw
from pilot.config.addresses import is_ip

log = logging.getLogger("pilot.translate.cluster_tls")

UpstreamTlsContext: TypeAlias = tls_pb2.UpstreamTlsContext
TransportSocket: TypeAlias = base_pb2.TransportSocket
SanMatcher: TypeAlias = common_pb2.SubjectAltNameMatcher
TLS_SOCKET = "envoy.transport_sockets.tls"
PROXY_PROTOCOL_SOCKET = "envoy.transport_sockets.upstream_proxy_protocol"
RAW_BUFFER_SOCKET = "envoy.transport_sockets.raw_buffer"
SYSTEM_CA = "system"
# Envoy's ``system_root_certs`` is not implemented (it would verify nothing), so "system" names the file.
SYSTEM_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
CONFIG_MAP_CREDENTIAL = "kubernetes-configmap://"
Mode = nw.ClientTLSSettings


def _typed(message: Message) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def _file(path: str) -> base_pb2.DataSource:
    return base_pb2.DataSource(filename=path)


def san_matcher(name: str) -> SanMatcher:
    """An exact SAN: a URI when it has a scheme (``spiffe://``), an IP, else a DNS name. (Istio uses the
    deprecated untyped ``match_subject_alt_names``, which matches any type.)"""
    if "://" in name:
        san_type = SanMatcher.URI
    elif is_ip(name):
        san_type = SanMatcher.IP_ADDRESS
    else:
        san_type = SanMatcher.DNS
    return SanMatcher(san_type=san_type, matcher=string_pb2.StringMatcher(exact=name))


def upstream_tls_context(
    tls: nw.ClientTLSSettings,
    http2: bool,
    options: upstream_http.HttpProtocolOptions,
    service_sans: Sequence[str] = (),
) -> UpstreamTlsContext | None:
    """The TLS context for ``tls`` (a ClientTLSSettings), or None for plaintext. ``options`` gets
    ``auto_sni`` / ``auto_san_validation`` when they apply."""
    if tls.mode in (Mode.DISABLE, Mode.ISTIO_MUTUAL):
        return None
    if tls.credential_name and not tls.credential_name.startswith(CONFIG_MAP_CREDENTIAL):
        return None
    out = UpstreamTlsContext(sni=tls.sni)
    skip_verify = tls.HasField("insecure_skip_verify") and tls.insecure_skip_verify.value
    if not tls.sni:
        options.upstream_http_protocol_options.auto_sni = True
        if not tls.subject_alt_names and not skip_verify:
            options.upstream_http_protocol_options.auto_san_validation = True
    sans = list(tls.subject_alt_names) or list(service_sans)
    common = out.common_tls_context
    if tls.mode == Mode.MUTUAL:
        common.tls_certificates.add(
            certificate_chain=_file(tls.client_certificate), private_key=_file(tls.private_key)
        )
    if skip_verify:
        common.validation_context.SetInParent()
    else:
        validation = common.validation_context
        ca = tls.ca_certificates or SYSTEM_CA
        validation.trusted_ca.CopyFrom(_file(SYSTEM_CA_BUNDLE if ca == SYSTEM_CA else ca))
        validation.match_typed_subject_alt_names.extend(san_matcher(name) for name in sans)
        if tls.ca_crl:
            validation.crl.CopyFrom(_file(tls.ca_crl))
    if http2:
        common.alpn_protocols.append("h2")
    return out


def transport_socket(
    tls_context: UpstreamTlsContext | None, proxy_protocol: nw.TrafficPolicy.ProxyProtocol | None
) -> TransportSocket | None:
    """The cluster's transport socket: TLS, wrapped in the upstream PROXY protocol when asked for."""
    inner = TransportSocket(name=TLS_SOCKET, typed_config=_typed(tls_context)) if tls_context else None
    if proxy_protocol is None:
        return inner
    if inner is None:
        inner = TransportSocket(name=RAW_BUFFER_SOCKET, typed_config=_typed(raw_buffer_pb2.RawBuffer()))
    wrapper = upstream_proxy_protocol_pb2.ProxyProtocolUpstreamTransport(
        config=proxy_protocol_pb2.ProxyProtocolConfig(version=proxy_protocol.version), transport_socket=inner
    )
    return TransportSocket(name=PROXY_PROTOCOL_SOCKET, typed_config=_typed(wrapper))


__all__ = ["SYSTEM_CA", "SYSTEM_CA_BUNDLE", "san_matcher", "transport_socket", "upstream_tls_context"]
