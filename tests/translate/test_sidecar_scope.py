"""SidecarScope: which Sidecar applies to a proxy and what it imports.

The import cases are Istio's (pilot/pkg/model/sidecar_test.go: TestIstioEgressListenerWrapper,
TestSidecarOutboundTrafficPolicy); the selection cases follow push_context.go's doGetSidecarScope."""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf import json_format

from pilot._gen import networking_pb2 as nw
from pilot.config.objects import ConfigKey, ConfigObject
from pilot.config.protocols import Protocol
from pilot.translate.registry import Resolution, Service, ServicePort
from pilot.translate.sidecar_scope import (
    DEFAULT_SIDECAR,
    OutboundPolicy,
    classify_hosts,
    select_services,
    select_sidecar,
    sidecar_scope,
)
from tests import factories as f


def service(
    hostname: str, namespace: str, *ports: int, export_to: frozenset[str] = frozenset({"*"})
) -> Service:
    return Service(
        hostname=hostname,
        namespace=namespace,
        ports=tuple(ServicePort(p, f"http-{p}", Protocol.HTTP) for p in ports or (8000,)),
        resolution=Resolution.STATIC,
        key=ConfigKey("ServiceEntry", namespace, hostname),
        export_to=export_to,
    )


def sidecar(
    name: str, namespace: str, spec: dict[str, Any], origin: str = "sidecars.yaml"
) -> ConfigObject[nw.Sidecar]:
    message = json_format.ParseDict(spec, nw.Sidecar())
    return ConfigObject(ConfigKey("Sidecar", namespace, name), "networking.istio.io/v1", message, origin)


# --- egress hosts (TestIstioEgressListenerWrapper) ---------------------------------------------------------

A8000 = service("host", "a", 8000)
A9000 = service("host", "a", 9000)
A_ALT = service("alt", "a", 8000)
B8000 = service("host", "b", 8000)
B9000 = service("host", "b", 9000)
B_ALT = service("alt", "b", 8000)
B_WILDCARD = service("*.test.wildcard.com", "b", 8000)
ALL = [A8000, A9000, A_ALT, B8000, B9000, B_ALT]

IMPORT_CASES: list[tuple[str, list[str], list[Service], list[Service], str]] = [
    ("*/* imports only those in a", ["*/*"], ALL, [A8000, A9000, A_ALT], "a"),
    (
        "*/* will bias towards configNamespace",
        ["*/*"],
        [B8000, B9000, B_ALT, A8000, A9000, A_ALT],
        [A8000, A9000, A_ALT],
        "a",
    ),
    ("a/* imports only those in a", ["a/*"], ALL, [A8000, A9000, A_ALT], "a"),
    ("b/*, b/* imports only those in b", ["b/*", "b/*"], ALL, [B8000, B9000, B_ALT], "a"),
    ("*/alt imports alt in namespace a", ["*/alt"], ALL, [A_ALT], "a"),
    ("b/alt imports alt in b", ["b/alt"], ALL, [B_ALT], "a"),
    ("b/* doesn't import namespace a with proxy in a", ["b/*"], [A8000], [], "a"),
    ("multiple hosts selected same service", ["a/*", "*/*"], [A8000], [A8000], "a"),
    ("fall back to wildcard namespace", ["*/host", "a/alt"], ALL, [A8000, A9000, A_ALT], "a"),
    ("service is wildcard, but not listener's subset", ["b/wildcard.com"], [B_WILDCARD], [], "b"),
    ("service is wildcard", ["b/*.wildcard.com"], [B_WILDCARD], [B_WILDCARD], "b"),
    ("*/* excludes whole namespace b via ~b/*", ["*/*", "~b/*"], ALL, [A8000, A9000, A_ALT], "a"),
    ("*/* excludes exact host from all namespaces via ~/host", ["*/*", "~/host"], ALL, [A_ALT], "a"),
    ("wildcard exclusion ~b/*.wildcard.com", ["b/*", "~b/*.wildcard.com"], [B_WILDCARD], [], "b"),
    (
        "ns-scoped exclusion does not affect other namespace",
        ["*/*", "~a/*"],
        [B8000, B9000, B_ALT],
        [B8000, B9000, B_ALT],
        "b",
    ),
    ("./ is the config namespace", ["./*"], ALL, [A8000, A9000, A_ALT], "a"),
    ("~/* imports nothing", ["~/*"], ALL, [], "a"),
    ("an entry without one slash is ignored", ["host", "a/b/c"], ALL, [], "a"),
]


@pytest.mark.parametrize(
    ("entries", "services", "expected", "namespace"),
    [c[1:] for c in IMPORT_CASES],
    ids=[c[0] for c in IMPORT_CASES],
)
def test_egress_hosts_import_as_istio_does(
    entries: list[str], services: list[Service], expected: list[Service], namespace: str
) -> None:
    assert select_services(services, namespace, classify_hosts(entries, namespace)) == expected


