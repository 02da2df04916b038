"""mTLS for proxyless gRPC: ISTIO_MUTUAL clusters and server listeners with certificate providers
(Istio's grpcgen), in the shapes gRPC accepts."""

from __future__ import annotations

import pytest
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2

from pilot.translate import grpc_listeners, grpc_tls, snapshot, views
from pilot.translate.grpc_tls import MtlsMode
from pilot.translate.proxy import Proxy
from pilot.xds import types
from tests import factories as f

HOST = "reviews.default.svc.cluster.local"
SERVER = "sidecar~10.0.0.1~r.default~default.svc.cluster.local"
CLIENT = "sidecar~10.0.0.9~c.default~default.svc.cluster.local"
INBOUND = f"{grpc_listeners.SERVER_LISTENER_PREFIX}0.0.0.0:9080"
TLS_MODE = "security.istio.io/tlsMode"


def reviews(tls: dict[str, object] | None = None, **subset_policy: object) -> list:  # type: ignore[type-arg]
    policy = {"trafficPolicy": {"tls": tls}} if tls else {}
    subsets = [{"name": "v1", "labels": {"version": "v1"}, **subset_policy}]
    return [
        f.http_service(
            "reviews",
            port=9080,
            protocol="GRPC",
            endpoints=[
                {"address": "10.0.0.1", "labels": {"version": "v1"}, "serviceAccount": "reviews"},
                {"address": "10.0.0.2", "labels": {"version": "v2"}, "serviceAccount": "reviews-v2"},
            ],
        ),
        f.destination_rule("reviews", host="reviews", subsets=subsets, **policy),
    ]


def clusters(*objects):  # noqa: ANN002, ANN201
    context = f.push_context(*objects)
    view = views.view_of(Proxy.from_node(CLIENT, {"GENERATOR": "grpc"}), context)
    return dict(snapshot.generate_messages(view, context)[types.CLUSTER])


def upstream(cluster) -> tls_pb2.UpstreamTlsContext:  # noqa: ANN001
    out = tls_pb2.UpstreamTlsContext()
    assert cluster.transport_socket.name == "envoy.transport_sockets.tls"
    cluster.transport_socket.typed_config.Unpack(out)
    return out


def assert_provider_fields(common: tls_pb2.CommonTlsContext) -> None:
    """grpcgen's buildCommonTLSContext: current and deprecated provider fields, nothing gRPC NACKs."""
    identity = (
        common.tls_certificate_provider_instance,
        common.tls_certificate_certificate_provider_instance,
    )
    for field in identity:
        assert (field.instance_name, field.certificate_name) == ("default", "default")
    combined = common.combined_validation_context
    for field in (
        combined.default_validation_context.ca_certificate_provider_instance,
        combined.validation_context_certificate_provider_instance,
    ):
        assert (field.instance_name, field.certificate_name) == ("default", "ROOTCA")
    assert not common.HasField("tls_params") and not common.tls_certificate_sds_secret_configs
    assert not common.alpn_protocols and not common.tls_certificates


def test_istio_mutual_cluster_names_the_certificate_provider_and_checks_the_spiffe_ids() -> None:
    out = clusters(*reviews({"mode": "ISTIO_MUTUAL", "subjectAltNames": ["ignored"], "sni": "x"}))
    for name in (f"outbound|9080||{HOST}", f"outbound|9080|v1|{HOST}"):
        context = upstream(out[name])
        assert_provider_fields(context.common_tls_context)
        sans = context.common_tls_context.combined_validation_context.default_validation_context
        # Istio's PushContext.ServiceAccounts of the service, as grpcgen: the rule's SANs are unread.
        assert [m.exact for m in sans.match_subject_alt_names] == [
            "spiffe://cluster.local/ns/default/sa/reviews",
            "spiffe://cluster.local/ns/default/sa/reviews-v2",
        ]
        assert not context.sni
        assert not out[name].transport_socket_matches


