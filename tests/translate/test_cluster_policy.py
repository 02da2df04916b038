"""DestinationRule client TLS, PROXY protocol and locality load balancing on outbound clusters."""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2
from envoy.extensions.transport_sockets.proxy_protocol.v3 import upstream_proxy_protocol_pb2
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2

from pilot.translate.clusters import build_clusters
from pilot.translate.generators import build_load_assignments
from pilot.translate.traffic_policy import HTTP_PROTOCOL_OPTIONS
from tests import factories as f

Cluster = cluster_pb2.Cluster
API = "api.example.com"
CLUSTER = f"outbound|443||{API}"


def external(protocol: str = "HTTPS", sans: tuple[str, ...] = (), resolution: str = "DNS"):
    return f.service_entry(
        "api",
        hosts=[API],
        ports=[{"number": 443, "name": "tls", "protocol": protocol}],
        resolution=resolution,
        subjectAltNames=list(sans),
        endpoints=[] if resolution == "DNS" else [{"address": "10.0.0.1"}],
    )


def cluster_with(tls: dict | None = None, se=None, **policy) -> Cluster:
    if tls is not None:
        policy["tls"] = tls
    rule = f.destination_rule("api", host=API, trafficPolicy=policy)
    found = dict(build_clusters(f.sidecar(), f.push_context(se or external(), rule)))
    return found[se and next(n for n in found if n.startswith("outbound|")) or CLUSTER]


def tls_context(cluster: Cluster) -> tls_pb2.UpstreamTlsContext:
    assert cluster.transport_socket.name == "envoy.transport_sockets.tls"
    out = tls_pb2.UpstreamTlsContext()
    assert cluster.transport_socket.typed_config.Unpack(out)
    return out


def protocol_options(cluster: Cluster) -> http_protocol_options_pb2.HttpProtocolOptions:
    out = http_protocol_options_pb2.HttpProtocolOptions()
    cluster.typed_extension_protocol_options[HTTP_PROTOCOL_OPTIONS].Unpack(out)
    return out


def test_simple_tls_with_system_roots_auto_sni_and_san_validation() -> None:
    cluster = cluster_with({"mode": "SIMPLE"})
    context = tls_context(cluster)
    assert context.sni == "" and not context.common_tls_context.tls_certificates
    assert (
        context.common_tls_context.validation_context.trusted_ca.filename
        == "/etc/ssl/certs/ca-certificates.crt"
    )
    upstream = protocol_options(cluster).upstream_http_protocol_options
    assert upstream.auto_sni and upstream.auto_san_validation


def test_mutual_tls_with_files_sni_and_sans() -> None:
    tls = {
        "mode": "MUTUAL",
        "clientCertificate": "/certs/client.pem",
        "privateKey": "/certs/key.pem",
        "caCertificates": "/certs/ca.pem",
        "caCrl": "/certs/crl.pem",
        "sni": "api.example.com",
        "subjectAltNames": ["api.example.com", "spiffe://td/ns/x/sa/y"],
    }
    cluster = cluster_with(tls, se=external("HTTP2"))
    context = tls_context(cluster)
    (cert,) = context.common_tls_context.tls_certificates
    assert (cert.certificate_chain.filename, cert.private_key.filename) == (
        "/certs/client.pem",
        "/certs/key.pem",
    )
    validation = context.common_tls_context.validation_context
    assert validation.trusted_ca.filename == "/certs/ca.pem" and validation.crl.filename == "/certs/crl.pem"
    sans = [(m.san_type, m.matcher.exact) for m in validation.match_typed_subject_alt_names]
    assert [name for _, name in sans] == ["api.example.com", "spiffe://td/ns/x/sa/y"]
    assert context.sni == "api.example.com"
    assert list(context.common_tls_context.alpn_protocols) == ["h2"]  # an HTTP/2 port
    assert not protocol_options(cluster).HasField("upstream_http_protocol_options")


def test_service_entry_sans_and_insecure_skip_verify() -> None:
    from_entry = tls_context(cluster_with({"mode": "SIMPLE"}, se=external(sans=("a.example.com",))))
    names = from_entry.common_tls_context.validation_context.match_typed_subject_alt_names
    assert [m.matcher.exact for m in names] == ["a.example.com"]
    skipped = cluster_with({"mode": "SIMPLE", "insecureSkipVerify": True})
    validation = tls_context(skipped).common_tls_context.validation_context
    assert validation.ByteSize() == 0
    assert not protocol_options(skipped).upstream_http_protocol_options.auto_san_validation


def test_plaintext_modes() -> None:
    for tls in (
        {"mode": "DISABLE"},
        {"mode": "ISTIO_MUTUAL"},
        {"mode": "SIMPLE", "credentialName": "secret"},
    ):
        assert not cluster_with(tls).HasField("transport_socket"), tls


