"""istiod's own expectations for a sidecar's route tables, rebuilt: which route a domain of route
configuration ``80`` / ``8080`` gets, for VirtualServices that compete for a host (creation time,
then name and namespace; across namespaces too) and for VirtualService hosts that are no service.

Source: istio/istio pilot/pkg/networking/core/sidecar_simulation_test.go, ``TestSidecarRoutes``
(the ``virtualservice`` variant; the services are its ``knownServices``, here as ServiceEntries with
the same hosts, addresses and ports). Each case's ``expected`` maps a domain to the clusters of its
virtual host's routes (xdstest.ExtractVirtualHosts), None where no virtual host has the domain. The
cases with a Sidecar resource (Istio's scArgs) are ``SIDECAR_CASES``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from envoy.config.route.v3 import route_pb2

from pilot.config.objects import ConfigObject
from pilot.translate.proxy import Proxy
from pilot.translate.routes import build_routes
from pilot.translate.views import view_of
from tests import factories as f

OLDER = "2019-01-01T00:00:00+00:00"
BASE = "2020-01-01T00:00:00+00:00"
NEWER = "2021-01-01T00:00:00+00:00"
KNOWN = "known.default.svc.cluster.local"
ALT_KNOWN = "alt-known.default.svc.cluster.local"


def _service(name: str, namespace: str, address: str) -> ConfigObject:
    return f.service_entry(
        name,
        namespace,
        hosts=[f"{name}.{namespace}.svc.cluster.local"],
        addresses=[address],
        ports=[
            {"number": 80, "name": "http", "protocol": "HTTP"},
            {"number": 8080, "name": "http2", "protocol": "HTTP"},
        ],
        resolution="STATIC",
        location="MESH_INTERNAL",
    )


KNOWN_SERVICES = (
    _service("known", "default", "2.0.0.0"),
    _service("alt-known", "default", "2.0.0.1"),
    _service("not-default", "not-default", "2.0.0.2"),
)


def vs(
    namespace: str,
    match: str | list[str],
    dest: str,
    *,
    port: int = 0,
    port_match: int = 0,
    time: str = BASE,
) -> ConfigObject:
    """Istio's vsArgs template: one http route to ``dest``, named after its namespace, match and dest."""
    matches = [match] if isinstance(match, str) else match
    destination: dict[str, object] = {"host": dest}
    if port:
        destination["port"] = {"number": port}
    http: dict[str, object] = {"route": [{"destination": destination}]}
    if port_match:
        http["match"] = [{"port": port_match}]
    name = f"{namespace}{matches[0].replace('*', 'wild')}{dest}"
    return f.created(f.virtual_service(name, namespace, hosts=matches, http=[http]), time)


@dataclass(frozen=True)
class Case:
    name: str
    config: tuple[ConfigObject, ...]
    namespace: str
    route: str
    expected: dict[str, list[str] | None] | None = field(default_factory=dict)


