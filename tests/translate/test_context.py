from __future__ import annotations

from datetime import timedelta

import pytest

from pilot._gen import networking_pb2 as nw
from pilot.translate.context import Protocol, Resolution, port_protocol
from tests import factories as f

REVIEWS = "reviews.default.svc.cluster.local"


@pytest.mark.parametrize(
    ("protocol", "name", "expected"),
    [
        ("HTTP", "", Protocol.HTTP),
        ("http2", "tcp-x", Protocol.HTTP2),
        ("GRPC-Web", "", Protocol.GRPC_WEB),
        ("", "http", Protocol.HTTP),
        ("", "http-web", Protocol.HTTP),
        ("", "grpc-api", Protocol.GRPC),
        ("", "http2", Protocol.HTTP2),
        ("", "web", Protocol.UNSUPPORTED),
        ("", "", Protocol.UNSUPPORTED),
        ("Mongo", "", Protocol.MONGO),
        ("nonsense", "http", Protocol.UNSUPPORTED),
    ],
)
def test_port_protocol(protocol: str, name: str, expected: Protocol) -> None:
    assert port_protocol(protocol, name) is expected


def test_version_is_the_store_revision() -> None:
    context = f.push_context(revision=42)
    assert context.version == "42" and context.revision == 42


def test_service_entry_hosts_become_services() -> None:
    context = f.push_context(
        f.service_entry(
            "se",
            hosts=["reviews", "api.example.com"],
            resolution="DNS",
            ports=[{"number": 80, "name": "http", "targetPort": 8080}],
        )
    )
    by_host = {s.hostname: s for s in context.services}
    assert set(by_host) == {REVIEWS, "api.example.com"}
    api = by_host["api.example.com"]
    assert api.resolution is Resolution.DNS and api.mesh_external
    assert api.ports[0].protocol is Protocol.HTTP and api.ports[0].target_port == 8080
    # DNS without endpoints: Envoy resolves the host itself.
    assert [e.address for e in api.endpoints] == ["api.example.com"]
    assert api.endpoints[0].port_for(api.ports[0]) == 8080


def test_workload_selector_selects_workload_entries_of_its_namespace() -> None:
    context = f.push_context(
        f.service_entry(
            "vm",
            hosts=["vm.example.com"],
            resolution="STATIC",
            ports=[{"number": 80, "name": "http"}],
            workloadSelector={"labels": {"app": "vm"}},
        ),
        f.config("WorkloadEntry", "vm-1", {"address": "10.0.0.1", "labels": {"app": "vm"}}),
        f.config("WorkloadEntry", "vm-2", {"address": "10.0.0.2"}, labels={"app": "vm"}),
        f.config("WorkloadEntry", "other", {"address": "10.0.0.3", "labels": {"app": "other"}}),
        f.config(
            "WorkloadEntry", "elsewhere", {"address": "10.0.0.4", "labels": {"app": "vm"}}, namespace="x"
        ),
    )
    assert [e.address for e in context.services[0].endpoints] == ["10.0.0.1", "10.0.0.2"]


def test_export_to_hides_services() -> None:
    context = f.push_context(
        f.http_service("public"),
        f.http_service("private", exportTo=["."]),
        f.http_service("team", exportTo=["team"]),
        f.http_service("hidden", exportTo=["~"]),
    )
    seen = lambda ns: [s.hostname.split(".")[0] for s in context.scope(ns).services]  # noqa: E731
    assert seen("default") == ["private", "public"]
    assert seen("team") == ["public", "team"]
    assert seen("other") == ["public"]


def test_same_host_twice_prefers_own_namespace_then_first() -> None:
    host = "shared.example.com"
    context = f.push_context(
        f.service_entry("a", "ns-a", hosts=[host], ports=[{"number": 80, "name": "http"}]),
        f.service_entry("b", "ns-b", hosts=[host], ports=[{"number": 81, "name": "http"}]),
    )
    assert context.scope("ns-b").service(host).namespace == "ns-b"
    assert context.scope("ns-a").service(host).namespace == "ns-a"
    assert context.scope("other").service(host).namespace == "ns-a"


def test_virtual_services_visible_and_bound_to_mesh() -> None:
    context = f.push_context(
        f.http_service("reviews"),
        f.virtual_service("gw-only", hosts=["reviews"], gateways=["istio-system/gw"]),
        f.virtual_service("mesh", hosts=["reviews"], gateways=["mesh", "istio-system/gw"]),
        f.virtual_service("wild", hosts=["*.svc.cluster.local"]),
        f.virtual_service("private", "other", hosts=["reviews.default.svc.cluster.local"], exportTo=["."]),
        f.virtual_service("mine", "team", hosts=["reviews.default.svc.cluster.local"]),
    )
    names = lambda ns: [vs.key.name for vs in context.scope(ns).virtual_services(REVIEWS)]  # noqa: E731
    assert names("default") == ["mesh", "mine", "wild"]
    # Exact hosts before wildcards; the proxy's own namespace does not win by itself (istiod: both
    # are public, so creation time, then name); a private VirtualService comes first.
    assert names("team") == ["mesh", "mine", "wild"]
    assert names("other") == ["private", "mesh", "mine", "wild"]


