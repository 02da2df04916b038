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

from pilot.config.kube_core import (
    SERVICE_NAME_LABEL,
    read_endpoint_slice,
    read_pod,
    read_service,
)
from pilot.config.kube_services import ServiceIndex
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


# Istio's own output, from config dumps in its repository: the auto-mTLS match of
# istioctl/pkg/describe/testdata/describe/http_config.json (cluster outbound|9080|v1|productpage) and the
# mTLS chain of port 80 in istioctl/pkg/authz/testdata/configdump.yaml (virtualInbound).
def _istio_sds(name: str) -> dict:
    return {
        "name": name,
        "sds_config": {
            "api_config_source": {
                "api_type": "GRPC",
                "grpc_services": [{"envoy_grpc": {"cluster_name": "sds-grpc"}}],
                "set_node_on_first_message_only": True,
                "transport_api_version": "V3",
            },
            "initial_fetch_timeout": "0s",
            "resource_api_version": "V3",
        },
    }


ISTIO_UPSTREAM_MATCH = {
    "name": "tlsMode-istio",
    "match": {"tlsMode": "istio"},
    "transport_socket": {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
            "common_tls_context": {
                "tls_params": {
                    "tls_minimum_protocol_version": "TLSv1_2",
                    "tls_maximum_protocol_version": "TLSv1_3",
                },
                "alpn_protocols": ["istio-peer-exchange", "istio"],
                "tls_certificate_sds_secret_configs": [_istio_sds("default")],
                "combined_validation_context": {
                    "default_validation_context": {
                        "match_subject_alt_names": [
                            {"exact": "spiffe://cluster.local/ns/default/sa/bookinfo-productpage"},
                            {"exact": "spiffe://cluster.local/ns/default/sa/default"},
                        ]
                    },
                    "validation_context_sds_secret_config": _istio_sds("ROOTCA"),
                },
            },
            "sni": "outbound_.9080_.v1_.productpage.default.svc.cluster.local",
        },
    },
}
ISTIO_INBOUND_HTTP_SOCKET = {
    "name": "envoy.transport_sockets.tls",
    "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
        "common_tls_context": {
            "tls_params": {
                "tls_minimum_protocol_version": "TLSv1_2",
                "tls_maximum_protocol_version": "TLSv1_3",
                "cipher_suites": list(inbound_tls.CIPHERS),
            },
            "alpn_protocols": ["h2", "http/1.1"],
            "tls_certificate_sds_secret_configs": [_istio_sds("default")],
            "combined_validation_context": {
                "default_validation_context": {
                    "match_subject_alt_names": [{"prefix": "spiffe://cluster.local/"}]
                },
                "validation_context_sds_secret_config": _istio_sds("ROOTCA"),
            },
        },
        "require_client_certificate": True,
    },
}


def as_istio_dumps(message) -> dict:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def test_the_client_and_server_contexts_are_istios() -> None:
    endpoints = [
        {
            "address": "10.0.0.1",
            "labels": {"version": "v1", **MESHED},
            "serviceAccount": "bookinfo-productpage",
        },
        {"address": "10.0.0.2", "labels": {"version": "v1", **MESHED}, "serviceAccount": "default"},
    ]
    productpage = f.http_service("productpage", port=9080, endpoints=endpoints)
    rule = f.destination_rule("p", host="productpage", subsets=[{"name": "v1", "labels": {"version": "v1"}}])
    built = dict(build_clusters(view(), f.push_context(productpage, rule)))
    match = built["outbound|9080|v1|productpage.default.svc.cluster.local"].transport_socket_matches[0]
    assert as_istio_dumps(match) == ISTIO_UPSTREAM_MATCH
    target = ServiceTarget("productpage.default.svc.cluster.local", 80, 80, "HTTP")
    listener = dict(build_listeners(view(True, target), f.push_context(productpage)))["virtualInbound"]
    mtls = next(chain for chain in listener.filter_chains if chain.name == "0.0.0.0_80")
    assert as_istio_dumps(mtls.filter_chain_match) == {
        "destination_port": 80,
        "transport_protocol": "tls",
        "application_protocols": [
            "istio",
            "istio-peer-exchange",
            "istio-http/1.0",
            "istio-http/1.1",
            "istio-h2",
        ],
    }
    assert as_istio_dumps(mtls.transport_socket) == ISTIO_INBOUND_HTTP_SOCKET


