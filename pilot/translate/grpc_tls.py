"""mTLS for proxyless gRPC: TLS contexts that name the bootstrap's certificate provider.

gRPC's xDS credentials (gRFC A29) take their key, certificate and roots from a certificate provider
instance of the bootstrap (``certificate_providers``), never from SDS or file data sources; Istio's
agent writes a ``file_watcher`` provider named ``default`` over the files it keeps current
(pilot.grpc_bootstrap). Istio's grpcgen (grpcgen.go ``buildCommonTLSContext``) names that instance
for both the identity (certificate ``default``) and the roots (``ROOTCA``), in the current fields
(``tls_certificate_provider_instance``, ``default_validation_context.ca_certificate_provider_instance``)
and the deprecated ones older gRPC releases read (``tls_certificate_certificate_provider_instance``,
``combined_validation_context.validation_context_certificate_provider_instance``); gRPC reads the
current ones first (grpc-core xds_common_types_parser.cc).

Left out, because gRPC NACKs them (xds_common_types_parser.cc, xds_listener_parser.cc):
``tls_params``, SDS secret configs, inline certificates, CRLs; and on a server,
``match_subject_alt_names``. gRPC ignores ALPN and SNI settings, so none are sent.

Client side (grpcgen cds.go ``applyTLS``): only a DestinationRule's ``ISTIO_MUTUAL`` makes a
cluster's transport socket; the server is checked against the destination's SPIFFE ids. There is
no auto mTLS: gRPC reads a cluster's ``transport_socket`` only, never ``transport_socket_matches``
(xds_cluster_parser.cc), and a gRPC client offers ALPN ``h2``, which an Envoy sidecar's PERMISSIVE
mTLS chains (matched on Istio's ALPNs) do not take.

Server side (grpcgen lds.go ``buildInboundFilterChains``): one chain. STRICT is mTLS with a client
certificate required; DISABLE is plain text; PERMISSIVE is plain text, or mTLS when the workload
carries ``security.istio.io/tlsMode: istio`` (the label says its clients send mTLS). A gRPC server
cannot take both on one port: its filter chain match reads no TLS inspector (a chain matching
``transport_protocol: tls`` never matches, gRFC A36).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from typing import Final

from envoy.config.core.v3 import base_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, tls_pb2
from envoy.type.matcher.v3 import string_pb2
from google.protobuf import wrappers_pb2

from pilot.translate import cluster_tls, listeners
from pilot.translate.endpoints import TLS_MODE_LABEL

# The provider instance Istio's agent writes into the gRPC bootstrap, and the certificate names.
PROVIDER_INSTANCE: Final = "default"
IDENTITY_CERTIFICATE: Final = cluster_tls.SDS_CERTIFICATE  # "default"
ROOT_CERTIFICATE: Final = cluster_tls.SDS_ROOT  # "ROOTCA"


class MtlsMode(enum.Enum):
    """A PeerAuthentication mode for one server port (Istio's MutualTLSMode, without unknown)."""

    DISABLE = "DISABLE"
    PERMISSIVE = "PERMISSIVE"
    STRICT = "STRICT"


ModeForPort = Callable[[int], MtlsMode]


def permissive(_port: int) -> MtlsMode:
    """Istio's default when no PeerAuthentication applies."""
    return MtlsMode.PERMISSIVE


def server_requires_mtls(mode: MtlsMode, workload_labels: Mapping[str, str]) -> bool:
    """Whether a proxyless server's listener terminates mTLS (grpcgen ``buildInboundFilterChains``):
    STRICT, or PERMISSIVE on a workload labelled ``security.istio.io/tlsMode: istio``."""
    if mode is MtlsMode.STRICT:
        return True
    return mode is MtlsMode.PERMISSIVE and workload_labels.get(TLS_MODE_LABEL) == cluster_tls.TLS_MODE_ISTIO


def common_tls_context(sans: Sequence[str] = ()) -> tls_pb2.CommonTlsContext:
    """Istio's ``buildCommonTLSContext``: identity and roots from provider ``default``, the peer
    checked against ``sans`` (exact; any SAN type) when given."""
    identity = common_pb2.CertificateProviderPluginInstance(
        instance_name=PROVIDER_INSTANCE, certificate_name=IDENTITY_CERTIFICATE
    )
    roots = common_pb2.CertificateProviderPluginInstance(
        instance_name=PROVIDER_INSTANCE, certificate_name=ROOT_CERTIFICATE
    )
    Deprecated = tls_pb2.CommonTlsContext.CertificateProviderInstance
    common = tls_pb2.CommonTlsContext(
        tls_certificate_provider_instance=identity,
        tls_certificate_certificate_provider_instance=Deprecated(
            instance_name=PROVIDER_INSTANCE, certificate_name=IDENTITY_CERTIFICATE
        ),
    )
    combined = common.combined_validation_context
    combined.default_validation_context.ca_certificate_provider_instance.CopyFrom(roots)
    combined.validation_context_certificate_provider_instance.CopyFrom(
        Deprecated(instance_name=PROVIDER_INSTANCE, certificate_name=ROOT_CERTIFICATE)
    )
    combined.default_validation_context.match_subject_alt_names.extend(
        string_pb2.StringMatcher(exact=name) for name in sans
    )
    return common


def upstream_socket(sans: Sequence[str]) -> base_pb2.TransportSocket:
    """A cluster's ISTIO_MUTUAL transport socket; gRPC requires Envoy's TLS socket name."""
    context = tls_pb2.UpstreamTlsContext(common_tls_context=common_tls_context(sans))
    return base_pb2.TransportSocket(name=cluster_tls.TLS_SOCKET, typed_config=listeners.typed(context))


def downstream_socket() -> base_pb2.TransportSocket:
    """A server chain's mTLS transport socket: the mesh certificate, a client certificate from the
    mesh root required (no SAN check: gRPC servers reject one)."""
    context = tls_pb2.DownstreamTlsContext(
        common_tls_context=common_tls_context(),
        require_client_certificate=wrappers_pb2.BoolValue(value=True),
    )
    return base_pb2.TransportSocket(name=cluster_tls.TLS_SOCKET, typed_config=listeners.typed(context))


__all__ = [
    "PROVIDER_INSTANCE",
    "ModeForPort",
    "MtlsMode",
    "common_tls_context",
    "downstream_socket",
    "permissive",
    "server_requires_mtls",
    "upstream_socket",
]