CASES = [
    Case(
        "simple port 80",
        (vs("default", KNOWN, ALT_KNOWN),),
        "default",
        "80",
        {KNOWN: [f"outbound|80||{ALT_KNOWN}"]},
    ),
    Case(
        "simple port 8080",
        (vs("default", KNOWN, ALT_KNOWN),),
        "default",
        "8080",
        {KNOWN: [f"outbound|8080||{ALT_KNOWN}"]},
    ),
    Case(
        "unknown port 80",
        (vs("default", "foo.default.svc.cluster.local", "foo.default.svc.cluster.local"),),
        "default",
        "80",
        {"foo.default.svc.cluster.local": ["outbound|80||foo.default.svc.cluster.local"]},
    ),
    Case(
        "unknown port 8080",
        (vs("default", "foo.default.svc.cluster.local", "foo.default.svc.cluster.local"),),
        "default",
        "8080",
        {"foo.default.svc.cluster.local": None},  # for unknown services, only port 80
    ),
    Case(
        "unknown port 8080 match 8080",
        (vs("default", "foo.default.svc.cluster.local", "foo.default.svc.cluster.local", port_match=8080),),
        "default",
        "8080",
        {"foo.default.svc.cluster.local": None},
    ),
    Case(
        "unknown port 8080 dest 8080",
        (vs("default", "foo.default.svc.cluster.local", "foo.default.svc.cluster.local", port=8080),),
        "default",
        "8080",
        {"foo.default.svc.cluster.local": None},
    ),
    Case(
        "producer rule port 80",
        (vs("default", KNOWN, ALT_KNOWN),),
        "not-default",
        "80",
        {KNOWN: [f"outbound|80||{ALT_KNOWN}"]},
    ),
    Case(
        "producer rule port 8080",
        (vs("default", KNOWN, ALT_KNOWN),),
        "not-default",
        "8080",
        {KNOWN: [f"outbound|8080||{ALT_KNOWN}"]},
    ),
    Case(
        "consumer rule port 80",
        (vs("not-default", KNOWN, ALT_KNOWN),),
        "not-default",
        "80",
        {KNOWN: [f"outbound|80||{ALT_KNOWN}"]},
    ),
    Case(
        "consumer rule port 8080",
        (vs("not-default", KNOWN, ALT_KNOWN),),
        "not-default",
        "8080",
        {KNOWN: [f"outbound|8080||{ALT_KNOWN}"]},
    ),
    Case(
        "arbitrary rule port 80",
        (vs("arbitrary", KNOWN, ALT_KNOWN),),
        "not-default",
        "80",
        {KNOWN: [f"outbound|80||{ALT_KNOWN}"]},
    ),
    Case(
        "arbitrary rule port 8080",
        (vs("arbitrary", KNOWN, ALT_KNOWN),),
        "not-default",
        "8080",
        {KNOWN: [f"outbound|8080||{ALT_KNOWN}"]},
    ),
    *(
        Case(
            f"multiple rules {port}",
            (
                vs("arbitrary", KNOWN, "arbitrary.example.com", time=OLDER),
                vs("default", KNOWN, "default.example.com", time=BASE),
                vs("not-default", KNOWN, "not-default.example.com", time=NEWER),
            ),
            "not-default",
            port,
            {KNOWN: [f"outbound|{port}||arbitrary.example.com"]},  # oldest wins
        )
        for port in ("80", "8080")
    ),
    Case(
        "wildcard random",
        (vs("default", "*.unknown.example.com", "arbitrary.example.com"),),
        "default",
        "80",
        {
            ALT_KNOWN: [f"outbound|80||{ALT_KNOWN}"],
            KNOWN: [f"outbound|80||{KNOWN}"],
            # matches no service: its own virtual host
            "*.unknown.example.com": ["outbound|80||arbitrary.example.com"],
        },
    ),
    *(
        Case(
            name,
            (
                vs(wild_ns, "*.cluster.local", "wild.example.com", time=wild_time),
                vs("default", KNOWN, "explicit.example.com", time=exact_time),
            ),
            "default",
            "80",
            {
                ALT_KNOWN: ["outbound|80||wild.example.com"],
                KNOWN: ["outbound|80||explicit.example.com"],  # the exact host wins, older or not
                "*.cluster.local": None,  # it matched services: no virtual host of its own
            },
        )
        for name, wild_ns, wild_time, exact_time in (
            ("wildcard first then explicit", "default", OLDER, NEWER),
            ("explicit first then wildcard", "default", NEWER, OLDER),
            ("wildcard and explicit cross namespace", "not-default", OLDER, NEWER),
        )
    ),
    Case(
        "wildcard and explicit unknown",
        (
            vs("default", "*.tld", "wild.example.com", time=OLDER),
            vs("default", "example.tld", "explicit.example.com", time=NEWER),
        ),
        "default",
        "80",
        {
            KNOWN: [f"outbound|80||{KNOWN}"],
            "*.tld": ["outbound|80||wild.example.com"],
            "example.tld": ["outbound|80||explicit.example.com"],
            "*.example.tld": None,
        },
    ),
    Case(
        "same namespace conflict",
        (
            vs("default", KNOWN, "old.example.com", time=OLDER),
            vs("default", KNOWN, "new.example.com", time=NEWER),
        ),
        "default",
        "80",
        {KNOWN: ["outbound|80||old.example.com"]},  # oldest wins
    ),
    Case(
        "cross namespace conflict",
        (
            vs("not-default", KNOWN, "producer.example.com", time=OLDER),
            vs("default", KNOWN, "consumer.example.com", time=NEWER),
        ),
        "default",
        "80",
        {KNOWN: ["outbound|80||producer.example.com"]},  # oldest wins, not the proxy's namespace
    ),
]