def test_proxy_protocol_wraps_the_transport_socket() -> None:
    plain = cluster_with(proxyProtocol={"version": "V2"})
    wrapper = upstream_proxy_protocol_pb2.ProxyProtocolUpstreamTransport()
    assert plain.transport_socket.name == "envoy.transport_sockets.upstream_proxy_protocol"
    plain.transport_socket.typed_config.Unpack(wrapper)
    assert (
        wrapper.config.version == 1 and wrapper.transport_socket.name == "envoy.transport_sockets.raw_buffer"
    )
    tls = cluster_with({"mode": "SIMPLE"}, proxyProtocol={"version": "V1"})
    tls.transport_socket.typed_config.Unpack(wrapper)
    assert wrapper.transport_socket.name == "envoy.transport_sockets.tls"


def test_port_level_and_subset_tls() -> None:
    rule = f.destination_rule(
        "api",
        host=API,
        trafficPolicy={
            "tls": {"mode": "SIMPLE"},
            "portLevelSettings": [{"port": {"number": 443}, "tls": {}}],
        },
        subsets=[
            {"name": "s", "labels": {"a": "b"}, "trafficPolicy": {"tls": {"mode": "SIMPLE", "sni": "s"}}}
        ],
    )
    found = dict(build_clusters(f.sidecar(), f.push_context(external(resolution="STATIC"), rule)))
    assert not found[CLUSTER].HasField("transport_socket")  # the port's DISABLE wins
    assert tls_context(found[f"outbound|443|s|{API}"]).sni == "s"


# --- locality ---------------------------------------------------------------------------------------

LOCALITIES = [
    {"address": "10.0.0.1", "locality": "us-east/a"},
    {"address": "10.0.0.2", "locality": "us-east/b", "weight": 3},
    {"address": "10.0.0.3", "locality": "eu-west/a"},
    {"address": "10.0.0.4"},
]


def placed(**policy):
    se = f.http_service("web", port=80, endpoints=LOCALITIES)
    rule = f.destination_rule("web", host="web", trafficPolicy=policy)
    context = f.push_context(se, rule)
    name = "outbound|80||web.default.svc.cluster.local"
    cluster = dict(build_clusters(f.sidecar(), context))[name]
    assignment = dict(build_load_assignments(f.sidecar(), context))[name]
    groups = {g.locality.region + "/" + g.locality.zone: g for g in assignment.endpoints}
    return cluster, groups


def test_distribute_reweights_localities() -> None:
    distribute = [{"from": "*", "to": {"us-east/*": 80, "eu-west/*": 20}}]
    cluster, groups = placed(loadBalancer={"localityLbSetting": {"distribute": distribute}})
    assert cluster.common_lb_config.HasField("locality_weighted_lb_config")
    weights = {name: (g.load_balancing_weight.value, len(g.lb_endpoints)) for name, g in groups.items()}
    # us-east/a weighs 1 of 4 and us-east/b 3 of 4 of the 80; the unlisted locality is emptied.
    assert weights == {"us-east/a": (20, 1), "us-east/b": (60, 1), "eu-west/a": (20, 1), "/": (1, 0)}


def test_failover_needs_outlier_detection() -> None:
    setting = {"localityLbSetting": {"failover": [{"from": "us-east", "to": "eu-west"}]}}
    cluster, groups = placed(loadBalancer=setting)
    assert not cluster.common_lb_config.HasField("locality_weighted_lb_config")
    assert {g.priority for g in groups.values()} == {0}
    cluster, groups = placed(loadBalancer=setting, outlierDetection={"consecutive5xxErrors": 3})
    assert cluster.common_lb_config.HasField("locality_weighted_lb_config")
    # A proxy without a locality: endpoints without one are nearest, every other locality next.
    assert {name: g.priority for name, g in groups.items()} == {
        "/": 0,
        "us-east/a": 1,
        "us-east/b": 1,
        "eu-west/a": 1,
    }


def test_disabled_and_mesh_wide_locality_settings() -> None:
    off = {"localityLbSetting": {"enabled": False, "distribute": [{"from": "*", "to": {"us-east/*": 100}}]}}
    cluster, _ = placed(loadBalancer=off)
    assert not cluster.common_lb_config.HasField("locality_weighted_lb_config")
    mesh = f.mesh_config(localityLbSetting={"distribute": [{"from": "*", "to": {"eu-west/*": 100}}]})
    se = f.http_service("web", port=80, endpoints=LOCALITIES)
    context = f.push_context(se, mesh)
    (assignment,) = [a for _, a in build_load_assignments(f.sidecar(), context)]
    assert [len(g.lb_endpoints) for g in assignment.endpoints] == [0, 0, 1, 0]


def test_mesh_tcp_keepalive_under_the_rules() -> None:
    mesh = f.mesh_config(tcpKeepalive={"probes": 3, "time": "60s", "interval": "10s"})
    rule = f.destination_rule(
        "api", host=API, trafficPolicy={"connectionPool": {"tcp": {"tcpKeepalive": {"time": "30s"}}}}
    )
    found = dict(build_clusters(f.sidecar(), f.push_context(external(), mesh, rule)))
    keepalive = found[CLUSTER].upstream_connection_options.tcp_keepalive
    assert (
        keepalive.keepalive_probes.value,
        keepalive.keepalive_time.value,
        keepalive.keepalive_interval.value,
    ) == (
        3,
        30,
        10,
    )
