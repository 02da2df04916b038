"""Routers' LDS: listeners per Gateway port, HTTP and HTTPS connection managers, TLS termination from
certificate files, TCP and TLS-passthrough filter chains from VirtualService tcp/tls routes."""

from __future__ import annotations

from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2

from pilot.config.objects import ConfigKey
from pilot.translate.generators import GENERATORS
from pilot.xds import types
from tests.translate.gateway_factories import SIMPLE, gw, listeners, routes, server, unpack, vs


def test_http_listener_binds_the_port_with_rds_http_port() -> None:
    (listener,) = listeners(gw("a", server(8080))).values()
    assert listener.name == "0.0.0.0_8080"
    assert listener.address.socket_address.port_value == 8080
    assert not listener.HasField("bind_to_port")  # routers always bind
    assert not listener.listener_filters
    (chain,) = listener.filter_chains
    assert not chain.HasField("filter_chain_match") and not chain.HasField("transport_socket")
    manager = unpack(chain, hcm_pb2.HttpConnectionManager)
    assert manager.rds.route_config_name == "http.8080"
    assert manager.stat_prefix == "outbound_0.0.0.0_8080"
    assert manager.use_remote_address.value is True
    assert manager.forward_client_cert_details == hcm_pb2.HttpConnectionManager.SANITIZE_SET


def test_bind_address_names_the_listener() -> None:
    out = listeners(gw("a", server(8080, bind="127.0.0.2")))
    assert list(out) == ["127.0.0.2_8080"]
    assert out["127.0.0.2_8080"].address.socket_address.address == "127.0.0.2"
    assert list(routes(gw("a", server(8080, bind="127.0.0.2")))) == ["http.8080.127.0.0.2"]


def test_https_server_terminates_tls_with_certificate_files() -> None:
    tls = {
        **SIMPLE,
        "mode": "MUTUAL",
        "caCertificates": "/certs/ca.pem",
        "subjectAltNames": ["client.example.com", "spiffe://td/ns/a/sa/b"],
        "minProtocolVersion": "TLSV1_2",
        "cipherSuites": ["ECDHE-RSA-AES128-GCM-SHA256", "bogus", "ECDHE-RSA-AES128-GCM-SHA256"],
    }
    objects = gw("a", server(443, "HTTPS", ("b.com", "a.com"), name="https", tls=tls))
    listener = listeners(objects)["0.0.0.0_443"]
    assert [x.name for x in listener.listener_filters] == ["envoy.filters.listener.tls_inspector"]
    (chain,) = listener.filter_chains
    assert list(chain.filter_chain_match.server_names) == ["a.com", "b.com"]
    assert chain.transport_socket.name == "envoy.transport_sockets.tls"
    context = tls_pb2.DownstreamTlsContext()
    assert chain.transport_socket.typed_config.Unpack(context)
    common = context.common_tls_context
    assert list(common.alpn_protocols) == ["h2", "http/1.1"]
    assert common.tls_certificates[0].certificate_chain.filename == "/certs/cert.pem"
    assert common.tls_certificates[0].private_key.filename == "/certs/key.pem"
    assert common.validation_context.trusted_ca.filename == "/certs/ca.pem"
    sans = [(m.san_type, m.matcher.exact) for m in common.validation_context.match_typed_subject_alt_names]
    assert sans == [(2, "client.example.com"), (3, "spiffe://td/ns/a/sa/b")]  # DNS, URI
    assert list(common.tls_params.cipher_suites) == ["ECDHE-RSA-AES128-GCM-SHA256"]
    assert common.tls_params.tls_minimum_protocol_version == 3  # TLSv1_2
    assert context.require_client_certificate.value is True
    assert unpack(chain, hcm_pb2.HttpConnectionManager).rds.route_config_name == "https.443.https.a.default"


def test_simple_tls_does_not_validate_clients() -> None:
    objects = gw("a", server(443, "HTTPS", ("a.com",), tls={**SIMPLE, "caCertificates": "/ca.pem"}))
    (chain,) = listeners(objects)["0.0.0.0_443"].filter_chains
    context = tls_pb2.DownstreamTlsContext()
    chain.transport_socket.typed_config.Unpack(context)
    assert not context.common_tls_context.HasField("validation_context")
    assert context.require_client_certificate.value is False


def test_https_server_with_wildcard_host_matches_every_sni() -> None:
    (chain,) = listeners(gw("a", server(443, "HTTPS", ("*",), tls=SIMPLE)))["0.0.0.0_443"].filter_chains
    assert not chain.HasField("filter_chain_match")
    assert chain.HasField("transport_socket")


