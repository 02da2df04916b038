"""KubeSource with the real ``kubernetes`` client against the fake API server (tests/support/kube_api.py).

Each test names the API-server behaviour it relies on; docs/kubernetes.md lists what the fake reproduces.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import kubernetes.client
import pytest

from pilot.config.kube_services import synthetic_key
from pilot.config.objects import ConfigEvent, ConfigKey
from pilot.config.protocols import Protocol
from pilot.config.store import ConfigStore
from pilot.errors import ConfigError
from pilot.sources.base import ConfigSource
from pilot.sources.kube import ISTIO_RESOURCES, REGISTRY_RESOURCES, KubeSource, load_api_client
from pilot.sources.kube_api import WatchOptions
from pilot.translate.registry import Resolution, services_of
from tests.support.kube_api import (
    FakeKubeApi,
    endpoint_slice,
    mesh_config_map,
    pod,
    service,
    virtual_service,
)

# One watch per Istio kind and registry resource, and one for the mesh ConfigMap.
WATCHES = len(ISTIO_RESOURCES) + len(REGISTRY_RESOURCES) + 1

DEADLINE = 10.0
PILOT_NS = "pilot-system"
# Retries in tens of milliseconds, so that faults heal within a test's deadline.
FAST = WatchOptions(
    backoff_initial=0.02,
    backoff_max=0.2,
    min_watch_duration=0.2,
    rediscover_interval=0.2,
    connect_timeout=2.0,
    request_timeout=5.0,
)


def vs_key(name: str, namespace: str = "default") -> ConfigKey:
    return ConfigKey("VirtualService", namespace, name)


def destination_rule(name: str, host: str = "reviews", namespace: str = "default") -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "DestinationRule",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"host": host, "subsets": [{"name": "v1", "labels": {"version": "v1"}}]},
    }


def gateway(name: str, namespace: str = "default") -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "Gateway",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "selector": {"istio": "ingressgateway"},
            "servers": [{"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": ["*"]}],
        },
    }


def service_entry(name: str, namespace: str = "default") -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1alpha3",
        "kind": "ServiceEntry",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "hosts": ["httpbin.org"],
            "ports": [{"number": 80, "name": "http", "protocol": "HTTP"}],
            "resolution": "DNS",
            "location": "MESH_EXTERNAL",
        },
    }


async def eventually(check: Callable[[], bool], what: str, timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for: {what}")
        await asyncio.sleep(0.02)


def client_for(api: FakeKubeApi, token: str | None = None) -> Any:
    configuration = kubernetes.client.Configuration()
    configuration.host = api.url
    configuration.connection_pool_maxsize = 32
    if token is not None:
        configuration.api_key = {"authorization": f"Bearer {token}"}
    return kubernetes.client.ApiClient(configuration)


def watch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("kube-watch")]


@pytest.fixture
async def kube() -> AsyncIterator[FakeKubeApi]:
    api = FakeKubeApi()
    await api.start()
    try:
        yield api
    finally:
        await api.stop()


@pytest.fixture
def client(kube: FakeKubeApi) -> Iterator[Any]:
    api_client = client_for(kube)
    try:
        yield api_client
    finally:
        api_client.close()


class Recorder:
    """Every key the store reported changed, in order."""

    def __init__(self, store: ConfigStore) -> None:
        self.changes: list[ConfigKey] = []
        store.subscribe(self)

    def __call__(self, event: ConfigEvent) -> None:
        self.changes.extend(sorted(event.changed))

    def count(self, key: ConfigKey) -> int:
        return self.changes.count(key)


@asynccontextmanager
async def running(source: KubeSource, *, wait_synced: bool = True) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(source.run())
    try:
        if wait_synced:
            synced = asyncio.ensure_future(source.synced.wait())
            done, _ = await asyncio.wait(
                {synced, task}, timeout=DEADLINE, return_when=asyncio.FIRST_COMPLETED
            )
            synced.cancel()
            if task in done:
                task.result()
            assert source.synced.is_set(), f"not synced: {source.status()}"
        yield task
    finally:
        task.cancel()
        started = time.monotonic()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert time.monotonic() - started < 3.0, "the source must stop promptly"
        assert not watch_threads(), "every watch thread must have ended"


def source_for(store: ConfigStore, client: Any, **kwargs: Any) -> KubeSource:
    kwargs.setdefault("namespaces", None)
    kwargs.setdefault("options", FAST)
    return KubeSource(store, pilot_namespace=PILOT_NS, api_client=client, **kwargs)


def seed_reviews(kube: FakeKubeApi) -> None:
    kube.apply(service("reviews", cluster_ip="10.96.1.5"))
    kube.apply(pod("reviews-v1", ip="10.1.0.1", labels={"app": "reviews", "version": "v1"}))
    kube.apply(pod("reviews-v2", ip="10.1.0.2", labels={"app": "reviews", "version": "v2"}))
    kube.apply(
        endpoint_slice(
            "reviews-abc",
            "reviews",
            endpoints=[("10.1.0.1", "reviews-v1", True), ("10.1.0.2", "reviews-v2", None)],
        )
    )


# -- the source satisfies the protocol every source follows -----------------------------------------------


def test_is_a_config_source(client: Any):
    source: ConfigSource = source_for(ConfigStore(), client)
    assert not source.synced.is_set()


# -- initial sync --------------------------------------------------------------------------------------------


async def test_initial_sync_lists_every_kind_then_watches_from_the_list(kube: FakeKubeApi, client: Any):
    """Fake: discovery, paged lists with resourceVersion, typed lists without kind/apiVersion in items."""
    kube.apply(virtual_service("reviews"))
    kube.apply(virtual_service("ratings", host="ratings"))
    kube.apply(destination_rule("reviews"))
    kube.apply(service_entry("httpbin"))
    kube.apply(gateway("ingress"))
    kube.apply(mesh_config_map(PILOT_NS, "connectTimeout: 3s\n"))
    kube.apply({**mesh_config_map("default", "connectTimeout: 9s\n")})  # not pilot's namespace: ignored
    seed_reviews(kube)
    store = ConfigStore()
    async with running(source_for(store, client, options=dataclasses.replace(FAST, page_size=1))):
        keys = set(store.snapshot().objects)
        assert keys == {
            vs_key("reviews"),
            vs_key("ratings"),
            ConfigKey("DestinationRule", "default", "reviews"),
            ConfigKey("ServiceEntry", "default", "httpbin"),
            ConfigKey("Gateway", "default", "ingress"),
            ConfigKey("MeshConfig", PILOT_NS, "istio"),
            synthetic_key("default", "reviews"),
            # Each Pod's identity (its labels and service account for the proxy it runs).
            ConfigKey("Pod", "default", "reviews-v1"),
            ConfigKey("Pod", "default", "reviews-v2"),
        }
        mesh: Any = store.snapshot().objects[ConfigKey("MeshConfig", PILOT_NS, "istio")].spec
        assert mesh.connect_timeout.seconds == 3
        # Each list is followed by a watch from exactly the list's resourceVersion, with bookmarks.
        lists = kube.list_requests("virtualservices")
        assert len(lists) == 2 and lists[0]["limit"] == "1" and "continue" in lists[1]  # two pages
        await eventually(lambda: bool(kube.watch_requests("virtualservices")), "a watch")
        watch = kube.watch_requests("virtualservices")[0]
        assert watch["allowWatchBookmarks"] == "true"
        assert int(watch["resourceVersion"]) == kube.resource_version
        # The mesh ConfigMap is watched by name in pilot's namespace only.
        config_lists = [q for path, q in kube.requests if path == f"/api/v1/namespaces/{PILOT_NS}/configmaps"]
        assert config_lists and all(q["fieldSelector"] == "metadata.name=istio" for q in config_lists)


# -- changes -------------------------------------------------------------------------------------------------


async def test_virtual_service_add_update_delete_reach_the_store(kube: FakeKubeApi, client: Any):
    """Fake: live ADDED/MODIFIED/DELETED events on a chunked watch stream."""
    store = ConfigStore()
    recorder = Recorder(store)
    async with running(source_for(store, client)):
        kube.apply(virtual_service("reviews", subset="v1"))
        await eventually(lambda: store.get(vs_key("reviews")) is not None, "VirtualService added")
        obj = store.get(vs_key("reviews"))
        assert obj is not None and obj.origin == "kube:VirtualService/default/reviews"

        kube.apply(virtual_service("reviews", subset="v2"))

        def subset() -> str:
            current: Any = store.get(vs_key("reviews"))
            return str(current.spec.http[0].route[0].destination.subset) if current else ""

        await eventually(lambda: subset() == "v2", "VirtualService updated")
        kube.delete("VirtualService", "default", "reviews")
        await eventually(lambda: store.get(vs_key("reviews")) is None, "VirtualService deleted")
        assert recorder.count(vs_key("reviews")) == 3


async def test_service_endpoint_slices_and_pods_make_a_service_entry(kube: FakeKubeApi, client: Any):
    """Fake: Services, EndpointSlices (ready unset / true / false) and Pods listed and watched."""
    kube.apply(
        service(
            "reviews",
            cluster_ip="10.96.1.5",
            ports=[
                {"name": "http-web", "port": 9080, "targetPort": "web"},
                {"name": "grpc", "port": 9090, "targetPort": 9090},
                {"name": "h2", "port": 8080, "targetPort": 8080, "appProtocol": "kubernetes.io/h2c"},
                {"name": "mysql", "port": 3306, "targetPort": 3306},
                {"name": "dns", "port": 53, "targetPort": 53, "protocol": "UDP"},
            ],
            annotations={"networking.istio.io/exportTo": "., istio-system"},
        )
    )
    kube.apply(pod("reviews-v1", ip="10.1.0.1", labels={"app": "reviews", "version": "v1"}))
    kube.apply(pod("reviews-v2", ip="10.1.0.2", labels={"app": "reviews", "version": "v2"}))
    ports = (("http-web", 19080), ("grpc", 9090), ("h2", 8080), ("mysql", 3306), ("dns", 53))
    kube.apply(
        endpoint_slice(
            "reviews-a",
            "reviews",
            ports=ports,
            endpoints=[("10.1.0.1", "reviews-v1", True), ("10.1.0.9", None, False)],
        )
    )
    kube.apply(
        endpoint_slice("reviews-b", "reviews", ports=ports, endpoints=[("10.1.0.2", "reviews-v2", None)])
    )
    store = ConfigStore()
    key = synthetic_key("default", "reviews")
    async with running(source_for(store, client)):
        entry = store.get(key)
        assert entry is not None and entry.origin == "kube:Service/default/reviews"
        spec: Any = entry.spec
        assert list(spec.hosts) == ["reviews.default.svc.cluster.local"]
        assert list(spec.addresses) == ["10.96.1.5"]
        assert list(spec.export_to) == [".", "istio-system"]
        assert [(p.number, p.name, p.protocol, p.target_port) for p in spec.ports] == [
            (9080, "http-web", "HTTP", 0),
            (9090, "grpc", "GRPC", 9090),
            (8080, "h2", "HTTP2", 8080),
            (3306, "mysql", "MySQL", 3306),
            (53, "dns", "UDP", 53),
        ]
        # The translator's own reading: one service, STATIC, ready endpoints with their pods' labels.
        (svc,) = services_of(entry, [])
        assert svc.resolution is Resolution.STATIC and not svc.mesh_external
        assert [p.protocol for p in svc.ports][:3] == [Protocol.HTTP, Protocol.GRPC, Protocol.HTTP2]
        assert [(e.address, dict(e.labels).get("version")) for e in svc.endpoints] == [
            ("10.1.0.1", "v1"),
            ("10.1.0.2", "v2"),
        ]
        assert svc.endpoints[0].port_for(svc.ports[0]) == 19080  # the named targetPort, resolved by the slice
        assert [e.address for e in svc.endpoints if e.has_labels({"version": "v2"})] == ["10.1.0.2"]

        # A pod's labels change: the endpoint follows (subsets select by them).
        kube.apply(pod("reviews-v2", ip="10.1.0.2", labels={"app": "reviews", "version": "v3"}))

        def versions() -> list[str]:
            current: Any = store.get(key)
            return [e.labels.get("version", "") for e in current.spec.endpoints] if current else []

        await eventually(lambda: versions() == ["v1", "v3"], "pod labels followed")
        # An endpoint becomes ready; a slice goes away.
        kube.apply(
            endpoint_slice(
                "reviews-a",
                "reviews",
                ports=ports,
                endpoints=[("10.1.0.1", "reviews-v1", True), ("10.1.0.9", None, True)],
            )
        )
        await eventually(lambda: len(versions()) == 3, "the ready endpoint added")
        kube.delete("EndpointSlice", "default", "reviews-b")
        await eventually(lambda: versions() == ["v1", ""], "the slice's endpoints removed")
        kube.delete("Service", "default", "reviews")
        await eventually(lambda: store.get(key) is None, "the service removed")


async def test_headless_and_external_name_services(kube: FakeKubeApi, client: Any):
    kube.apply(service("db", cluster_ip="None", ports=[{"name": "tcp-db", "port": 5432, "targetPort": 5432}]))
    kube.apply(
        service(
            "ext", type_="ExternalName", external_name="example.com", ports=[{"name": "https", "port": 443}]
        )
    )
    store = ConfigStore()
    async with running(source_for(store, client)):
        db: Any = store.get(synthetic_key("default", "db"))
        ext: Any = store.get(synthetic_key("default", "ext"))
        assert db is not None and ext is not None
        (db_svc,) = services_of(db, [])
        (ext_svc,) = services_of(ext, [])
        assert db_svc.resolution is Resolution.NONE and db_svc.addresses == ()
        assert ext_svc.resolution is Resolution.DNS and ext_svc.mesh_external
        assert [e.address for e in ext_svc.endpoints] == ["example.com"]


async def test_mesh_config_map_by_name(kube: FakeKubeApi, client: Any):
    store = ConfigStore()
    key = ConfigKey("MeshConfig", PILOT_NS, "istio")
    async with running(source_for(store, client)):
        kube.apply({**mesh_config_map(PILOT_NS, "x"), "metadata": {"name": "other", "namespace": PILOT_NS}})
        kube.apply(mesh_config_map(PILOT_NS, "connectTimeout: 7s\n"))
        await eventually(lambda: store.get(key) is not None, "mesh config applied")
        kube.delete("ConfigMap", PILOT_NS, "istio")
        await eventually(lambda: store.get(key) is None, "mesh config removed")
        assert {k.kind for k in store.snapshot().objects} <= {"ServiceEntry"}


# -- bad config --------------------------------------------------------------------------------------------


async def test_bad_virtual_service_is_rejected_and_its_last_good_version_stays(
    kube: FakeKubeApi, client: Any, caplog: pytest.LogCaptureFixture
):
    kube.apply(virtual_service("reviews", subset="v1"))
    store = ConfigStore()
    async with running(source_for(store, client)):
        good = store.get(vs_key("reviews"))
        bad = virtual_service("reviews", subset="v2", weight=-5)
        with caplog.at_level(logging.WARNING, logger="pilot.sources.kube"):
            kube.apply(bad)
            await eventually(lambda: bool(store.errors()), "the error recorded")
        (error,) = [e for e in store.errors() if e.severity == "error"]
        assert error.origin == "kube:VirtualService/default/reviews" and error.key == vs_key("reviews")
        assert error.path == "spec.http[0].route[0].weight"
        assert str(error) in caplog.text  # logged as it is recorded
        assert store.get(vs_key("reviews")) is good  # the last good version is still served
        kube.apply(virtual_service("reviews", subset="v3"))
        await eventually(lambda: store.get(vs_key("reviews")) is not good and not store.errors(), "fixed")


# -- watch correctness ------------------------------------------------------------------------------------


async def test_410_gone_relists_with_no_lost_and_no_duplicated_change(kube: FakeKubeApi, client: Any):
    """Fake: while pilot is cut off, changes happen and the history is compacted; the resumed watch gets an
    ERROR event with a 410 Expired Status. The relist must find the delete made during the gap, the
    update and the addition, each exactly once, and nothing for unchanged objects."""
    for name in ("a", "b", "same"):
        kube.apply(virtual_service(name, host=name))
    kube.apply(destination_rule("reviews"))
    seed_reviews(kube)
    store = ConfigStore()
    recorder = Recorder(store)
    source = source_for(store, client)
    async with running(source):
        before = set(recorder.changes)
        recorder.changes.clear()
        lists_before = len(kube.list_requests("virtualservices"))
        await kube.stop()  # pilot is cut off ...
        kube.delete("VirtualService", "default", "a")
        kube.apply(virtual_service("b", host="b", subset="v9"))
        kube.apply(virtual_service("c", host="c"))
        kube.compact()  # ... and the history it would resume from is gone
        await kube.start(kube.port)
        await eventually(
            lambda: store.get(vs_key("c")) is not None and store.get(vs_key("a")) is None,
            "the relist applied",
        )
        # Unchanged kinds relist too (their watches got 410 as well); wait for every watch to be back.
        await eventually(
            lambda: kube.watch_count() == WATCHES and len(kube.list_requests("destinationrules")) == 2,
            "every watch relisted and watching again",
        )
        assert sorted(recorder.changes) == [vs_key("a"), vs_key("b"), vs_key("c")]  # once each, nothing else
        assert vs_key("same") in before
        lists = kube.list_requests("virtualservices")
        assert len(lists) == lists_before + 1
        status = {w["resource"]: w for w in source.status()["watches"]}
        assert status["virtualservices.networking.istio.io/v1"]["lists"] == 2


async def test_an_expired_continue_token_restarts_the_list(kube: FakeKubeApi, client: Any):
    """Fake: a list paged with limit/continue whose snapshot is compacted between two pages answers the
    next page with HTTP 410 Expired; the list starts over and completes."""
    for name in ("a", "b", "c"):
        kube.apply(virtual_service(name, host=name))
    expired: list[str] = []

    def compact_once(path: str, query: dict[str, str]) -> None:
        if path.endswith("/virtualservices") and "continue" in query and not expired:
            expired.append(query["continue"])
            kube.compact()

    kube.before_request = compact_once
    store = ConfigStore()
    async with running(source_for(store, client, options=dataclasses.replace(FAST, page_size=2))):
        assert {k.name for k in store.snapshot().objects if k.kind == "VirtualService"} == {"a", "b", "c"}
        lists = kube.list_requests("virtualservices")
        assert [("continue" in q) for q in lists] == [False, True, False, True]


async def test_api_server_down_at_start(client: Any):
    """Fake: nothing listens yet (connection refused); the source retries and syncs once it is up."""
    kube = FakeKubeApi()
    await kube.start()
    port = kube.port
    await kube.stop()
    kube.apply(virtual_service("reviews"))
    store = ConfigStore()
    api_client = client_for(kube)
    source = source_for(store, api_client)
    try:
        async with running(source, wait_synced=False):
            # CRD discovery and the core watches fail independently, each after its own retries:
            # wait for both, not for whichever fails first.
            await eventually(
                lambda: (
                    bool(source.status()["discovery_error"])
                    and any(w["errors"] for w in source.status()["watches"])
                ),
                "failed attempts of discovery and of a watch",
            )
            assert not source.synced.is_set()
            await kube.start(port)
            await asyncio.wait_for(source.synced.wait(), DEADLINE)
            assert store.get(vs_key("reviews")) is not None
    finally:
        api_client.close()
        await kube.stop()


async def test_a_group_whose_discovery_fails_holds_up_neither_the_other_group_nor_itself_for_long():
    """Fake: discovery of gateway.networking.k8s.io answers 503, then heals. The Istio kinds are watched
    meanwhile; ``synced`` waits for the failing group's first answer; then its kinds are watched too."""
    kube = FakeKubeApi(gateway_api=True)
    await kube.start()
    kube.discovery_failures.add("gateway.networking.k8s.io")
    kube.apply(virtual_service("reviews"))
    route = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "r", "namespace": "default"},
        "spec": {"parentRefs": [{"name": "edge"}]},
    }
    kube.apply(route)
    store = ConfigStore()
    api_client = client_for(kube)
    source = source_for(store, api_client)
    try:
        async with running(source, wait_synced=False):
            await eventually(lambda: store.get(vs_key("reviews")) is not None, "the Istio kinds watched")
            await eventually(
                lambda: "gateway.networking.k8s.io" in source.status()["discovery_error"], "the group's error"
            )
            assert not source.synced.is_set()
            kube.discovery_failures.clear()
            await asyncio.wait_for(source.synced.wait(), DEADLINE)
            assert store.get(ConfigKey("HTTPRoute", "default", "r")) is not None
            assert source.status()["discovery_error"] == ""
            assert (
                source.status()["gateway_api_versions"]["HTTPRoute"]
                == "httproutes.gateway.networking.k8s.io/v1"
            )
    finally:
        api_client.close()
        await kube.stop()