def virtual_hosts(config: route_pb2.RouteConfiguration) -> dict[str, list[str]]:
    """Istio's xdstest.ExtractVirtualHosts: each domain -> the sorted clusters of its routes."""
    out: dict[str, list[str]] = {}
    for vh in config.virtual_hosts:
        clusters = sorted(r.route.cluster for r in vh.routes if r.route.cluster)
        for domain in vh.domains:
            out[domain] = clusters
    return out


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_istio_sidecar_routes(case: Case) -> None:
    context = f.push_context(*KNOWN_SERVICES, *case.config)
    configs = dict(build_routes(f.sidecar(case.namespace), context))
    got = virtual_hosts(configs[case.route])
    for domain, clusters in (case.expected or {}).items():
        assert got.get(domain) == clusters, f"{case.name}: {domain}"


def test_order_does_not_depend_on_input_order() -> None:
    """The winner is the same whichever order the objects arrive in (start-up or while running)."""
    older = vs("not-default", KNOWN, "producer.example.com", time=OLDER)
    newer = vs("default", KNOWN, "consumer.example.com", time=NEWER)
    for objects in ((older, newer), (newer, older)):
        routes = dict(build_routes(f.sidecar("default"), f.push_context(*KNOWN_SERVICES, *objects)))
        assert virtual_hosts(routes["80"])[KNOWN] == ["outbound|80||producer.example.com"]


def test_without_timestamps_name_then_namespace_decides() -> None:
    """Objects without a creation time (files in a folder) sort first, as Go's zero time does in
    istiod, and among themselves by name, then namespace."""
    untimed_b = f.virtual_service(
        "b", "aaa", hosts=[KNOWN], http=[{"route": [{"destination": {"host": "b.example.com"}}]}]
    )
    untimed_a = f.virtual_service(
        "a", "zzz", hosts=[KNOWN], http=[{"route": [{"destination": {"host": "a.example.com"}}]}]
    )
    timed = vs("default", KNOWN, "timed.example.com", time=OLDER)
    routes = dict(
        build_routes(f.sidecar("default"), f.push_context(*KNOWN_SERVICES, timed, untimed_b, untimed_a))
    )
    assert virtual_hosts(routes["80"])[KNOWN] == ["outbound|80||a.example.com"]


def test_private_virtual_service_comes_first() -> None:
    """istiod lists a namespace's private VirtualServices before exported and public ones."""
    public = vs("default", KNOWN, "public.example.com", time=OLDER)
    private = f.created(
        f.virtual_service(
            "mine",
            "default",
            hosts=[KNOWN],
            exportTo=["."],
            http=[{"route": [{"destination": {"host": "private.example.com"}}]}],
        ),
        NEWER,
    )
    context = f.push_context(*KNOWN_SERVICES, public, private)
    own = virtual_hosts(dict(build_routes(f.sidecar("default"), context))["80"])
    other = virtual_hosts(dict(build_routes(f.sidecar("not-default"), context))["80"])
    assert own[KNOWN] == ["outbound|80||private.example.com"]
    assert other[KNOWN] == ["outbound|80||public.example.com"]


def sidecar_resource(namespace: str, *hosts: str) -> ConfigObject:
    """Istio's scArgs: a namespace's Sidecar with one egress listener importing ``hosts``."""
    return f.config("Sidecar", namespace, {"egress": [{"hosts": list(hosts)}]}, namespace)


