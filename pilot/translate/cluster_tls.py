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
  ``privateKey``. HTTP/2 clusters offer ALPN ``h2``. To a proxy with the agent's SDS
  (``ProxyView.mesh_certificates``) the files go as SDS secrets the agent reads, as istiod sends them
  (``file-cert:CERT~KEY``, ``file-root:CA``; pilot.agent.file_secrets): a missing file keeps only
  that cluster warming. To other proxies they go as file data sources Envoy reads itself, so they must
  exist on Envoy's host, and one missing file makes Envoy reject the whole cluster update.
* ``credentialName`` (a Kubernetes secret) on a sidecar: Istio sends no TLS settings at all; pilot too.
* ``ISTIO_MUTUAL`` (``buildIstioMutualTLS``): the mesh certificate and root over SDS from the agent
  beside Envoy (secrets ``default`` and ``ROOTCA`` on the bootstrap's ``sds-grpc`` cluster, as Istio's
  ``ConstructSdsSecretConfig``), the peer checked against the rule's ``subjectAltNames`` or else the
  destination's service accounts as SPIFFE ids, ALPN ``istio-peer-exchange``, ``istio`` (and ``h2`` on
  HTTP/2 clusters), SNI ``outbound_.PORT_.SUBSET_.HOST`` unless the rule gives one. Only a proxy with
  the agent's SDS gets it (``ProxyView.mesh_certificates``); to others the cluster stays plaintext.
* Auto mTLS (mesh ``enableAutoMtls``, Istio's default; ``buildUpstreamTLSSettings`` and
  ``applyUpstreamTLSSettings``): a mesh-internal EDS or DNS cluster without TLS settings gets the same
  context as a transport socket match: ``tlsMode-istio`` for endpoints whose metadata says
  ``tlsMode: istio`` (a sidecar runs there, pilot.translate.endpoints), ``tlsMode-disabled`` (raw
  buffer) for the others. Passthrough (ORIGINAL_DST) clusters stay plaintext, as in Istio.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TypeAlias

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2, config_source_pb2, grpc_service_pb2, proxy_protocol_pb2
from envoy.extensions.transport_sockets.proxy_protocol.v3 import upstream_proxy_protocol_pb2
from envoy.extensions.transport_sockets.raw_buffer.v3 import raw_buffer_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, secret_pb2, tls_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2 as upstream_http
from envoy.type.matcher.v3 import string_pb2
from google.protobuf import any_pb2, duration_pb2, struct_pb2
from google.protobuf.message import Message

from pilot._gen import networking_pb2 as nw
from pilot.config.addresses import is_ip
from pilot.translate.registry import Service

log = logging.getLogger("pilot.translate.cluster_tls")

UpstreamTlsContext: TypeAlias = tls_pb2.UpstreamTlsContext
TransportSocket: TypeAlias = base_pb2.TransportSocket
SanMatcher: TypeAlias = common_pb2.SubjectAltNameMatcher
TLS_SOCKET = "envoy.transport_sockets.tls"
PROXY_PROTOCOL_SOCKET = "envoy.transport_sockets.upstream_proxy_protocol"
RAW_BUFFER_SOCKET = "envoy.transport_sockets.raw_buffer"
HTTP_PROTOCOL_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
SYSTEM_CA = "system"
# Envoy's ``system_root_certs`` is not implemented (it would verify nothing), so "system" names the file.
SYSTEM_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
CONFIG_MAP_CREDENTIAL = "kubernetes-configmap://"
Mode = nw.ClientTLSSettings
# Istio's SDS resource names and the bootstrap cluster that serves them (pkg/model/authentication.go).
SDS_CLUSTER = "sds-grpc"
SDS_CERTIFICATE = "default"
SDS_ROOT = "ROOTCA"
# Istio's file-based SDS names (security.SdsCertificateConfig), served by pilot.agent.file_secrets.
FILE_CERT_PREFIX = "file-cert:"
FILE_ROOT_PREFIX = "file-root:"
CERT_KEY_SEPARATOR = "~"
# Istio's ALPNInMeshWithMxc / ALPNInMeshH2WithMxc (pilot/pkg/networking/util/util.go).
MESH_ALPN = ("istio-peer-exchange", "istio")
MESH_ALPN_H2 = (*MESH_ALPN, "h2")
# Endpoint metadata (filter ``envoy.transport_socket_match``) and the socket matches that read it.
TLS_MODE_KEY = "tlsMode"
TLS_MODE_ISTIO = "istio"
ISTIO_MATCH = "tlsMode-istio"
DISABLED_MATCH = "tlsMode-disabled"
SPIFFE_PREFIX = "spiffe://"


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