async def test_dropped_connection_resumes_from_the_last_bookmark_without_a_relist(
    kube: FakeKubeApi, client: Any
):
    """Fake: BOOKMARK events, watches cut mid-stream (no final chunk), history kept."""
    kube.apply(virtual_service("reviews"))
    store = ConfigStore()
    source = source_for(store, client)
    async with running(source):
        await eventually(lambda: kube.watch_count() == WATCHES, "every watch open")
        kube.apply(destination_rule("reviews"))  # moves the global resourceVersion past the VS watch's
        await eventually(
            lambda: store.get(ConfigKey("DestinationRule", "default", "reviews")) is not None, "DR"
        )
        kube.send_bookmarks()
        bookmark_rv = str(kube.resource_version)
        await eventually(
            lambda: any(
                w["resource_version"] == bookmark_rv and w["resource"].startswith("virtualservices")
                for w in source.status()["watches"]
            ),
            "the bookmark seen",
        )
        watches_before = len(kube.watch_requests("virtualservices"))
        assert kube.drop_watches() == WATCHES
        kube.apply(virtual_service("ratings", host="ratings"))  # while disconnected
        await eventually(lambda: store.get(vs_key("ratings")) is not None, "the change made while cut off")
        resumed = kube.watch_requests("virtualservices")[watches_before]
        assert resumed["resourceVersion"] == bookmark_rv
        assert len(kube.list_requests("virtualservices")) == 1  # resumed, not relisted


