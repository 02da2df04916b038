"""The DownstreamTlsContext of a gateway server that terminates TLS, from certificate files.

Istio's ``BuildListenerTLSContext`` (pilot/pkg/networking/core/listener.go) and
``buildGatewayListenerTLSContext`` (gateway.go): ALPN ``h2,http/1.1``; a client certificate
required for MUTUAL and validated (when presented) for OPTIONAL_MUTUAL; min/max TLS version and
cipher suites (invalid and repeated ones dropped, Istio's ``FilterCipherSuites``).

The certificate is ``serverCertificate`` and ``privateKey`` (and ``caCertificates`` for the client's),
or, for ``credentialName``, the keys of that Secret as files in the certificate folder:
``ROOT/NS/NAME/tls.crt``, ``tls.key`` and ``ca.crt``, ROOT being Gateway API's folder
(``/etc/pilot/gateway-certs``, pilot.config.gateway_api.references) and NS the router's own namespace
(Istio reads a gateway's credential from the namespace of the gateway's workload). A router run by
``pilot agent`` (``ProxyView.mesh_certificates``) gets the files as the agent's SDS secrets
(``file-cert:CERT~KEY``, ``file-root:CA``), as istiod sends them: a missing file keeps only that
listener warming. Other routers get file data sources Envoy reads itself: the files must exist on
Envoy's host, and a missing one makes Envoy reject the whole listener update.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeAlias

from envoy.config.core.v3 import base_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, tls_pb2
from google.protobuf import any_pb2, wrappers_pb2

from pilot._gen import networking_pb2 as nw
from pilot.config.gateway_api.references import CERTIFICATE_ROOT
from pilot.config.validation.gateway import credential_secret_name, valid_cipher_suite
from pilot.translate.cluster_tls import file_cert_name, file_root_name, san_matcher, sds_secret_config

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


def credential_files(
    credential_name: str, namespace: str, root: str = CERTIFICATE_ROOT
) -> tuple[str, str, str]:
    """The (certificate, key, CA) files of the Secret ``credential_name`` names in ``namespace``."""
    name = credential_secret_name(credential_name) or credential_name
    folder = f"{root.rstrip('/')}/{namespace}/{name}"
    return f"{folder}/tls.crt", f"{folder}/tls.key", f"{folder}/ca.crt"


def _validation_context(tls: nw.ServerTLSSettings) -> common_pb2.CertificateValidationContext:
    out = common_pb2.CertificateValidationContext()
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


def downstream_tls_context(
    tls: nw.ServerTLSSettings, namespace: str = "", *, sds: bool = False
) -> DownstreamTlsContext:
    """For a SIMPLE, MUTUAL or OPTIONAL_MUTUAL server with certificate files or a ``credentialName``
    (a Secret of ``namespace``, the router's); ``sds``: the router has the agent's SDS."""
    if tls.credential_name:
        certificate, key, ca = credential_files(tls.credential_name, namespace)
    else:
        certificate, key, ca = tls.server_certificate, tls.private_key, tls.ca_certificates
    common = tls_pb2.CommonTlsContext(alpn_protocols=ALPN_HTTP)
    if certificate or key:
        if sds:
            common.tls_certificate_sds_secret_configs.append(
                sds_secret_config(file_cert_name(certificate, key))
            )
        else:
            common.tls_certificates.add(certificate_chain=_file(certificate), private_key=_file(key))
    validate_client = tls.mode in (TLS.MUTUAL, TLS.OPTIONAL_MUTUAL)
    if validate_client and ca:
        if sds:
            combined = common.combined_validation_context
            combined.default_validation_context.CopyFrom(_validation_context(tls))
            combined.validation_context_sds_secret_config.CopyFrom(sds_secret_config(file_root_name(ca)))
        else:
            common.validation_context.CopyFrom(_validation_context(tls))
            common.validation_context.trusted_ca.CopyFrom(_file(ca))
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
    "credential_files",
    "downstream_tls_context",
    "filter_cipher_suites",
    "transport_socket",
]
