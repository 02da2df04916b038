"""Routers: which Gateways apply, how their servers merge per port, and the validation warnings
about servers pilot leaves out."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from pilot.config.parse import parse_text
from pilot.translate import gateway, gateway_binding
from pilot.translate.proxy import NodeType, Proxy, ProxyView
from tests import factories as f
from tests.translate.gateway_factories import INGRESS, SIMPLE, gw, listeners, routes, server

# --- names and hosts ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("gw", "ns/gw"),
        ("./gw", "ns/gw"),
        ("other/gw", "other/gw"),
        ("gw.other.svc.cluster.local", "other/gw"),
        ("gw.other", "other/gw"),
        ("mesh", "mesh"),
    ],
)
def test_resolve_gateway_name(name: str, expected: str) -> None:
    assert gateway.resolve_gateway_name(name, "ns") == expected


def test_sanitize_hosts() -> None:
    assert gateway.sanitize_hosts(["./a.com", "*/b.com", "x/c.com", "d.com"], "ns") == (
        "ns/a.com",
        "b.com",
        "x/c.com",
        "d.com",
    )
    assert gateway.sanitize_hosts(["a.com", "*/*", "b.com"], "ns") == ("*",)


def test_host_intersection_keeps_the_more_specific_host() -> None:
    assert gateway_binding.intersection(["*"], ["a.example.com", "*.b.com"]) == ["a.example.com", "*.b.com"]
    assert gateway_binding.intersection(["*.example.com", "x.org"], ["a.example.com", "*.org"]) == [
        "a.example.com",
        "x.org",
    ]
    assert gateway_binding.intersection(["a.com"], ["b.com"]) == []
    assert gateway_binding.names_for_namespace(["ns1/a.com", "*/b.com", "c.com", "ns2/d.com"], "ns1") == [
        "a.com",
        "b.com",
        "c.com",
    ]


# --- selection ---------------------------------------------------------------------------------------


def test_router_labels_come_from_node_metadata() -> None:
    proxy = Proxy.from_node(
        "router~10.0.0.1~ingress-abc.istio-system~istio-system.svc.cluster.local",
        {"LABELS": {"istio": "ingressgateway", "app": "istio-ingressgateway"}},
    )
    assert proxy.view() == ProxyView(
        NodeType.ROUTER, "istio-system", labels=(("app", "istio-ingressgateway"), ("istio", "ingressgateway"))
    )


def test_selector_subset_of_labels_and_empty_selector_selects_every_router() -> None:
    view = ProxyView(NodeType.ROUTER, "istio-system", labels=(("app", "x"), ("istio", "ingressgateway")))
    context = f.push_context(
        gw("a", server(80)),
        gw("b", server(81), selector={"istio": "ingressgateway", "app": "x"}),
        gw("c", server(82), selector={"istio": "egressgateway"}),
        gw("d", server(83), selector={}, namespace="elsewhere"),
    )
    chosen = [g.key.name for g in gateway.selected_gateways(view, context)]
    assert chosen == ["a", "b", "d"]
    assert [g.key.name for g in gateway.selected_gateways(view, context, scope_to_namespace=True)] == []


def test_unselected_router_and_sidecars_get_no_gateway_listeners() -> None:
    objects = [gw("a", server(80)), f.http_service("web", port=9080)]
    other = ProxyView(NodeType.ROUTER, "istio-system", labels=(("istio", "egressgateway"),))
    assert listeners(*objects, view=other) == {}
    assert routes(*objects, view=other) == {}
    assert sorted(listeners(*objects, view=f.sidecar())) == ["0.0.0.0_9080"]


# --- merging -----------------------------------------------------------------------------------------


def merged(*objects: Any) -> gateway.MergedGateway:
    return gateway.merged_gateway(INGRESS, f.push_context(*objects))


def test_http_servers_of_two_gateways_share_one_port_and_route_name() -> None:
    result = merged(
        gw("a", server(80, hosts=("a.com",))), gw("b", server(80, hosts=("b.com",)), namespace="x")
    )
    (port,) = result.ports
    assert port.route_name == "http.80"
    assert [s.gateway for s in port.servers] == ["default/a", "x/b"]
    assert [s.gateway for s in result.servers_by_route["http.80"]] == ["default/a", "x/b"]


def test_https_servers_get_their_own_route_names() -> None:
    result = merged(
        gw(
            "a",
            server(443, "HTTPS", ("a.com",), name="https-a", tls=SIMPLE),
            server(443, "HTTPS", ("b.com",), name="https-b", tls=SIMPLE),
        ),
    )
    assert sorted(result.servers_by_route) == ["https.443.https-a.a.default", "https.443.https-b.a.default"]
    assert [len(p.servers) for p in result.ports] == [2]


def test_conflicting_servers_on_one_port_are_skipped() -> None:
    result = merged(
        gw("a", server(9000, "TCP")),
        gw("b", server(9000, "HTTP")),  # not HTTP-mergeable with TCP
        gw("c", server(9000, "TCP")),  # a second TCP server: no route name to tell them apart
        gw("d", server(443, "HTTPS", ("a.com",), tls=SIMPLE)),
        gw("e", server(443, "HTTPS", ("a.com",), tls=SIMPLE)),  # duplicate SNI host
    )
    assert [(p.port.number, [s.gateway for s in p.servers]) for p in result.ports] == [
        (9000, ["default/a"]),
        (443, ["default/d"]),
    ]


@pytest.mark.parametrize(
    "tls",
    [
        {"mode": "SIMPLE", "credentialName": "kubernetes-gateway://other/secret"},
        {"mode": "ISTIO_MUTUAL"},
        {"mode": "AUTO_PASSTHROUGH"},
    ],
)
def test_servers_pilot_cannot_serve_are_left_out(tls: dict[str, Any]) -> None:
    result = merged(gw("a", server(443, "TLS", ("a.com",), tls=tls), server(80)))
    assert [p.port.number for p in result.ports] == [80]


def test_unix_socket_bind_is_left_out() -> None:
    uds = server(0, bind="unix:///var/run/gw.sock")
    assert merged(gw("a", uds)).ports == ()


@pytest.mark.parametrize(
    ("server_spec", "path"),
    [
        (
            server(
                443,
                "HTTPS",
                ("a.com",),
                tls={"mode": "SIMPLE", "credentialName": "kubernetes-gateway://ns/s"},
            ),
            "tls.credentialName",
        ),
        (server(443, "TLS", ("a.com",), tls={"mode": "AUTO_PASSTHROUGH"}), "tls.mode"),
        (server(443, "TLS", ("a.com",), tls={"mode": "ISTIO_MUTUAL"}), "tls.mode"),
        (server(0, bind="unix:///var/run/gw.sock"), "bind"),
    ],
)
def test_validation_warns_about_servers_pilot_leaves_out(server_spec: dict[str, Any], path: str) -> None:
    document = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "Gateway",
        "metadata": {"name": "gw", "namespace": "default"},
        "spec": {"servers": [server_spec]},
    }
    result = parse_text(yaml.safe_dump(document), "gw.yaml")
    assert [e.path for e in result.errors if e.severity == "error"] == []
    warnings = [(e.path, e.message) for e in result.errors if e.severity == "warning"]
    assert [p for p, m in warnings if m.endswith("server ignored")] == [f"spec.servers[0].{path}"]
    assert len(result.objects) == 1