async def test_server_restart_keeping_history_resumes(kube: FakeKubeApi, client: Any):
    """Fake: the server stops listening and comes back on the same port; connection refused meanwhile."""
    store = ConfigStore()
    recorder = Recorder(store)
    source = source_for(store, client)
    async with running(source):
        await kube.stop()
        kube.apply(virtual_service("during", host="during"))
        vs_watch = "virtualservices.networking.istio.io/v1"
        await eventually(
            lambda: any(w["resource"] == vs_watch and w["errors"] >= 2 for w in source.status()["watches"]),
            "reconnect attempts refused while the server is down",
        )
        await kube.start(kube.port)
        await eventually(
            lambda: store.get(vs_key("during")) is not None, "the change made during the restart"
        )
        assert len(kube.list_requests("virtualservices")) == 1
        assert recorder.changes == [vs_key("during")]


async def test_server_restart_losing_history_relists_without_duplicates(kube: FakeKubeApi, client: Any):
    """Fake: the restarted server's watch cache starts at the current resourceVersion, so a watch resuming
    from before a change made during the restart gets 410; the relist of unchanged kinds changes nothing."""
    kube.apply(virtual_service("kept", host="kept"))
    store = ConfigStore()
    recorder = Recorder(store)
    async with running(source_for(store, client)):
        assert recorder.changes == [vs_key("kept")]
        recorder.changes.clear()
        await kube.stop()
        kube.apply(destination_rule("during"))
        await kube.restart()
        dr = ConfigKey("DestinationRule", "default", "during")
        await eventually(lambda: store.get(dr) is not None, "the change made during the restart")
        await eventually(lambda: len(kube.list_requests("virtualservices")) == 2, "relisted")
        kube.apply(virtual_service("after", host="after"))
        await eventually(lambda: store.get(vs_key("after")) is not None, "a change after the restart")
        assert recorder.changes == [dr, vs_key("after")]