def test_no_auto_mtls_and_other_tls_modes_are_not_applied() -> None:
    # Endpoints labelled tlsMode: istio get auto mTLS on a sidecar, never on a gRPC client.
    labelled = reviews()
    for endpoint in labelled[0].spec.endpoints:
        endpoint.labels[TLS_MODE] = "istio"
    for objects in (labelled, reviews({"mode": "SIMPLE"}), reviews({"mode": "DISABLE"})):
        for cluster in clusters(*objects).values():
            assert not cluster.HasField("transport_socket") and not cluster.transport_socket_matches


def test_a_subset_policy_turns_mtls_on_for_its_cluster_only() -> None:
    out = clusters(*reviews(trafficPolicy={"tls": {"mode": "ISTIO_MUTUAL"}}))
    assert out[f"outbound|9080|v1|{HOST}"].HasField("transport_socket")
    assert not out[f"outbound|9080||{HOST}"].HasField("transport_socket")


def server_listener(labels: dict[str, str] | None = None, mode: MtlsMode | None = None):  # noqa: ANN201
    context = f.push_context(*reviews())
    metadata: dict[str, object] = {"GENERATOR": "grpc"}
    if labels:
        metadata["LABELS"] = labels
    view = views.view_of(Proxy.from_node(SERVER, metadata), context)
    built = (
        grpc_listeners.build_listeners(view, context)
        if mode is None
        else grpc_listeners.build_listeners(
            view, context, lambda port: mode if port == 9080 else MtlsMode.DISABLE
        )
    )
    return dict(built)[INBOUND]


@pytest.mark.parametrize(
    ("labels", "mode", "mtls"),
    [
        (None, None, False),  # PERMISSIVE by default: plain text (gRPC cannot serve both)
        ({TLS_MODE: "istio"}, None, True),  # ... unless the workload says its clients send mTLS
        ({TLS_MODE: "disabled"}, None, False),
        (None, MtlsMode.STRICT, True),
        ({TLS_MODE: "istio"}, MtlsMode.DISABLE, False),
        (None, MtlsMode.PERMISSIVE, False),
    ],
)
def test_server_listener_mode(labels: dict[str, str] | None, mode: MtlsMode | None, mtls: bool) -> None:
    listener = server_listener(labels, mode)
    [chain] = listener.filter_chains
    assert not listener.listener_filters and not listener.HasField("use_original_dst")
    if not mtls:
        assert chain.name == "inbound-plaintext" and not chain.HasField("transport_socket")
        return
    assert chain.name == "inbound-mtls"
    assert chain.transport_socket.name == "envoy.transport_sockets.tls"
    context = tls_pb2.DownstreamTlsContext()
    chain.transport_socket.typed_config.Unpack(context)
    assert context.require_client_certificate.value
    assert_provider_fields(context.common_tls_context)
    validation = context.common_tls_context.combined_validation_context.default_validation_context
    assert not validation.match_subject_alt_names  # gRPC servers NACK a SAN check


def test_the_tls_mode_label_splits_proxyless_views_only() -> None:
    context = f.push_context(*reviews())
    plain = views.view_of(Proxy.from_node(SERVER, {"GENERATOR": "grpc"}), context)
    istio = {"GENERATOR": "grpc", "LABELS": {TLS_MODE: "istio"}}
    labelled = views.view_of(Proxy.from_node(SERVER, istio), context)
    assert plain != labelled
    envoy = views.view_of(Proxy.from_node(SERVER, {"LABELS": {TLS_MODE: "istio"}}), context)
    assert envoy == views.view_of(Proxy.from_node(SERVER, {}), context)


def test_server_requires_mtls_follows_grpcgen() -> None:
    istio = {TLS_MODE: "istio"}
    assert grpc_tls.server_requires_mtls(MtlsMode.STRICT, {})
    assert grpc_tls.server_requires_mtls(MtlsMode.PERMISSIVE, istio)
    assert not grpc_tls.server_requires_mtls(MtlsMode.PERMISSIVE, {})
    assert not grpc_tls.server_requires_mtls(MtlsMode.DISABLE, istio)