def kube_objects(from_pods: bool):
    """A Kubernetes Service ``reviews`` with two Pods, one injected (Istio's label), as the folder or the
    cluster source turns them into a ServiceEntry (pilot.config.kube_core)."""
    index = ServiceIndex(origin_of=lambda namespace, name: "test", endpoints_from_pods=from_pods)
    service = {
        "metadata": {"name": "reviews", "namespace": "default"},
        "spec": {
            "clusterIP": "10.96.0.10",
            "selector": {"app": "reviews"},
            "ports": [{"name": "http", "port": 9080}],
        },
    }
    index.service("default", "reviews", read_service(service)[0])
    pods = {"injected": ("10.0.0.1", MESHED, "reviews-v1"), "plain": ("10.0.0.2", {}, "reviews-v2")}
    for name, (ip, extra, account) in pods.items():
        pod = {
            "metadata": {"name": name, "namespace": "default", "labels": {"app": "reviews", **extra}},
            "spec": {"serviceAccountName": account},
            "status": {"podIP": ip},
        }
        index.pod("default", name, read_pod(pod)[0])
    if not from_pods:
        endpoint_slice = {
            "metadata": {
                "name": "reviews-1",
                "namespace": "default",
                "labels": {SERVICE_NAME_LABEL: "reviews"},
            },
            "addressType": "IPv4",
            "endpoints": [
                {"addresses": [ip], "targetRef": {"kind": "Pod", "name": name}}
                for name, (ip, _, _) in pods.items()
            ],
            "ports": [{"name": "http", "port": 9080}],
        }
        index.endpoint_slice("default", "reviews-1", read_endpoint_slice(endpoint_slice)[0])
    return index.build_all()


@pytest.mark.parametrize("from_pods", [False, True], ids=["endpoint slices", "pods"])
def test_kubernetes_pods_give_their_service_accounts_and_the_injectors_label(from_pods: bool) -> None:
    context = f.push_context(*kube_objects(from_pods))
    cluster = dict(build_clusters(view(), context))[f"outbound|9080||{REVIEWS}"]
    assert sans(upstream(cluster.transport_socket_matches[0].transport_socket)) == [SPIFFE_V1, SPIFFE_V2]
    (assignment,) = [m for name, m in build_load_assignments(view(), context) if name == cluster.name]
    tagged = {
        e.endpoint.address.socket_address.address: bool(e.metadata.filter_metadata)
        for g in assignment.endpoints
        for e in g.lb_endpoints
    }
    assert tagged == {"10.0.0.1": True, "10.0.0.2": False}


def test_workload_entries_give_their_service_account_and_sidecar_label() -> None:
    selector = f.service_entry(
        "ratings",
        hosts=["ratings.default.svc.cluster.local"],
        ports=[{"number": 9080, "name": "http", "protocol": "HTTP"}],
        location="MESH_INTERNAL",
        resolution="STATIC",
        workloadSelector={"labels": {"app": "ratings"}},
    )
    vm = f.config(
        "WorkloadEntry",
        "vm",
        {"address": "10.0.1.1", "labels": {"app": "ratings", **MESHED}, "serviceAccount": "ratings-vm"},
    )
    context = f.push_context(selector, vm)
    cluster = dict(build_clusters(view(), context))["outbound|9080||ratings.default.svc.cluster.local"]
    assert sans(upstream(cluster.transport_socket_matches[0].transport_socket)) == [
        "spiffe://cluster.local/ns/default/sa/ratings-vm"
    ]
    (assignment,) = [m for name, m in build_load_assignments(view(), context) if name == cluster.name]
    (endpoint,) = assignment.endpoints[0].lb_endpoints
    assert dict(endpoint.metadata.filter_metadata["envoy.transport_socket_match"]) == {"tlsMode": "istio"}