def test_destination_rule_lookup_order() -> None:
    def rule(name: str, namespace: str, **extra: object) -> object:
        return f.destination_rule(name, namespace, host=REVIEWS, **extra)

    base = [f.http_service("reviews")]
    context = f.push_context(
        *base, rule("root", "istio-system"), rule("svc", "default"), rule("mine", "client")
    )
    assert context.scope("client").destination_rule(REVIEWS).key.name == "mine"
    assert context.scope("default").destination_rule(REVIEWS).key.name == "svc"
    assert context.scope("elsewhere").destination_rule(REVIEWS).key.name == "svc"
    context = f.push_context(*base, rule("root", "istio-system"), rule("svc", "default", exportTo=["."]))
    assert context.scope("elsewhere").destination_rule(REVIEWS).key.name == "root"
    assert context.scope("default").destination_rule(REVIEWS).key.name == "svc"
    context = f.push_context(*base, rule("root", "istio-system", exportTo=["."]))
    assert context.scope("elsewhere").destination_rule(REVIEWS) is None


def test_destination_rule_most_specific_host_and_merge() -> None:
    context = f.push_context(
        f.http_service("reviews"),
        f.destination_rule("wild", host="*.default.svc.cluster.local", subsets=[{"name": "w"}]),
        f.destination_rule("a", host="reviews", subsets=[{"name": "v1", "labels": {"version": "v1"}}]),
        f.destination_rule(
            "b",
            host="reviews",
            trafficPolicy={"loadBalancer": {"simple": "RANDOM"}},
            subsets=[{"name": "v1"}, {"name": "v2", "labels": {"version": "v2"}}],
        ),
    )
    rule = context.scope("default").destination_rule(REVIEWS)
    assert rule.key.name == "a"
    assert [s.name for s in rule.spec.subsets] == ["v1", "v2"]
    assert dict(rule.spec.subsets[0].labels) == {"version": "v1"}
    assert rule.spec.traffic_policy.load_balancer.simple == rule.spec.traffic_policy.load_balancer.RANDOM


def test_destination_rule_with_workload_selector_is_not_used_for_sidecars() -> None:
    context = f.push_context(
        f.http_service("reviews"),
        f.destination_rule("sel", host="reviews", workloadSelector={"matchLabels": {"app": "x"}}),
    )
    assert context.scope("default").destination_rule(REVIEWS) is None


def test_mesh_defaults_and_mesh_config() -> None:
    mesh = f.push_context().mesh
    assert mesh.allow_any and mesh.connect_timeout == timedelta(seconds=10)
    assert mesh.root_namespace == "istio-system"
    mesh = f.push_context(
        f.mesh_config(
            outboundTrafficPolicy={"mode": "REGISTRY_ONLY"},
            connectTimeout="2s",
            rootNamespace="mesh-root",
            defaultHttpRetryPolicy={"attempts": 5},
        )
    ).mesh
    assert not mesh.allow_any and mesh.connect_timeout == timedelta(seconds=2)
    assert mesh.root_namespace == "mesh-root" and mesh.default_retry_policy.attempts == 5


def test_push_context_is_frozen() -> None:
    context = f.push_context(f.http_service("reviews"))
    with pytest.raises(AttributeError):
        context.revision = 2  # type: ignore[misc]
    assert context.scope("default") is context.scope("default")


def test_destination_rules_for_one_host_merge_oldest_first() -> None:
    """istiod's sortConfigBySelectorAndCreationTime then mergeDestinationRule: the oldest rule's
    traffic policy wins, whatever the names; later rules add subsets with new names."""
    newer = f.created(
        f.destination_rule(
            "a-newer",
            host=REVIEWS,
            trafficPolicy={"loadBalancer": {"simple": "RANDOM"}},
            subsets=[{"name": "v2", "labels": {"version": "v2"}}],
        ),
        "2021-01-01T00:00:00+00:00",
    )
    older = f.created(
        f.destination_rule(
            "z-older",
            host=REVIEWS,
            trafficPolicy={"loadBalancer": {"simple": "LEAST_REQUEST"}},
            subsets=[{"name": "v1", "labels": {"version": "v1"}}],
        ),
        "2019-01-01T00:00:00+00:00",
    )
    rule = f.push_context(f.http_service("reviews"), newer, older).scope("default").destination_rule(REVIEWS)
    assert rule.key.name == "z-older"
    assert rule.spec.traffic_policy.load_balancer.simple == nw.LoadBalancerSettings.LEAST_REQUEST
    assert [s.name for s in rule.spec.subsets] == ["v1", "v2"]
