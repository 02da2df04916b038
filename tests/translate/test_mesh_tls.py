"""ISTIO_MUTUAL between sidecars: the client clusters (DestinationRule and auto mTLS) and the PERMISSIVE
inbound chains, as istiod sends them to a proxy run by ``pilot agent`` (node metadata ``SDS``), and
nothing of it to a proxy without the agent's SDS."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2
from google.protobuf import json_format

from pilot.translate import inbound_tls
from pilot.translate.generators import build_clusters, build_listeners, build_load_assignments
from pilot.translate.proxy import InterceptionMode, Proxy, ProxyView
from pilot.translate.snapshot import generate_messages, inconsistencies
from pilot.translate.targets import ServiceTarget
from tests import factories as f
from tests.translate.golden import ENVOY, envoy_validate, static_bootstrap

Cluster = cluster_pb2.Cluster

REVIEWS = "reviews.default.svc.cluster.local"
DB = "db.default.svc.cluster.local"
MESHED = {"security.istio.io/tlsMode": "istio"}
SPIFFE_V1 = "spiffe://cluster.local/ns/default/sa/reviews-v1"
SPIFFE_V2 = "spiffe://cluster.local/ns/default/sa/reviews-v2"
TARGETS = (ServiceTarget(REVIEWS, 9080, 9080, "HTTP"), ServiceTarget(DB, 3306, 3306, "TCP"))


def view(sds: bool = True, *targets: ServiceTarget) -> ProxyView:
    return replace(
        f.sidecar(mode=InterceptionMode.REDIRECT), targets=tuple(sorted(targets)), mesh_certificates=sds
    )


def reviews(location: str = "MESH_INTERNAL", resolution: str = "STATIC"):
    endpoints = [
        {"address": "10.0.0.1", "labels": {"version": "v1", **MESHED}, "serviceAccount": "reviews-v1"},
        {"address": "10.0.0.2", "labels": {"version": "v2", **MESHED}, "serviceAccount": "reviews-v2"},
        {"address": "10.0.0.3", "labels": {"version": "v1"}},  # no sidecar
    ]
    return f.service_entry(
        "reviews",
        hosts=[REVIEWS],
        ports=[{"number": 9080, "name": "http", "protocol": "HTTP"}],
        location=location,
        resolution=resolution,
        endpoints=endpoints,
    )


def objects(*extra):
    return (reviews(), f.http_service("db", port=3306, protocol="TCP"), *extra)


def clusters(proxy: ProxyView, *extra) -> dict[str, Cluster]:
    return dict(build_clusters(proxy, f.push_context(*objects(*extra))))


def upstream(socket: base_pb2.TransportSocket) -> tls_pb2.UpstreamTlsContext:
    out = tls_pb2.UpstreamTlsContext()
    assert socket.name == "envoy.transport_sockets.tls"
    assert socket.typed_config.Unpack(out)
    return out


def sans(context) -> list[str]:
    validation = context.common_tls_context.combined_validation_context
    return [m.exact for m in validation.default_validation_context.match_subject_alt_names]


def assert_mesh_secrets(common) -> None:
    (certificate,) = common.tls_certificate_sds_secret_configs
    root = common.combined_validation_context.validation_context_sds_secret_config
    assert (certificate.name, root.name) == ("default", "ROOTCA")
    for config in (certificate, root):
        (service,) = config.sds_config.api_config_source.grpc_services
        assert service.envoy_grpc.cluster_name == "sds-grpc"


def test_auto_mtls_upgrades_only_endpoints_with_a_sidecar_and_checks_the_service_accounts() -> None:
    cluster = clusters(view())[f"outbound|9080||{REVIEWS}"]
    assert not cluster.HasField("transport_socket")
    istio, disabled = cluster.transport_socket_matches
    assert (istio.name, dict(istio.match)) == ("tlsMode-istio", {"tlsMode": "istio"})
    assert (disabled.name, dict(disabled.match)) == ("tlsMode-disabled", {})
    assert disabled.transport_socket.name == "envoy.transport_sockets.raw_buffer"
    context = upstream(istio.transport_socket)
    assert context.sni == f"outbound_.9080_._.{REVIEWS}"
    assert list(context.common_tls_context.alpn_protocols) == ["istio-peer-exchange", "istio"]
    assert sans(context) == [SPIFFE_V1, SPIFFE_V2]
    assert_mesh_secrets(context.common_tls_context)
    # The subset's SNI names it; the SANs stay the service's.
    subset = f.destination_rule(
        "reviews", host="reviews", subsets=[{"name": "v1", "labels": {"version": "v1"}}]
    )
    cluster = clusters(view(), subset)[f"outbound|9080|v1|{REVIEWS}"]
    assert (
        upstream(cluster.transport_socket_matches[0].transport_socket).sni == f"outbound_.9080_.v1_.{REVIEWS}"
    )


def test_endpoints_of_workloads_with_a_sidecar_carry_the_match_metadata() -> None:
    (assignment,) = [
        message
        for name, message in build_load_assignments(view(), f.push_context(*objects()))
        if name == f"outbound|9080||{REVIEWS}"
    ]
    meta = {
        e.endpoint.address.socket_address.address: json_format.MessageToDict(e.metadata)
        for group in assignment.endpoints
        for e in group.lb_endpoints
    }
    tagged = {"filterMetadata": {"envoy.transport_socket_match": {"tlsMode": "istio"}}}
    assert meta == {"10.0.0.1": tagged, "10.0.0.2": tagged, "10.0.0.3": {}}


def test_destination_rule_istio_mutual_is_a_transport_socket_with_its_own_sans_and_sni() -> None:
    rule = f.destination_rule(
        "reviews",
        host="reviews",
        trafficPolicy={"tls": {"mode": "ISTIO_MUTUAL", "subjectAltNames": ["spiffe://other/ns/x/sa/y"]}},
        subsets=[
            {"name": "v2", "labels": {"version": "v2"}, "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}}}
        ],
    )
    built = clusters(view(), rule)
    top = built[f"outbound|9080||{REVIEWS}"]
    assert not top.transport_socket_matches
    context = upstream(top.transport_socket)
    assert sans(context) == ["spiffe://other/ns/x/sa/y"]
    assert context.sni == f"outbound_.9080_._.{REVIEWS}"
    subset = upstream(built[f"outbound|9080|v2|{REVIEWS}"].transport_socket)
    assert (sans(subset), subset.sni) == ([SPIFFE_V1, SPIFFE_V2], f"outbound_.9080_.v2_.{REVIEWS}")


def test_http2_clusters_offer_h2_after_the_mesh_alpn() -> None:
    grpc = f.http_service("grpc", port=50051, protocol="GRPC")
    cluster = clusters(view(), grpc)["outbound|50051||grpc.default.svc.cluster.local"]
    context = upstream(cluster.transport_socket_matches[0].transport_socket)
    assert list(context.common_tls_context.alpn_protocols) == ["istio-peer-exchange", "istio", "h2"]


@pytest.mark.parametrize(
    "case",
    ["rule tls DISABLE", "rule tls SIMPLE", "auto mTLS off", "mesh external", "passthrough"],
)
def test_where_auto_mtls_does_not_apply(case: str) -> None:
    extra = {
        "rule tls DISABLE": f.destination_rule(
            "r", host="reviews", trafficPolicy={"tls": {"mode": "DISABLE"}}
        ),
        "rule tls SIMPLE": f.destination_rule("r", host="reviews", trafficPolicy={"tls": {"mode": "SIMPLE"}}),
        "auto mTLS off": f.mesh_config(enableAutoMtls=False),
        "mesh external": reviews(location="MESH_EXTERNAL"),
        "passthrough": reviews(resolution="NONE"),
    }[case]
    cluster = clusters(view(), extra)[f"outbound|9080||{REVIEWS}"]
    assert not cluster.transport_socket_matches
    if case != "rule tls SIMPLE":
        assert not cluster.HasField("transport_socket")


def test_auto_mtls_off_still_honours_istio_mutual_and_the_trust_domain_names_the_sans() -> None:
    mesh = f.mesh_config(enableAutoMtls=False, trustDomain="example.org")
    rule = f.destination_rule("r", host="reviews", trafficPolicy={"tls": {"mode": "ISTIO_MUTUAL"}})
    context = upstream(clusters(view(), mesh, rule)[f"outbound|9080||{REVIEWS}"].transport_socket)
    assert sans(context) == [
        "spiffe://example.org/ns/default/sa/reviews-v1",
        "spiffe://example.org/ns/default/sa/reviews-v2",
    ]


def test_a_proxy_without_the_agents_sds_gets_plaintext_and_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rule = f.destination_rule("r", host="reviews", trafficPolicy={"tls": {"mode": "ISTIO_MUTUAL"}})
    with caplog.at_level(logging.WARNING, logger="pilot.translate.clusters"):
        built = clusters(view(sds=False), rule)
    for cluster in built.values():
        assert not cluster.HasField("transport_socket") and not cluster.transport_socket_matches
    assert any("ISTIO_MUTUAL" in record.getMessage() for record in caplog.records)
    listener = dict(build_listeners(view(False, *TARGETS), f.push_context(*objects())))["virtualInbound"]
    assert all(not chain.HasField("transport_socket") for chain in listener.filter_chains)
    assert "envoy.filters.listener.tls_inspector" not in [x.name for x in listener.listener_filters]


def test_the_node_metadata_sds_marks_a_proxy_with_mesh_certificates() -> None:
    node = "sidecar~10.0.0.1~a.default~default.svc.cluster.local"
    assert Proxy.from_node(node, {"SDS": "true"}).view().mesh_certificates
    assert str(Proxy.from_node(node, {"SDS": True}).view()).endswith("/sds")
    assert not Proxy.from_node(node, {}).view().mesh_certificates


def downstream(chain) -> tls_pb2.DownstreamTlsContext:
    out = tls_pb2.DownstreamTlsContext()
    assert chain.transport_socket.typed_config.Unpack(out)
    return out


def test_virtual_inbound_is_permissive_with_mtls_chains_per_port() -> None:
    listener = dict(build_listeners(view(True, *TARGETS), f.push_context(*objects())))["virtualInbound"]
    assert [x.name for x in listener.listener_filters] == [
        "envoy.filters.listener.original_dst",
        "envoy.filters.listener.tls_inspector",
        "envoy.filters.listener.http_inspector",
    ]
    by_port: dict[str, list] = {}
    for chain in listener.filter_chains:
        by_port.setdefault(chain.name, []).append(chain)
    http_mtls, http_plain = by_port["0.0.0.0_9080"]
    assert http_mtls.filter_chain_match.transport_protocol == "tls"
    assert list(http_mtls.filter_chain_match.application_protocols) == list(inbound_tls.ALL_MESH_ALPN)
    assert http_plain.filter_chain_match.transport_protocol == "raw_buffer"
    assert not http_plain.HasField("transport_socket")
    context = downstream(http_mtls)
    assert context.require_client_certificate.value
    assert list(context.common_tls_context.alpn_protocols) == ["h2", "http/1.1"]
    assert_mesh_secrets(context.common_tls_context)
    tcp_mtls, tcp_tls, tcp_plain = by_port["0.0.0.0_3306"]
    assert list(downstream(tcp_mtls).common_tls_context.alpn_protocols) == [
        "istio-peer-exchange",
        "h2",
        "http/1.1",
    ]
    # Other TLS (the workload's own) passes through untouched; plain text as before.
    assert (tcp_tls.filter_chain_match.transport_protocol, tcp_tls.HasField("transport_socket")) == (
        "tls",
        False,
    )
    assert tcp_plain.filter_chain_match.transport_protocol == "raw_buffer"
    # The passthrough set takes mTLS too, as Istio's PERMISSIVE passthrough chains.
    assert any(chain.HasField("transport_socket") for chain in by_port["virtualInbound"])


def with_sds_cluster(bootstrap):
    """The agent bootstrap's ``sds-grpc`` (a gRPC cluster on a Unix socket), which the config names."""
    cluster = bootstrap.static_resources.clusters.add(name="sds-grpc", type=Cluster.STATIC)
    cluster.load_assignment.cluster_name = "sds-grpc"
    endpoint = cluster.load_assignment.endpoints.add().lb_endpoints.add().endpoint
    endpoint.address.pipe.path = "/tmp/pilot-test-sds.sock"
    options = cluster.typed_extension_protocol_options[
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
    ]
    http2 = http_protocol_options_pb2.HttpProtocolOptions()
    http2.explicit_http_config.http2_protocol_options.SetInParent()
    options.Pack(http2)
    return bootstrap


def test_messages_are_consistent() -> None:
    rule = f.destination_rule("r", host="reviews", subsets=[{"name": "v1", "labels": {"version": "v1"}}])
    assert inconsistencies(generate_messages(view(True, *TARGETS), f.push_context(*objects(rule)))) == []


@pytest.mark.skipif(not ENVOY.exists(), reason="no envoy binary in .venv")
def test_envoy_accepts_the_mtls_config(tmp_path: Path) -> None:
    rule = f.destination_rule(
        "r",
        host="reviews",
        subsets=[
            {"name": "v1", "labels": {"version": "v1"}, "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}}}
        ],
    )
    messages = generate_messages(view(True, *TARGETS), f.push_context(*objects(rule)))
    result = envoy_validate(with_sds_cluster(static_bootstrap(messages)), tmp_path)
    assert result.returncode == 0, f"envoy rejected:\n{result.stdout}\n{result.stderr}"