def file_cert_name(certificate: str, key: str) -> str:
    """Istio's ``SdsCertificateConfig.GetResourceName``: the SDS name of a certificate and key file."""
    return f"{FILE_CERT_PREFIX}{certificate}{CERT_KEY_SEPARATOR}{key}"


def file_root_name(ca: str) -> str:
    """Istio's ``SdsCertificateConfig.GetRootResourceName``: the SDS name of a CA file."""
    return f"{FILE_ROOT_PREFIX}{ca}"


def upstream_tls_context(
    tls: nw.ClientTLSSettings,
    http2: bool,
    options: upstream_http.HttpProtocolOptions,
    service_sans: Sequence[str] = (),
    *,
    sds: bool = False,
) -> UpstreamTlsContext | None:
    """The TLS context for ``tls`` (a ClientTLSSettings), or None for plaintext. ``options`` gets
    ``auto_sni`` / ``auto_san_validation`` when they apply. ``sds``: the files go as the agent's
    ``file-cert:`` / ``file-root:`` secrets (Istio's ``buildUpstreamClusterTLSContext`` for a proxy
    with the agent)."""
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
        if sds:
            common.tls_certificate_sds_secret_configs.append(
                sds_secret_config(file_cert_name(tls.client_certificate, tls.private_key))
            )
        else:
            common.tls_certificates.add(
                certificate_chain=_file(tls.client_certificate), private_key=_file(tls.private_key)
            )
    ca = tls.ca_certificates or SYSTEM_CA
    ca_path = SYSTEM_CA_BUNDLE if ca == SYSTEM_CA else ca
    if skip_verify:
        common.validation_context.SetInParent()
    elif sds:
        combined = common.combined_validation_context
        validation = combined.default_validation_context
        validation.match_typed_subject_alt_names.extend(san_matcher(name) for name in sans)
        combined.validation_context_sds_secret_config.CopyFrom(sds_secret_config(file_root_name(ca_path)))
    else:
        validation = common.validation_context
        validation.trusted_ca.CopyFrom(_file(ca_path))
        validation.match_typed_subject_alt_names.extend(san_matcher(name) for name in sans)
    if not skip_verify and tls.ca_crl:
        validation.crl.CopyFrom(_file(tls.ca_crl))
    if http2:
        common.alpn_protocols.append("h2")
    return out


def sds_secret_config(name: str) -> secret_pb2.SdsSecretConfig:
    """Istio's ``ConstructSdsSecretConfig``: ``name`` from the agent over the ``sds-grpc`` cluster; no
    initial fetch timeout, so a listener or cluster waits for its certificate rather than going
    without."""
    source = config_source_pb2.ConfigSource(
        api_config_source=config_source_pb2.ApiConfigSource(
            api_type=config_source_pb2.ApiConfigSource.GRPC,
            set_node_on_first_message_only=True,
            transport_api_version=config_source_pb2.V3,
            grpc_services=[
                grpc_service_pb2.GrpcService(
                    envoy_grpc=grpc_service_pb2.GrpcService.EnvoyGrpc(cluster_name=SDS_CLUSTER)
                )
            ],
        ),
        resource_api_version=config_source_pb2.V3,
        initial_fetch_timeout=duration_pb2.Duration(),
    )
    return secret_pb2.SdsSecretConfig(name=name, sds_config=source)


def mesh_common_context(alpn: Sequence[str], sans: Sequence[str]) -> tls_pb2.CommonTlsContext:
    """The mesh certificate (``default``) and a combined validation context: the root (``ROOTCA``) and,
    when given, the peer's SANs (Istio's untyped ``match_subject_alt_names``, any SAN type)."""
    tls_common = tls_pb2.CommonTlsContext(alpn_protocols=list(alpn))
    tls_common.tls_params.tls_minimum_protocol_version = common_pb2.TlsParameters.TLSv1_2
    tls_common.tls_params.tls_maximum_protocol_version = common_pb2.TlsParameters.TLSv1_3
    tls_common.tls_certificate_sds_secret_configs.append(sds_secret_config(SDS_CERTIFICATE))
    combined = tls_common.combined_validation_context
    combined.default_validation_context.match_subject_alt_names.extend(
        string_pb2.StringMatcher(exact=name) for name in sans
    )
    combined.validation_context_sds_secret_config.CopyFrom(sds_secret_config(SDS_ROOT))
    return tls_common


def mesh_sni(host: str, port: int, subset: str = "") -> str:
    """Istio's ``BuildDNSSrvSubsetKey``: ``outbound_.PORT_.SUBSET_.HOST``, what an ISTIO_MUTUAL
    client sends as SNI (gateways in AUTO_PASSTHROUGH route by it)."""
    return f"outbound_.{port}_.{subset}_.{host}"


