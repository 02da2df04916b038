"""ServiceIndex (Service + EndpointSlice + Pod → ServiceEntry) without a server: conversion rules and cost."""

from __future__ import annotations

from typing import Any

import pytest

from pilot.config import kube_core
from pilot.config.kube_core import convert_protocol
from pilot.config.kube_services import SYNTHETIC_PREFIX, ServiceIndex, services_in, synthetic_key
from pilot.config.objects import ConfigKey
from pilot.config.protocols import Protocol, port_protocol
from tests.support.kube_api import endpoint_slice, pod, service


@pytest.mark.parametrize(
    ("port", "name", "protocol", "app_protocol", "expected"),
    [
        (80, "http", "TCP", None, "HTTP"),
        (80, "http-web", "TCP", None, "HTTP"),
        (80, "HTTP2-x", "TCP", None, "HTTP2"),
        (80, "grpc-web-ui", "TCP", None, "GRPC-Web"),
        (80, "grpc-api", "TCP", None, "GRPC"),
        (80, "web", "TCP", None, ""),  # unknown: Istio sniffs
        (3306, "db", "TCP", None, "TCP"),  # well-known server-first port
        (27017, "", "TCP", None, "TCP"),
        (53, "dns", "UDP", None, "UDP"),
        (80, "udp-x", "TCP", None, "TCP"),  # a TCP port named udp-* stays TCP
        (80, "web", "TCP", "http", "HTTP"),  # appProtocol wins over the name
        (80, "http", "TCP", "kubernetes.io/h2c", "HTTP2"),
        (80, "x", "TCP", "kubernetes.io/ws", "HTTP"),
        (80, "x", "TCP", "kubernetes.io/wss", "HTTPS"),
        (80, "x", "TCP", "mongo", "Mongo"),
        (80, "tls-x", "TCP", None, "TLS"),
    ],
)
def test_convert_protocol(port: int, name: str, protocol: str, app_protocol: str | None, expected: str):
    assert convert_protocol(port, name, protocol, app_protocol) == expected


def test_protocol_spellings_are_the_translators():
    for text in (
        "TCP",
        "UDP",
        "GRPC",
        "GRPC-Web",
        "HTTP",
        "HTTP_PROXY",
        "HTTP2",
        "HTTPS",
        "TLS",
        "Mongo",
        "Redis",
        "MySQL",
        "Thrift",
    ):
        assert port_protocol(convert_protocol(80, text.lower(), "TCP", None), "") is not Protocol.UNSUPPORTED


def kube_index(cluster_domain: str = "cluster.local") -> ServiceIndex:
    return ServiceIndex(cluster_domain, origin_of=lambda namespace, name: f"kube:Service/{namespace}/{name}")


def feed(index: ServiceIndex, obj: dict[str, Any], delete: bool = False) -> None:
    meta = obj["metadata"]
    namespace, name = meta.get("namespace", "default"), meta["name"]
    record, problems = kube_core.READERS[obj["kind"]](obj)
    assert problems == []
    if obj["kind"] == "Service":
        index.service(namespace, name, None if delete else record)  # type: ignore[arg-type]
    elif obj["kind"] == "EndpointSlice":
        index.endpoint_slice(namespace, name, None if delete else record)  # type: ignore[arg-type]
    else:
        index.pod(namespace, name, None if delete else record)  # type: ignore[arg-type]


def test_synthetic_key_cannot_clash_and_sorts_first():
    key = synthetic_key("default", "reviews")
    assert key.kind == "ServiceEntry" and key.name == "(svc)reviews"
    # Before any valid name ("0" is the smallest first character one can have): it wins a host tie.
    assert key < ConfigKey("ServiceEntry", "default", "0")


def test_endpoints_merge_slices_skip_unready_and_carry_pod_labels():
    index = kube_index("example.org")
    feed(index, service("reviews", "ns", cluster_ip="10.0.0.1"))
    feed(index, pod("p1", "ns", ip="10.1.0.1", labels={"version": "v1"}))
    feed(
        index,
        endpoint_slice(
            "s1", "reviews", "ns", endpoints=[("10.1.0.1", "p1", True), ("10.1.0.5", None, False)]
        ),
    )
    feed(
        index,
        endpoint_slice("s2", "reviews", "ns", endpoints=[("10.1.0.1", "p1", None), ("10.1.0.3", None, None)]),
    )
    ((_, origin, entry),) = index.flush()
    assert origin == "kube:Service/ns/reviews" and entry is not None
    spec: Any = entry.spec
    assert list(spec.hosts) == ["reviews.ns.svc.example.org"]
    assert [(e.address, dict(e.labels), dict(e.ports)) for e in spec.endpoints] == [
        ("10.1.0.1", {"version": "v1"}, {"http": 9080}),
        ("10.1.0.3", {}, {"http": 9080}),
    ]
    assert index.flush() == []  # nothing changed since
    assert services_in([entry]) == [entry]


