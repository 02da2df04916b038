"""The DownstreamTlsContext of a gateway server that terminates TLS, from certificate files.

Istio's ``BuildListenerTLSContext`` (pilot/pkg/networking/core/listener.go) and
``buildGatewayListenerTLSContext`` (gateway.go): ALPN ``h2,http/1.1``; a client certificate
required for MUTUAL and validated (when presented) for OPTIONAL_MUTUAL; min/max TLS version and
cipher suites (invalid and repeated ones dropped, Istio's ``FilterCipherSuites``). Istio hands the
files to its node agent as SDS resources; pilot serves no SDS, so Envoy reads the files itself
(``serverCertificate``, ``privateKey``, ``caCertificates``, ``caCrl`` must exist on Envoy's host).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeAlias

from envoy.config.core.v3 import base_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, tls_pb2
from google.protobuf import any_pb2, wrappers_pb2

from pilot._gen import networking_pb2 as nw
from pilot.config.validation.gateway import valid_cipher_suite
from pilot.translate.cluster_tls import san_matcher

DownstreamTlsContext: TypeAlias = tls_pb2.DownstreamTlsContext
TLS_TRANSPORT_SOCKET = "envoy.transport_sockets.tls"
ALPN_HTTP = ("h2", "http/1.1")  # Istio's util.ALPNHttp

TLS = nw.ServerTLSSettings
SanMatcher: TypeAlias = common_pb2.SubjectAltNameMatcher


def filter_cipher_suites(suites: Iterable[str]) -> list[str]:
    """Istio's FilterCipherSuites: valid names only, each once, in the order given."""
    return list(dict.fromkeys(s for s in suites if valid_cipher_suite(s)))


def _file(path: str) -> base_pb2.DataSource:
    return base_pb2.DataSource(filename=path)


def _validation_context(tls: nw.ServerTLSSettings) -> common_pb2.CertificateValidationContext:
    out = common_pb2.CertificateValidationContext(trusted_ca=_file(tls.ca_certificates))
    if tls.ca_crl:
        out.crl.CopyFrom(_file(tls.ca_crl))
    out.match_typed_subject_alt_names.extend(san_matcher(n) for n in tls.subject_alt_names)
    out.verify_certificate_spki.extend(tls.verify_certificate_spki)
    out.verify_certificate_hash.extend(tls.verify_certificate_hash)
    return out


def _tls_params(tls: nw.ServerTLSSettings) -> common_pb2.TlsParameters | None:
    """Istio's applyServerTLSSettings (the enums map one to one)."""
    params = common_pb2.TlsParameters()
    if tls.min_protocol_version != TLS.TLS_AUTO:
        params.tls_minimum_protocol_version = tls.min_protocol_version
    if tls.max_protocol_version != TLS.TLS_AUTO:
        params.tls_maximum_protocol_version = tls.max_protocol_version
    params.cipher_suites.extend(filter_cipher_suites(tls.cipher_suites))
    return params if params.ByteSize() else None


def downstream_tls_context(tls: nw.ServerTLSSettings) -> DownstreamTlsContext:
    """For a SIMPLE, MUTUAL or OPTIONAL_MUTUAL server with certificate files."""
    common = tls_pb2.CommonTlsContext(alpn_protocols=ALPN_HTTP)
    if tls.server_certificate or tls.private_key:
        common.tls_certificates.add(
            certificate_chain=_file(tls.server_certificate), private_key=_file(tls.private_key)
        )
    validate_client = tls.mode in (TLS.MUTUAL, TLS.OPTIONAL_MUTUAL)
    if validate_client and tls.ca_certificates:
        common.validation_context.CopyFrom(_validation_context(tls))
    params = _tls_params(tls)
    if params is not None:
        common.tls_params.CopyFrom(params)
    return DownstreamTlsContext(
        common_tls_context=common,
        require_client_certificate=wrappers_pb2.BoolValue(value=tls.mode == TLS.MUTUAL),
    )


def transport_socket(context: DownstreamTlsContext) -> base_pb2.TransportSocket:
    packed = any_pb2.Any()
    packed.Pack(context)
    return base_pb2.TransportSocket(name=TLS_TRANSPORT_SOCKET, typed_config=packed)


__all__ = [
    "ALPN_HTTP",
    "TLS_TRANSPORT_SOCKET",
    "downstream_tls_context",
    "filter_cipher_suites",
    "transport_socket",
]