def test_same_sni_from_two_namespaces_keeps_the_first_chain() -> None:
    out = listeners(
        gw("a", server(443, "HTTPS", ("x/a.com",), name="https-a", tls=SIMPLE)),
        gw("b", server(443, "HTTPS", ("y/a.com",), name="https-b", tls=SIMPLE)),
    )
    assert len(out["0.0.0.0_443"].filter_chains) == 1


def test_tcp_server_proxies_to_the_first_matching_tcp_route() -> None:
    objects = [
        gw("a", server(31400, "TCP")),
        vs(
            "echo",
            hosts=["*"],
            gateways=["a"],
            tcp=[
                {
                    "match": [{"port": 31400}],
                    "route": [
                        {
                            "destination": {"host": "echo", "port": {"number": 9000}, "subset": "v1"},
                            "weight": 80,
                        },
                        {
                            "destination": {"host": "echo", "port": {"number": 9000}, "subset": "v2"},
                            "weight": 20,
                        },
                    ],
                }
            ],
        ),
        vs(
            "other-port",
            hosts=["*"],
            gateways=["a"],
            tcp=[
                {
                    "match": [{"port": 1}],
                    "route": [
                        {"destination": {"host": "nope"}},
                    ],
                }
            ],
        ),
    ]
    (chain,) = listeners(*objects)["0.0.0.0_31400"].filter_chains
    proxy = unpack(chain, tcp_proxy_pb2.TcpProxy)
    assert proxy.stat_prefix == "echo.default"
    assert [(c.name, c.weight) for c in proxy.weighted_clusters.clusters] == [
        ("outbound|9000|v1|echo.default.svc.cluster.local", 80),
        ("outbound|9000|v2|echo.default.svc.cluster.local", 20),
    ]


def test_tcp_server_without_route_gets_no_listener() -> None:
    assert listeners(gw("a", server(31400, "TCP"))) == {}


def test_passthrough_chains_per_sni_of_bound_tls_routes() -> None:
    objects = [
        gw("a", server(443, "TLS", ("*.example.com",), tls={"mode": "PASSTHROUGH"})),
        vs(
            "sni",
            hosts=["*.example.com"],
            gateways=["default/a"],
            tls=[
                {
                    "match": [{"sniHosts": ["a.example.com"], "port": 443}],
                    "route": [{"destination": {"host": "a"}}],
                },
                {"match": [{"sniHosts": ["a.example.com"]}], "route": [{"destination": {"host": "dup"}}]},
                {
                    "match": [{"sniHosts": ["b.example.com"], "gateways": ["mesh"]}],
                    "route": [{"destination": {"host": "mesh-only"}}],
                },
                {
                    "match": [{"sniHosts": ["c.example.com"], "gateways": ["a"]}],
                    "route": [{"destination": {"host": "c"}}],
                },
            ],
        ),
        vs(
            "unbound",
            hosts=["*.example.com"],
            tls=[
                {"match": [{"sniHosts": ["d.example.com"]}], "route": [{"destination": {"host": "d"}}]},
            ],
        ),
    ]
    listener = listeners(*objects)["0.0.0.0_443"]
    assert [x.name for x in listener.listener_filters] == ["envoy.filters.listener.tls_inspector"]
    chains = [
        (list(c.filter_chain_match.server_names), unpack(c, tcp_proxy_pb2.TcpProxy).cluster)
        for c in listener.filter_chains
    ]
    assert chains == [
        (["a.example.com"], "outbound|443||a.default.svc.cluster.local"),
        (["c.example.com"], "outbound|443||c.default.svc.cluster.local"),
    ]
    assert not any(c.HasField("transport_socket") for c in listener.filter_chains)


def test_virtual_service_in_another_namespace_binds_with_a_qualified_name_only() -> None:
    passthrough = server(443, "TLS", ("*",), tls={"mode": "PASSTHROUGH"})
    route = [
        {
            "match": [{"sniHosts": ["a.com"]}],
            "route": [{"destination": {"host": "a.default.svc.cluster.local"}}],
        }
    ]
    short = vs("short", "other", hosts=["a.com"], gateways=["a"], tls=route)
    assert listeners(gw("a", passthrough), short) == {}
    qualified = vs("qualified", "other", hosts=["a.com"], gateways=["default/a"], tls=route)
    assert "0.0.0.0_443" in listeners(gw("a", passthrough), qualified)


def test_generators_follow_gateways() -> None:
    key = ConfigKey("Gateway", "default", "a")
    assert GENERATORS[types.LISTENER].affected_by([key])
    assert GENERATORS[types.ROUTE].affected_by([key])
    assert not GENERATORS[types.CLUSTER].affected_by([key])