async def test_a_failing_watch_does_not_stop_the_others_and_delays_synced(kube: FakeKubeApi, client: Any):
    """Fake: every request for gateways is answered 500 until healed."""
    kube.fail("gateways")
    store = ConfigStore()
    source = source_for(store, client)
    async with running(source, wait_synced=False):
        kube.apply(virtual_service("reviews"))
        await eventually(lambda: store.get(vs_key("reviews")) is not None, "other watches work")
        await eventually(
            lambda: any(
                w["resource"].startswith("gateways") and w["errors"] >= 2 for w in source.status()["watches"]
            ),
            "gateways retried",
        )
        assert not source.synced.is_set()
        (gateways,) = [w for w in source.status()["watches"] if w["resource"].startswith("gateways")]
        assert not gateways["listed"] and "500" in gateways["last_error"]
        kube.heal("gateways")
        kube.apply(gateway("ingress"))
        await asyncio.wait_for(source.synced.wait(), DEADLINE)
        assert store.get(ConfigKey("Gateway", "default", "ingress")) is not None


async def test_namespace_scoping(kube: FakeKubeApi, client: Any):
    for namespace in ("a", "b"):
        kube.apply(virtual_service("reviews", namespace))
        kube.apply(service("reviews", namespace))
    kube.apply(mesh_config_map(PILOT_NS, "connectTimeout: 3s\n"))
    store = ConfigStore()
    async with running(source_for(store, client, namespaces=["a"])):
        kube.apply(virtual_service("ratings", "b", host="ratings"))
        kube.apply(virtual_service("ratings", "a", host="ratings"))
        await eventually(lambda: store.get(vs_key("ratings", "a")) is not None, "a change in a")
        namespaces = {key.namespace for key in store.snapshot().objects}
        assert namespaces == {"a", PILOT_NS}
        collections = {path for path, q in kube.requests if path.endswith(("/virtualservices", "/services"))}
        assert collections == {
            "/apis/networking.istio.io/v1/namespaces/a/virtualservices",
            "/api/v1/namespaces/a/services",
        }