SIDECAR_CASES = [
    Case(
        "wildcard match with sidecar",
        (
            vs("default", "*.cluster.local", "arbitrary.example.com"),
            sidecar_resource("default", "*/*.cluster.local"),
        ),
        "default",
        "80",
        {
            ALT_KNOWN: ["outbound|80||arbitrary.example.com"],
            KNOWN: ["outbound|80||arbitrary.example.com"],
            "*.cluster.local": None,
        },
    ),
    Case(
        "wildcard and explicit with sidecar",
        (
            vs("default", "*.cluster.local", "wild.example.com", time=OLDER),
            vs("default", KNOWN, "explicit.example.com", time=NEWER),
            sidecar_resource("default", f"default/{KNOWN}", f"default/{ALT_KNOWN}"),
        ),
        "default",
        "80",
        {
            ALT_KNOWN: ["outbound|80||wild.example.com"],  # the VirtualService attaches though not imported
            KNOWN: ["outbound|80||explicit.example.com"],
            "*.cluster.local": None,
        },
    ),
    Case(
        "explicit first then wildcard with sidecar cross namespace",
        (
            vs("not-default", "*.cluster.local", "wild.example.com", time=OLDER),
            vs("default", KNOWN, "explicit.example.com", time=NEWER),
            sidecar_resource("default", f"default/{KNOWN}", f"default/{ALT_KNOWN}"),
        ),
        "default",
        "80",
        {
            ALT_KNOWN: [f"outbound|80||{ALT_KNOWN}"],
            KNOWN: ["outbound|80||explicit.example.com"],
            "*.cluster.local": None,
        },
    ),
    Case(
        "explicit match with wildcard sidecar",
        (
            vs("default", "arbitrary.svc.cluster.local", "arbitrary.svc.cluster.local"),
            sidecar_resource("default", "*/*.cluster.local"),
        ),
        "default",
        "80",
        {"arbitrary.svc.cluster.local": ["outbound|80||arbitrary.svc.cluster.local"]},
    ),
    Case(
        "wildcard match with explicit sidecar",
        (
            vs("default", "*.cluster.local", "arbitrary.example.com"),
            sidecar_resource("default", f"*/{KNOWN}"),
        ),
        "default",
        "80",
        {KNOWN: ["outbound|80||arbitrary.example.com"], "*.cluster.local": None},
    ),
    Case(
        "non-service wildcard match with explicit sidecar",
        (
            vs("default", "*.example.org", "arbitrary.example.com"),
            sidecar_resource("default", "*/explicit.example.org", f"*/{ALT_KNOWN}"),
        ),
        "default",
        "80",
        {
            KNOWN: None,  # not imported
            ALT_KNOWN: [f"outbound|80||{ALT_KNOWN}"],
            "*.example.org": ["outbound|80||arbitrary.example.com"],
        },
    ),
    Case(
        "sidecar filter",
        (
            vs("not-default", "*.default.svc.cluster.local", "arbitrary.example.com"),
            vs("default", "explicit.default.svc.cluster.local", "explicit.default.svc.cluster.local"),
            sidecar_resource(
                "not-default",
                "not-default/*.default.svc.cluster.local",
                "not-default/not-default.not-default.svc.cluster.local",
            ),
        ),
        "not-default",
        "80",
        {
            "*.default.svc.cluster.local": ["outbound|80||arbitrary.example.com"],
            "explicit.default.svc.cluster.local": None,
            "not-default.not-default.svc.cluster.local": [
                "outbound|80||not-default.not-default.svc.cluster.local"
            ],
        },
    ),
    Case(
        "import only a unknown service route",
        (
            vs("default", "foo.default.svc.cluster.local", "example.com"),
            sidecar_resource("default", "*/foo.default.svc.cluster.local"),
        ),
        "default",
        "80",
        None,  # no service on the port: no route configuration at all
    ),
    Case(
        "multi-host import single",
        (vs("default", [KNOWN, ALT_KNOWN], "example.com"), sidecar_resource("default", f"*/{KNOWN}")),
        "default",
        "80",
        {KNOWN: ["outbound|80||example.com"], ALT_KNOWN: ["outbound|80||example.com"]},  # istio/istio#37087
    ),
]


@pytest.mark.parametrize("case", SIDECAR_CASES, ids=lambda c: c.name)
def test_istio_sidecar_routes_with_sidecar(case: Case) -> None:
    context = f.push_context(*KNOWN_SERVICES, *case.config)
    proxy = Proxy.from_node(
        f"sidecar~10.0.0.1~pod.{case.namespace}~{case.namespace}.svc.cluster.local",
        {"INTERCEPTION_MODE": "REDIRECT"},
    )
    configs = dict(build_routes(view_of(proxy, context), context))
    if case.expected is None:
        assert case.route not in configs
        return
    got = virtual_hosts(configs[case.route])
    for domain, clusters in case.expected.items():
        assert got.get(domain) == clusters, f"{case.name}: {domain}"