def test_a_burst_for_one_service_is_one_rebuild(monkeypatch: pytest.MonkeyPatch):
    index = kube_index()
    for i in range(50):
        feed(index, service(f"svc{i}", cluster_ip=f"10.0.0.{i}"))
    index.flush()
    builds: list[tuple[str, str]] = []
    original = ServiceIndex._build

    def counting(self: ServiceIndex, key: tuple[str, str]) -> Any:
        builds.append(key)
        return original(self, key)

    monkeypatch.setattr(ServiceIndex, "_build", counting)
    for i in range(1000):
        feed(index, endpoint_slice("svc7-a", "svc7", endpoints=[(f"10.9.{i // 250}.{i % 250}", None, True)]))
    ((_, _, entry),) = index.flush()
    assert builds == [("default", "svc7")]  # not the other 49, and once, not 1000 times
    assert entry is not None and [e.address for e in entry.spec.endpoints] == ["10.9.3.249"]  # type: ignore[attr-defined]


def test_pod_events_touch_only_the_services_using_the_pod():
    index = kube_index()
    feed(index, service("a"))
    feed(index, service("b"))
    feed(index, pod("p", ip="10.1.0.1", labels={"v": "1"}))
    feed(index, endpoint_slice("a-1", "a", endpoints=[("10.1.0.1", "p", True)]))
    index.flush()
    feed(index, pod("p", ip="10.1.0.1", labels={"v": "1"}))  # a status update: same labels
    assert index.flush() == []
    feed(index, pod("p", ip="10.1.0.1", labels={"v": "2"}))
    assert [origin for _, origin, _ in index.flush()] == ["kube:Service/default/a"]
    feed(index, endpoint_slice("a-1", "a", endpoints=[]))
    index.flush()
    feed(index, pod("p", ip="10.1.0.1", labels={"v": "3"}))  # no longer an endpoint of anything
    assert index.flush() == []


def test_deleting_a_service_removes_its_entry():
    index = kube_index()
    feed(index, service("a"))
    index.flush()
    feed(index, service("a"), delete=True)
    assert index.flush() == [(("default", "a"), "kube:Service/default/a", None)]
    assert len(index) == 0


def test_fqdn_slices_are_ignored():
    index = kube_index()
    feed(index, service("a"))
    fqdn = {**endpoint_slice("a-1", "a", endpoints=[("example.com", None, True)]), "addressType": "FQDN"}
    feed(index, fqdn)
    ((_, _, entry),) = index.flush()
    assert entry is not None and len(entry.spec.endpoints) == 0  # type: ignore[attr-defined]


def test_prefix_is_not_a_valid_kubernetes_name():
    from pilot.config.validation.common import is_k8s_subdomain

    assert not is_k8s_subdomain(SYNTHETIC_PREFIX + "reviews")


def test_endpoints_from_pods_resolve_named_target_ports_and_follow_pod_changes():
    """The folder's stand-in for the EndpointSlice controller: a named targetPort is looked up among each
    Pod's container ports, and a Pod without it is no endpoint of that port."""
    index = ServiceIndex(
        origin_of=lambda namespace, name: f"folder:Service/{namespace}/{name}", endpoints_from_pods=True
    )
    feed(index, service("web", ports=[{"name": "http", "port": 80, "targetPort": "web"}]))
    with_port = pod("web-1", ip="10.2.0.1", labels={"app": "web"})
    with_port["spec"]["containers"][0]["ports"] = [{"name": "web", "containerPort": 8080}]
    feed(index, with_port)
    feed(index, pod("web-2", ip="10.2.0.2", labels={"app": "web"}))  # no port named "web"
    feed(index, pod("other", ip="10.2.0.3", labels={"app": "other"}))
    ((_, origin, entry),) = index.flush()
    assert origin == "folder:Service/default/web"
    assert entry is not None
    assert [(e.address, dict(e.ports)) for e in entry.spec.endpoints] == [("10.2.0.1", {"http": 8080})]  # type: ignore[attr-defined]
    feed(index, pod("web-1", ip="10.2.0.1", labels={"app": "web"}), delete=True)
    ((_, _, entry),) = index.flush()
    assert entry is not None and list(entry.spec.endpoints) == []  # type: ignore[attr-defined]
    # An EndpointSlice for the Service: it, not the Pods, gives the endpoints.
    feed(index, with_port)
    feed(index, endpoint_slice("web-a", "web", endpoints=[("10.2.0.9", None, True)], ports=[("http", 9090)]))
    ((_, _, entry),) = index.flush()
    assert [(e.address, dict(e.ports)) for e in entry.spec.endpoints] == [("10.2.0.9", {"http": 9090})]  # type: ignore[union-attr]


def test_the_cluster_source_never_makes_endpoints_from_pods():
    index = kube_index()
    feed(index, service("web"))
    feed(index, pod("web-1", ip="10.2.0.1", labels={"app": "web"}))
    ((_, _, entry),) = index.flush()
    assert entry is not None and list(entry.spec.endpoints) == []  # type: ignore[attr-defined]


def test_a_pod_change_rebuilds_only_the_services_it_matched_or_matches():
    index = ServiceIndex(origin_of=lambda namespace, name: f"{namespace}/{name}", endpoints_from_pods=True)
    for name in ("a", "b", "c"):
        feed(index, service(name))
    index.flush()
    feed(index, pod("p", ip="10.3.0.1", labels={"app": "a"}))
    assert [origin for _, origin, _ in index.flush()] == ["default/a"]
    feed(index, pod("p", ip="10.3.0.1", labels={"app": "b"}))  # moves from a to b
    assert [origin for _, origin, _ in index.flush()] == ["default/a", "default/b"]