async def test_older_istio_versions_are_watched_when_v1_is_not_served(client: Any):
    async with FakeKubeApi(istio_versions=("v1beta1", "v1alpha3")) as kube:
        kube.apply(virtual_service("reviews"))
        store = ConfigStore()
        api_client = client_for(kube)
        try:
            async with running(source_for(store, api_client)) as _:
                obj = store.get(vs_key("reviews"))
                assert obj is not None and obj.api_version == "networking.istio.io/v1beta1"
        finally:
            api_client.close()


async def test_kind_without_crd_counts_as_synced_and_is_watched_once_installed():
    async with FakeKubeApi(istio_kinds=("VirtualService", "DestinationRule", "ServiceEntry")) as kube:
        api_client = client_for(kube)
        store = ConfigStore()
        source = source_for(store, api_client)
        try:
            async with running(source):
                assert "Gateway" not in source.status()["istio_versions"]
                kube.serve_istio(("VirtualService", "DestinationRule", "ServiceEntry", "Gateway"))
                kube.apply(gateway("ingress"))
                await eventually(
                    lambda: store.get(ConfigKey("Gateway", "default", "ingress")) is not None,
                    "the Gateway watched after rediscovery",
                )
        finally:
            api_client.close()


async def test_kubeconfig_credentials_are_used(tmp_path: Path):
    """Fake: a bearer token is required. The source loads the kubeconfig itself (kubernetes.config)."""
    async with FakeKubeApi(token="s3cret") as kube:
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(f"""\
apiVersion: v1
kind: Config
clusters:
- name: fake
  cluster: {{server: "{kube.url}"}}
users:
- name: tester
  user: {{token: s3cret}}
contexts:
- name: fake
  context: {{cluster: fake, user: tester}}
current-context: fake
""")
        kube.apply(virtual_service("reviews"))
        store = ConfigStore()
        source = KubeSource(
            store, namespaces=None, pilot_namespace=PILOT_NS, kubeconfig=kubeconfig, options=FAST
        )
        async with running(source):
            assert store.get(vs_key("reviews")) is not None


