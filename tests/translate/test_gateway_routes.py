"""Routers' RDS: virtual hosts from the VirtualServices bound to each server, as Istio builds them."""

from __future__ import annotations

from typing import Any

from envoy.config.route.v3 import route_components_pb2 as rc

from pilot.translate.proxy import NodeType, ProxyView
from tests import factories as f
from tests.translate.gateway_factories import INGRESS, SIMPLE, gw, routes, server, vs

PRODUCTPAGE = [{"destination": {"host": "productpage", "port": {"number": 9080}}}]


def vhosts(config: Any) -> list[tuple[str, list[str]]]:
    return [(v.name, list(v.domains)) for v in config.virtual_hosts]


def clusters(vhost: Any) -> list[str]:
    return [r.route.cluster for r in vhost.routes]


def test_virtual_host_per_intersecting_host_with_one_domain_and_port_ignored() -> None:
    out = routes(
        gw("a", server(80, hosts=("*.example.com", "b.org"))),
        vs("web", hosts=["x.example.com", "*.org", "y.net"], gateways=["a"], http=[{"route": PRODUCTPAGE}]),
    )
    config = out["http.80"]
    assert config.ignore_port_in_host_matching is True
    assert config.validate_clusters.value is False
    # x.example.com and b.org have the same routes: one virtual host (the first name) for both.
    assert vhosts(config) == [("b.org:80", ["b.org", "x.example.com"])]
    (vhost,) = config.virtual_hosts
    assert clusters(vhost) == ["outbound|9080||productpage.default.svc.cluster.local"]
    assert vhost.include_request_attempt_count is True


def test_virtual_hosts_with_different_routes_stay_apart_sorted_by_name() -> None:
    out = routes(
        gw("a", server(80, hosts=("*",))),
        vs("b", hosts=["b.com"], gateways=["a"], http=[{"route": [{"destination": {"host": "b"}}]}]),
        vs("a", hosts=["a.com"], gateways=["a"], http=[{"route": [{"destination": {"host": "a"}}]}]),
    )
    assert vhosts(out["http.80"]) == [("a.com:80", ["a.com"]), ("b.com:80", ["b.com"])]


def test_no_virtual_service_gives_the_404_blackhole() -> None:
    (vhost,) = routes(gw("a", server(9080)))["http.9080"].virtual_hosts
    assert (vhost.name, list(vhost.domains), list(vhost.routes)) == ("blackhole:9080", ["*"], [])


def test_routes_of_several_virtual_services_for_one_host_are_appended_catch_all_last() -> None:
    out = routes(
        gw("a", server(80, hosts=("a.com",))),
        vs("a1", hosts=["a.com"], gateways=["a"], http=[{"route": [{"destination": {"host": "fallback"}}]}]),
        vs(
            "a2",
            hosts=["a.com"],
            gateways=["a"],
            http=[
                {"match": [{"uri": {"prefix": "/api"}}], "route": [{"destination": {"host": "api"}}]},
            ],
        ),
    )
    (vhost,) = out["http.80"].virtual_hosts
    assert clusters(vhost) == [
        "outbound|80||api.default.svc.cluster.local",
        "outbound|80||fallback.default.svc.cluster.local",
    ]


def test_match_gateways_select_routes_per_gateway() -> None:
    out = routes(
        gw("a", server(80, hosts=("a.com",))),
        vs(
            "a",
            hosts=["a.com"],
            gateways=["a", "mesh"],
            http=[
                {"match": [{"gateways": ["mesh"]}], "route": [{"destination": {"host": "mesh-only"}}]},
                {
                    "match": [{"gateways": ["default/a"], "uri": {"prefix": "/x"}}],
                    "route": [{"destination": {"host": "x"}}],
                },
                {
                    "match": [{"gateways": ["a"], "uri": {"prefix": "/y"}}],
                    "route": [{"destination": {"host": "y"}}],
                },
                {"route": [{"destination": {"host": "all"}}]},
            ],
        ),
    )
    (vhost,) = out["http.80"].virtual_hosts
    assert [c.split("|")[3].split(".")[0] for c in clusters(vhost)] == ["x", "y", "all"]


def test_server_host_namespace_limits_the_virtual_services() -> None:
    objects = [
        gw("a", server(80, hosts=("team/*",))),
        vs("mine", "team", hosts=["a.com"], gateways=["default/a"], http=[{"route": PRODUCTPAGE}]),
        vs("theirs", "other", hosts=["b.com"], gateways=["default/a"], http=[{"route": PRODUCTPAGE}]),
    ]
    assert vhosts(routes(*objects)["http.80"]) == [("a.com:80", ["a.com"])]


def test_virtual_service_not_exported_to_the_router_namespace_is_ignored() -> None:
    private = vs("p", hosts=["a.com"], gateways=["a"], exportTo=["."], http=[{"route": PRODUCTPAGE}])
    assert vhosts(routes(gw("a", server(80)), private)["http.80"]) == [("blackhole:80", ["*"])]
    local = ProxyView(NodeType.ROUTER, "default", labels=INGRESS.labels)
    assert vhosts(routes(gw("a", server(80)), private, view=local)["http.80"]) == [("a.com:80", ["a.com"])]


def test_https_redirect_requires_tls_on_every_server_host() -> None:
    out = routes(
        gw("a", server(80, hosts=("a.com", "ns/b.com"), tls={"httpsRedirect": True})),
        vs("a", hosts=["a.com"], gateways=["a"], http=[{"route": PRODUCTPAGE}]),
    )
    by_name = {v.name: v for v in out["http.80"].virtual_hosts}
    assert sorted(by_name) == ["a.com:80", "b.com:80"]
    assert {v.require_tls for v in by_name.values()} == {rc.VirtualHost.ALL}
    assert list(by_name["b.com:80"].routes) == []


def test_https_route_configuration_per_server() -> None:
    out = routes(
        gw(
            "a",
            server(443, "HTTPS", ("a.com",), name="https-a", tls=SIMPLE),
            server(443, "HTTPS", ("b.com",), name="https-b", tls=SIMPLE),
        ),
        vs("ab", hosts=["a.com", "b.com"], gateways=["a"], http=[{"route": PRODUCTPAGE}]),
    )
    assert {name: vhosts(config) for name, config in out.items()} == {
        "https.443.https-a.a.default": [("a.com:443", ["a.com"])],
        "https.443.https-b.a.default": [("b.com:443", ["b.com"])],
    }


def test_route_port_is_the_server_port() -> None:
    out = routes(
        f.http_service("web", port=8000),
        gw("a", server(80)),
        vs(
            "web",
            hosts=["web.example.com"],
            gateways=["a"],
            http=[
                {"match": [{"port": 81}], "route": [{"destination": {"host": "never"}}]},
                {"route": [{"destination": {"host": "web"}}, {"destination": {"host": "other"}}]},
            ],
        ),
    )
    (vhost,) = out["http.80"].virtual_hosts
    (route,) = vhost.routes
    # web has one port (8000); other is unknown, so it takes the listener's (80).
    assert [c.name for c in route.route.weighted_clusters.clusters] == [
        "outbound|8000||web.default.svc.cluster.local",
        "outbound|80||other.default.svc.cluster.local",
    ]