def service_identities(service: Service, trust_domain: str) -> list[str]:
    """The SPIFFE ids of the service's workloads (their service accounts, in the service's namespace),
    then the ServiceEntry's ``subjectAltNames``: Istio's ``PushContext.ServiceAccounts``, the SANs an
    ISTIO_MUTUAL client accepts."""
    accounts = sorted({e.service_account for e in service.endpoints if e.service_account})
    ids = [f"{SPIFFE_PREFIX}{trust_domain}/ns/{service.namespace}/sa/{account}" for account in accounts]
    return ids + [name for name in service.subject_alt_names if name not in ids]


def istio_mutual_context(
    tls: nw.ClientTLSSettings | None, sans: Sequence[str], sni: str, http2: bool
) -> UpstreamTlsContext:
    """Istio's ``buildIstioMutualTLS`` and its ISTIO_MUTUAL case of ``buildUpstreamClusterTLSContext``:
    the rule's ``sni`` and ``subjectAltNames`` win over the computed ones; ``insecureSkipVerify`` keeps
    the root but checks no SAN."""
    if tls is not None:
        sni = tls.sni or sni
        sans = list(tls.subject_alt_names) or sans
        if tls.HasField("insecure_skip_verify") and tls.insecure_skip_verify.value:
            sans = []
    common = mesh_common_context(MESH_ALPN_H2 if http2 else MESH_ALPN, sans)
    return UpstreamTlsContext(common_tls_context=common, sni=sni)


def transport_socket_matches(
    socket: TransportSocket, plain: TransportSocket | None = None
) -> list[cluster_pb2.Cluster.TransportSocketMatch]:
    """Auto mTLS: ``socket`` for endpoints labelled ``tlsMode: istio``, ``plain`` (raw buffer unless
    given) for the rest (Istio's ``tlsMode-istio`` and ``defaultTransportSocketMatch``)."""
    match = struct_pb2.Struct()
    match.update({TLS_MODE_KEY: TLS_MODE_ISTIO})
    raw = plain or TransportSocket(name=RAW_BUFFER_SOCKET, typed_config=_typed(raw_buffer_pb2.RawBuffer()))
    return [
        cluster_pb2.Cluster.TransportSocketMatch(name=ISTIO_MATCH, match=match, transport_socket=socket),
        cluster_pb2.Cluster.TransportSocketMatch(
            name=DISABLED_MATCH, match=struct_pb2.Struct(), transport_socket=raw
        ),
    ]


def uses_http2(cluster: cluster_pb2.Cluster) -> bool:
    """Whether the cluster speaks HTTP/2 upstream (explicit ``http2_protocol_options``)."""
    packed = cluster.typed_extension_protocol_options.get(HTTP_PROTOCOL_OPTIONS)
    if packed is None:
        return False
    options = upstream_http.HttpProtocolOptions()
    packed.Unpack(options)
    return bool(options.explicit_http_config.HasField("http2_protocol_options"))


def apply_mesh_mtls(
    cluster: cluster_pb2.Cluster,
    service: Service,
    port: int,
    subset: str,
    tls: nw.ClientTLSSettings | None,
    proxy_protocol: nw.TrafficPolicy.ProxyProtocol | None,
    *,
    trust_domain: str,
    auto: bool,
    http2: bool,
) -> bool:
    """ISTIO_MUTUAL on ``cluster`` where the rule asks for it (a transport socket) or auto mTLS applies
    (transport socket matches); True if it did. For a proxy with the agent's SDS only."""
    explicit = tls is not None and tls.mode == Mode.ISTIO_MUTUAL
    if not explicit:
        # Istio: any rule TLS (DISABLE, SIMPLE, MUTUAL) is the user's; external services and
        # passthrough clusters are never upgraded.
        if (
            tls is not None
            or not auto
            or service.mesh_external
            or cluster.type == cluster_pb2.Cluster.ORIGINAL_DST
        ):
            return False
    context = istio_mutual_context(
        tls if explicit else None,
        service_identities(service, trust_domain),
        mesh_sni(service.hostname, port, subset),
        http2,
    )
    socket = transport_socket(context, proxy_protocol)
    assert socket is not None
    if explicit:
        cluster.transport_socket.CopyFrom(socket)
        return True
    plain = transport_socket(None, proxy_protocol)
    cluster.ClearField("transport_socket")
    cluster.transport_socket_matches.extend(transport_socket_matches(socket, plain))
    return True


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


__all__ = [
    "SYSTEM_CA",
    "SYSTEM_CA_BUNDLE",
    "apply_mesh_mtls",
    "file_cert_name",
    "file_root_name",
    "istio_mutual_context",
    "mesh_common_context",
    "mesh_sni",
    "san_matcher",
    "sds_secret_config",
    "service_identities",
    "transport_socket",
    "transport_socket_matches",
    "upstream_tls_context",
    "uses_http2",
]