def test_a_bad_kubeconfig_is_a_config_error(tmp_path: Path):
    path = tmp_path / "missing"
    with pytest.raises(ConfigError, match="cannot load Kubernetes client config"):
        load_api_client(path)


async def test_run_twice_is_an_error(kube: FakeKubeApi, client: Any):
    source = source_for(ConfigStore(), client)
    async with running(source):
        with pytest.raises(Exception, match="only once"):
            await source.run()


async def test_a_storm_of_endpoint_updates_ends_in_the_last_state(kube: FakeKubeApi, client: Any):
    """2000 EndpointSlice updates in one burst: the store ends with the last one, and the source applies them
    in batches (far fewer store revisions than updates)."""
    kube.apply(service("reviews"))
    store = ConfigStore()
    recorder = Recorder(store)
    async with running(source_for(store, client)):
        for i in range(2000):
            kube.apply(
                endpoint_slice("reviews-a", "reviews", endpoints=[(f"10.2.{i // 250}.{i % 250}", None, True)])
            )

        def addresses() -> list[str]:
            current: Any = store.get(synthetic_key("default", "reviews"))
            return [e.address for e in current.spec.endpoints] if current else []

        await eventually(lambda: addresses() == ["10.2.7.249"], "the last update applied", timeout=30)
        changes = recorder.count(synthetic_key("default", "reviews"))
        assert changes < 1000, f"{changes} store changes for 2000 updates: not batched"  # typically 2 or 3
