"""PeerAuthentication in the config a sidecar is sent: ``virtualInbound``'s chains per port by the
workload's mode (Istio's getFilterChainMatchOptions columns, ISTIO-SIDECAR-AND-SECURITY.md §2.3), the
per-port passthrough chains of ``portLevelMtls``, STRICT on a proxy without certificates (closed),
and the client side: auto mTLS off towards a DISABLE namespace, the endpoint metadata off for a
DISABLE workload, a DestinationRule's TLS still first. Envoy accepts each shape."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from envoy.config.listener.v3 import listener_pb2
from google.protobuf import json_format

from pilot._gen import security_pb2
from pilot.config.objects import ConfigKey, ConfigObject
from pilot.translate import inbound_tls
from pilot.translate.generators import build_clusters, build_listeners, build_load_assignments
from pilot.translate.proxy import InterceptionMode, ProxyView
from pilot.translate.snapshot import generate_messages, inconsistencies
from pilot.translate.targets import ServiceTarget
from tests import factories as f
from tests.translate.golden import ENVOY, envoy_validate, static_bootstrap
from tests.translate.test_mesh_tls import REVIEWS, objects, with_sds_cluster

TARGETS = (
    ServiceTarget(REVIEWS, 9080, 9080, "HTTP"),
    ServiceTarget("db.default.svc.cluster.local", 3306, 3306, "TCP"),
)
REVIEWS_LABELS = (("app", "reviews"),)


def peer_authentication(
    name: str, namespace: str = "default", **spec: Any
) -> ConfigObject[security_pb2.PeerAuthentication]:
    return ConfigObject(
        key=ConfigKey("PeerAuthentication", namespace, name),
        api_version="security.istio.io/v1",
        spec=json_format.ParseDict(spec, security_pb2.PeerAuthentication()),
        origin="test",
    )


def view(sds: bool = True, labels: tuple[tuple[str, str], ...] = REVIEWS_LABELS) -> ProxyView:
    return replace(
        f.sidecar(mode=InterceptionMode.REDIRECT), targets=TARGETS, mesh_certificates=sds, labels=labels
    )


def virtual_inbound(proxy: ProxyView, *policies: ConfigObject) -> listener_pb2.Listener:
    return dict(build_listeners(proxy, f.push_context(*objects(*policies))))["virtualInbound"]


def chains_by_port(listener: listener_pb2.Listener) -> dict[int, list[tuple[str, str, bool]]]:
    """destination port → (transport protocol, first ALPN, terminates TLS) per chain, blackhole aside."""
    out: dict[int, list[tuple[str, str, bool]]] = {}
    for chain in listener.filter_chains[1:]:
        match = chain.filter_chain_match
        alpn = match.application_protocols[0] if match.application_protocols else ""
        out.setdefault(match.destination_port.value, []).append(
            (match.transport_protocol, alpn, chain.HasField("transport_socket"))
        )
    return out


def listener_filters(listener: listener_pb2.Listener) -> list[str]:
    return [x.name.rpartition(".")[2] for x in listener.listener_filters]


MTLS_HTTP = ("tls", "", True)
MTLS_TCP = ("tls", "", True)
PLAIN = ("raw_buffer", "", False)


def test_strict_keeps_only_the_mtls_chains_and_plain_text_matches_nothing() -> None:
    strict = peer_authentication("default", "istio-system", mtls={"mode": "STRICT"})
    chains = chains_by_port(virtual_inbound(view(), strict))
    assert chains[9080] == [MTLS_HTTP]
    assert chains[3306] == [MTLS_TCP]
    # The sniffed passthrough set: mesh HTTP ALPNs to the HCM, any other TLS to tcp_proxy.
    assert chains[0] == [("tls", "istio-http/1.0", True), ("tls", "", True)]
    assert all(transport == "tls" for port in chains.values() for transport, _, _ in port)


def test_disable_is_plain_text_only_without_the_tls_inspector() -> None:
    disable = peer_authentication("default", mtls={"mode": "DISABLE"})
    listener = virtual_inbound(view(), disable)
    chains = chains_by_port(listener)
    assert chains[9080] == [PLAIN] and chains[3306] == [PLAIN]
    assert chains[0] == [("raw_buffer", "http/1.1", False), PLAIN]
    assert listener_filters(listener) == ["original_dst", "http_inspector"]


def test_permissive_is_the_default_and_an_unset_workload_policy_inherits_the_namespaces() -> None:
    default = chains_by_port(virtual_inbound(view()))
    assert len(default[9080]) == 2 and len(default[3306]) == 3
    inherit = (
        peer_authentication("ns", mtls={"mode": "STRICT"}),
        peer_authentication("w", selector={"matchLabels": {"app": "reviews"}}),
    )
    assert chains_by_port(virtual_inbound(view(), *inherit))[9080] == [MTLS_HTTP]
    # A workload the selector does not name keeps the namespace's mode; one it names takes its own.
    other = peer_authentication("w", selector={"matchLabels": {"app": "reviews"}}, mtls={"mode": "DISABLE"})
    assert chains_by_port(virtual_inbound(view(labels=()), inherit[0], other))[9080] == [MTLS_HTTP]
    assert chains_by_port(virtual_inbound(view(), inherit[0], other))[9080] == [PLAIN]


def test_port_level_mtls_overrides_one_port_and_an_unexposed_port_gets_its_passthrough_chains() -> None:
    policy = peer_authentication(
        "reviews",
        selector={"matchLabels": {"app": "reviews"}},
        mtls={"mode": "STRICT"},
        portLevelMtls={"3306": {"mode": "DISABLE"}, "9090": {"mode": "DISABLE"}},
    )
    listener = virtual_inbound(view(), policy)
    chains = chains_by_port(listener)
    assert chains[9080] == [MTLS_HTTP]
    assert chains[3306] == [PLAIN]
    # 9090 is no service's port: a passthrough set of its own, plain text; the rest stays STRICT.
    assert chains[9090] == [("raw_buffer", "http/1.1", False), PLAIN]
    assert chains[0] == [("tls", "istio-http/1.0", True), ("tls", "", True)]
    names = [c.name for c in listener.filter_chains if c.filter_chain_match.destination_port.value == 9090]
    assert names == ["virtualInbound-catchall-http", "virtualInbound"]
    # The TLS inspector runs everywhere but on the plain-text ports (Istio's buildTLSInspector).
    (inspector,) = [x for x in listener.listener_filters if x.name.endswith("tls_inspector")]
    ranges = [
        (r.destination_port_range.start, r.destination_port_range.end)
        for r in inspector.filter_disabled.or_match.rules
    ]
    assert ranges == [(3306, 3307), (9090, 9091), (15006, 15007)]


def test_a_strict_port_of_a_proxy_without_certificates_refuses_every_connection(
    caplog: pytest.LogCaptureFixture,
) -> None:
    policy = peer_authentication(
        "reviews",
        selector={"matchLabels": {"app": "reviews"}},
        mtls={"mode": "STRICT"},
        portLevelMtls={"3306": {"mode": "PERMISSIVE"}},
    )
    listener = virtual_inbound(view(sds=False), policy)
    by_name = {c.name: c for c in listener.filter_chains}
    refused = by_name["0.0.0.0_9080"]
    assert refused.filter_chain_match.transport_protocol == ""  # any connection to 9080
    assert "BlackHoleCluster" in str(json_format.MessageToDict(refused))
    assert chains_by_port(listener)[3306] == [PLAIN]  # PERMISSIVE without certificates: plain text
    # The passthrough chains are closed too: the workload's mode is STRICT.
    assert chains_by_port(listener)[0] == [("", "", False)]
    assert "has no mesh certificate" in caplog.text


def test_auto_mtls_follows_the_destination_namespace_and_a_destination_rule_still_wins() -> None:
    host = f"outbound|9080||{REVIEWS}"
    disable = peer_authentication("default", mtls={"mode": "DISABLE"})
    cluster = dict(build_clusters(view(), f.push_context(*objects(disable))))[host]
    assert not cluster.transport_socket_matches and not cluster.HasField("transport_socket")
    strict_mesh = peer_authentication("default", "istio-system", mtls={"mode": "STRICT"})
    cluster = dict(build_clusters(view(), f.push_context(*objects(strict_mesh))))[host]
    assert [m.name for m in cluster.transport_socket_matches] == ["tlsMode-istio", "tlsMode-disabled"]
    rule = f.destination_rule("r", host="reviews", trafficPolicy={"tls": {"mode": "ISTIO_MUTUAL"}})
    cluster = dict(build_clusters(view(), f.push_context(*objects(disable, rule))))[host]
    assert cluster.transport_socket.name == "envoy.transport_sockets.tls"


def test_an_endpoint_whose_own_policy_is_disable_loses_its_tls_mode_metadata() -> None:
    disable_v2 = peer_authentication(
        "v2", selector={"matchLabels": {"version": "v2"}}, mtls={"mode": "DISABLE"}
    )
    port_only = peer_authentication(
        "v1", selector={"matchLabels": {"version": "v1"}}, portLevelMtls={"9081": {"mode": "DISABLE"}}
    )
    assignments = dict(build_load_assignments(view(), f.push_context(*objects(disable_v2, port_only))))
    tagged = {
        e.endpoint.address.socket_address.address: bool(e.metadata.filter_metadata)
        for group in assignments[f"outbound|9080||{REVIEWS}"].endpoints
        for e in group.lb_endpoints
    }
    # v1 is DISABLE on another port only; v2 on every port; 10.0.0.3 has no sidecar.
    assert tagged == {"10.0.0.1": True, "10.0.0.2": False, "10.0.0.3": False}


POLICIES = {
    "strict": (peer_authentication("default", "istio-system", mtls={"mode": "STRICT"}),),
    "disable": (peer_authentication("default", mtls={"mode": "DISABLE"}),),
    "port-level": (
        peer_authentication(
            "reviews",
            selector={"matchLabels": {"app": "reviews"}},
            mtls={"mode": "STRICT"},
            portLevelMtls={"3306": {"mode": "DISABLE"}, "9090": {"mode": "PERMISSIVE"}},
        ),
    ),
}


@pytest.mark.skipif(not ENVOY.exists(), reason="no envoy binary in .venv")
@pytest.mark.parametrize("case", sorted(POLICIES))
@pytest.mark.parametrize("sds", [True, False], ids=["agent", "no-certificates"])
def test_envoy_accepts_every_mode(case: str, sds: bool, tmp_path: Path) -> None:
    messages = generate_messages(view(sds), f.push_context(*objects(*POLICIES[case])))
    assert inconsistencies(messages) == []
    bootstrap = static_bootstrap(messages)
    result = envoy_validate(with_sds_cluster(bootstrap) if sds else bootstrap, tmp_path)
    assert result.returncode == 0, f"envoy rejected:\n{result.stdout}\n{result.stderr}"


def test_mode_options_are_istios_table() -> None:
    from pilot.config.protocols import Protocol
    from pilot.translate.peer_authentication import MtlsMode

    sizes = {
        (mode, protocol): len(inbound_tls.mode_options(mode, protocol))
        for mode in MtlsMode
        for protocol in (Protocol.HTTP, Protocol.TCP, Protocol.UNSUPPORTED)
    }
    assert sizes == {
        (MtlsMode.STRICT, Protocol.HTTP): 1,
        (MtlsMode.STRICT, Protocol.TCP): 1,
        (MtlsMode.STRICT, Protocol.UNSUPPORTED): 2,
        (MtlsMode.PERMISSIVE, Protocol.HTTP): 2,
        (MtlsMode.PERMISSIVE, Protocol.TCP): 3,
        (MtlsMode.PERMISSIVE, Protocol.UNSUPPORTED): 5,
        (MtlsMode.DISABLE, Protocol.HTTP): 1,
        (MtlsMode.DISABLE, Protocol.TCP): 1,
        (MtlsMode.DISABLE, Protocol.UNSUPPORTED): 2,
    }


def test_an_edit_changes_only_the_snapshots_of_the_views_whose_policy_changed() -> None:
    """The push scoping is by kind, so every view is translated again; a view whose effective
    policy is unchanged gets the same type versions, and the server sends its proxies nothing."""
    from pilot.translate.snapshot import build_snapshot
    from pilot.xds import types

    before = f.push_context(*objects(), revision=1)
    # The proxies' views after the edit: the new selector pair is in the selected workload's labels.
    reviews, other = view(labels=REVIEWS_LABELS), view(labels=())
    policy = peer_authentication("r", selector={"matchLabels": {"app": "reviews"}}, mtls={"mode": "STRICT"})
    after = f.push_context(*objects(policy), revision=2)
    for proxy, changed in ((reviews, True), (other, False)):
        old = build_snapshot(proxy, before)
        new = build_snapshot(proxy, after, (before, old))
        assert (new.type_version(types.LISTENER) != old.type_version(types.LISTENER)) is changed
        assert new.type_version(types.CLUSTER) == old.type_version(types.CLUSTER)
        # The reviews endpoints are STRICT, not DISABLE: their tlsMode metadata stays.
        assert new.type_version(types.ENDPOINT) == old.type_version(types.ENDPOINT)


def ingress_sidecar() -> ConfigObject:
    return f.config(
        "Sidecar",
        "ingress",
        {
            "ingress": [
                {"port": {"number": 8080, "protocol": "HTTP", "name": "http"}, "captureMode": "NONE"},
                {"port": {"number": 8081, "protocol": "TCP", "name": "tcp"}, "captureMode": "NONE"},
            ]
        },
    )


INGRESS_POLICY = peer_authentication(
    "r",
    selector={"matchLabels": {"app": "reviews"}},
    mtls={"mode": "STRICT"},
    portLevelMtls={"8081": {"mode": "DISABLE"}},
)


def test_a_sidecar_ingress_port_that_binds_takes_its_mode_too() -> None:
    ingress, policy = ingress_sidecar(), INGRESS_POLICY
    proxy = replace(view(), sidecar=ingress.key)
    listeners = dict(build_listeners(proxy, f.push_context(*objects(ingress, policy))))
    strict, disabled = listeners["0.0.0.0_8080"], listeners["0.0.0.0_8081"]
    assert [
        (c.filter_chain_match.transport_protocol, c.HasField("transport_socket"))
        for c in strict.filter_chains
    ] == [("tls", True)]
    assert listener_filters(strict) == ["tls_inspector"]
    assert [c.filter_chain_match.transport_protocol for c in disabled.filter_chains] == ["raw_buffer"]
    assert listener_filters(disabled) == []


@pytest.mark.skipif(not ENVOY.exists(), reason="no envoy binary in .venv")
def test_envoy_accepts_bound_ingress_listeners_with_mtls(tmp_path: Path) -> None:
    ingress = ingress_sidecar()
    proxy = replace(view(), sidecar=ingress.key)
    messages = generate_messages(proxy, f.push_context(*objects(ingress, INGRESS_POLICY)))
    result = envoy_validate(with_sds_cluster(static_bootstrap(messages)), tmp_path)
    assert result.returncode == 0, f"envoy rejected:\n{result.stdout}\n{result.stderr}"


def test_a_proxyless_grpc_server_takes_its_ports_mode() -> None:
    from pilot.translate import views
    from pilot.translate.proxy import Proxy
    from tests.translate.test_grpc_tls import INBOUND, SERVER
    from tests.translate.test_grpc_tls import reviews as grpc_reviews

    def chain(*policies: ConfigObject, labels: dict[str, str] | None = None) -> str:
        context = f.push_context(*grpc_reviews(), *policies)
        metadata: dict[str, object] = {"GENERATOR": "grpc", "LABELS": labels or {"app": "reviews"}}
        proxy = views.view_of(Proxy.from_node(SERVER, metadata), context)
        (only,) = dict(build_listeners(proxy, context))[INBOUND].filter_chains
        return only.name

    strict = peer_authentication("default", mtls={"mode": "STRICT"})
    port_disable = peer_authentication(
        "r", selector={"matchLabels": {"app": "reviews"}}, portLevelMtls={"9080": {"mode": "DISABLE"}}
    )
    assert chain() == "inbound-plaintext"  # PERMISSIVE without the tlsMode label
    assert chain(strict) == "inbound-mtls"
    assert chain(strict, port_disable) == "inbound-plaintext"
    assert chain(strict, port_disable, labels={"app": "other"}) == "inbound-mtls"