def test_a_listener_port_keeps_only_that_port_and_drops_services_without_it() -> None:
    both = service("both.example.com", "a", 80, 9080)
    other = service("other.example.com", "a", 3306)
    spec = {"egress": [{"port": {"number": 9080, "protocol": "HTTP", "name": "http"}, "hosts": ["a/*"]}]}
    scope = sidecar_scope("a", {}, [sidecar("s", "a", spec)], [both, other])
    (listener,) = scope.egress
    assert listener.port == 9080 and listener.matches_port
    assert [(s.hostname, [p.number for p in s.ports]) for s in listener.services] == [
        ("both.example.com", [9080])
    ]


def test_an_http_proxy_listener_keeps_every_port() -> None:
    both = service("both.example.com", "a", 80, 9080)
    spec = {
        "egress": [{"port": {"number": 3128, "protocol": "HTTP_PROXY", "name": "proxy"}, "hosts": ["*/*"]}]
    }
    (listener,) = sidecar_scope("a", {}, [sidecar("s", "a", spec)], [both]).egress
    assert not listener.matches_port and listener.services == (both,)


def test_services_not_exported_to_the_proxy_namespace_are_not_candidates() -> None:
    private = service("private.example.com", "b", export_to=frozenset({"b"}))
    shared = service("shared.example.com", "b", export_to=frozenset({"a"}))
    scope = sidecar_scope("a", {}, [], [private, shared])
    assert scope.services == (shared,)


# --- which Sidecar applies -----------------------------------------------------------------------------

EGRESS = {"egress": [{"hosts": ["./*"]}]}


def test_no_sidecar_gives_the_default_scope_importing_everything() -> None:
    scope = sidecar_scope("a", {}, [], ALL)
    assert scope.name == DEFAULT_SIDECAR and scope.sidecar is None
    (listener,) = scope.egress
    assert listener.hosts == ("*/*",) and listener.port is None
    assert scope.services == (A8000, A_ALT)  # one per hostname: the first listener's first copy
    assert scope.ingress == () and scope.outbound_policy is OutboundPolicy.ALLOW_ANY


def test_a_selector_bearing_sidecar_wins_over_a_selector_less_one() -> None:
    plain = sidecar("default", "a", EGRESS, origin="a.yaml")
    selected = sidecar(
        "reviews", "a", {**EGRESS, "workloadSelector": {"labels": {"app": "reviews"}}}, origin="z.yaml"
    )
    assert select_sidecar("a", {"app": "reviews", "version": "v1"}, [plain, selected]) is selected
    assert select_sidecar("a", {"app": "ratings"}, [plain, selected]) is plain
    assert select_sidecar("a", {}, [plain, selected]) is plain


def test_an_empty_selector_selects_every_workload_and_comes_before_selector_less_ones() -> None:
    plain = sidecar("default", "a", EGRESS, origin="a.yaml")
    empty = sidecar("everyone", "a", {**EGRESS, "workloadSelector": {}}, origin="z.yaml")
    assert select_sidecar("a", {"app": "x"}, [plain, empty]) is empty


def test_among_equals_the_oldest_then_the_first_name_wins() -> None:
    """istiod's sortConfigByCreationTime (ConfigObject.precedence): creation time, none first, then
    name; the file an object came from does not count."""
    first = sidecar("b-sidecar", "a", EGRESS, origin="b.yaml")
    second = sidecar("a-sidecar", "a", EGRESS, origin="a.yaml")
    third = sidecar("c-sidecar", "a", EGRESS, origin="a.yaml")
    for order in ([first, second, third], [third, second, first]):
        assert select_sidecar("a", {}, order) is second
    timed = f.created(second, "2021-01-01T00:00:00+00:00")
    assert select_sidecar("a", {}, [first, timed, third]) is first


def test_the_root_namespace_sidecar_applies_where_none_matches_and_reads_dot_as_the_proxy_namespace() -> None:
    root = sidecar("default", "istio-system", {"egress": [{"hosts": ["./*", "istio-system/*"]}]})
    mesh_service = service("istiod.istio-system.svc.cluster.local", "istio-system")
    scope = sidecar_scope("a", {}, [root], [*ALL, mesh_service])
    assert scope.sidecar == root.key and scope.namespace == "a"
    assert {s.hostname for s in scope.services} == {"host", "alt", mesh_service.hostname}
    assert all(s.namespace in ("a", "istio-system") for s in scope.services)
    # a root Sidecar with a selector is never the mesh default; a proxy's own Sidecar beats the root's
    selective = sidecar("only", "istio-system", {**EGRESS, "workloadSelector": {"labels": {"app": "x"}}})
    assert select_sidecar("a", {"app": "x"}, [selective]) is None
    own = sidecar("own", "a", EGRESS)
    assert select_sidecar("a", {}, [root, own]) is own


def test_a_non_matching_selector_in_the_namespace_falls_back_to_the_root_sidecar() -> None:
    root = sidecar("default", "custom-root", EGRESS)
    other = sidecar("reviews", "a", {**EGRESS, "workloadSelector": {"labels": {"app": "reviews"}}})
    assert select_sidecar("a", {"app": "ratings"}, [root, other], root_namespace="custom-root") is root
    assert select_sidecar("a", {"app": "ratings"}, [root, other]) is None


def test_sidecars_of_other_namespaces_never_apply() -> None:
    assert select_sidecar("a", {}, [sidecar("default", "b", EGRESS)]) is None


# --- outbound traffic policy (TestSidecarOutboundTrafficPolicy) -------------------------------------------

POLICY_CASES = [
    ("default mesh, no Sidecar", True, None, OutboundPolicy.ALLOW_ANY),
    ("default mesh, Sidecar without policy", True, {}, OutboundPolicy.ALLOW_ANY),
    ("default mesh, Sidecar registry only", True, {"mode": "REGISTRY_ONLY"}, OutboundPolicy.REGISTRY_ONLY),
    ("default mesh, Sidecar allow any", True, {"mode": "ALLOW_ANY"}, OutboundPolicy.ALLOW_ANY),
    ("mesh registry only, no Sidecar", False, None, OutboundPolicy.REGISTRY_ONLY),
    ("mesh registry only, Sidecar without policy", False, {}, OutboundPolicy.REGISTRY_ONLY),
    (
        "mesh registry only, Sidecar registry only",
        False,
        {"mode": "REGISTRY_ONLY"},
        OutboundPolicy.REGISTRY_ONLY,
    ),
    ("mesh registry only, Sidecar allow any", False, {"mode": "ALLOW_ANY"}, OutboundPolicy.ALLOW_ANY),
]


@pytest.mark.parametrize(
    ("allow_any", "policy", "expected"), [c[1:] for c in POLICY_CASES], ids=[c[0] for c in POLICY_CASES]
)
def test_outbound_traffic_policy_is_the_sidecars_else_the_mesh(
    allow_any: bool, policy: dict[str, str] | None, expected: OutboundPolicy
) -> None:
    sidecars = []
    if policy is not None:
        spec: dict[str, Any] = dict(EGRESS)
        if policy:
            spec["outboundTrafficPolicy"] = policy
        sidecars.append(sidecar("foo", "not-default", spec))
    assert (
        sidecar_scope("not-default", {}, sidecars, [], mesh_allow_any=allow_any).outbound_policy is expected
    )


def test_egress_proxy_is_carried() -> None:
    spec = {
        "outboundTrafficPolicy": {
            "mode": "ALLOW_ANY",
            "egressProxy": {"host": "egress.example.com", "port": {"number": 80}},
        }
    }
    scope = sidecar_scope("a", {}, [sidecar("s", "a", spec)], [])
    assert scope.egress_proxy is not None and scope.egress_proxy.host == "egress.example.com"
    assert [listener.hosts for listener in scope.egress] == [("*/*",)]  # no egress: everything


# --- listeners ---------------------------------------------------------------------------------------------


def test_egress_listener_for_a_port_else_the_catch_all() -> None:
    spec = {
        "egress": [
            {"port": {"number": 9080, "protocol": "HTTP", "name": "http"}, "hosts": ["a/*"]},
            {
                "port": {"number": 0, "protocol": "HTTP", "name": "uds"},
                "bind": "unix:///sock",
                "hosts": ["a/*"],
            },
            {"hosts": ["istio-system/*"]},
        ],
        "ingress": [
            {"port": {"number": 80, "protocol": "HTTP", "name": "in"}, "defaultEndpoint": "127.0.0.1:8080"}
        ],
    }
    scope = sidecar_scope("a", {}, [sidecar("s", "a", spec)], ALL)
    http, uds, catch_all = scope.egress
    assert scope.egress_listener(9080) is http
    assert scope.egress_listener(0, "unix:///sock") is uds
    assert scope.egress_listener(0, "unix:///other") is catch_all
    assert scope.egress_listener(443) is catch_all
    assert [i.default_endpoint for i in scope.ingress] == ["127.0.0.1:8080"]
    assert uds.port == 0 and uds.bind == "unix:///sock" and not uds.matches_port


def test_capture_mode_and_bind_are_carried() -> None:
    spec = {
        "egress": [
            {
                "port": {"number": 3306, "protocol": "MYSQL", "name": "m"},
                "bind": "127.0.0.1",
                "captureMode": "NONE",
                "hosts": ["*/mysql.foo.com"],
            }
        ]
    }
    (listener,) = sidecar_scope("a", {}, [sidecar("s", "a", spec)], []).egress
    assert (listener.bind, listener.capture_mode, listener.protocol) == ("127.0.0.1", "NONE", Protocol.MYSQL)


def test_virtual_service_hosts_a_listener_imports() -> None:
    (listener,) = sidecar_scope(
        "a", {}, [sidecar("s", "a", {"egress": [{"hosts": ["./*.example.com", "*/exact.org"]}]})], []
    ).egress
    assert listener.imports_virtual_service_host("api.example.com", "a")
    assert listener.imports_virtual_service_host("*.com", "a")  # VSMatches overlaps in both directions
    assert not listener.imports_virtual_service_host("api.example.com", "b")
    assert listener.imports_virtual_service_host("exact.org", "b")
    assert not listener.imports_virtual_service_host("other.org", "a")
