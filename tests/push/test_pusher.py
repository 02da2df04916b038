"""Pusher with the real store and cache; translation through a small stand-in translator (the
real one is exercised in test_pusher_translate.py once pilot.translate is there)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from google.protobuf import struct_pb2

from pilot import metrics
from pilot.cache.cache import SnapshotCache
from pilot.cache.snapshot import Snapshot
from pilot.config.objects import ConfigKey, ConfigObject, ParseResult
from pilot.config.store import ConfigStore, StoreSnapshot
from pilot.push.pusher import Pusher
from pilot.push.request import PushRequest
from pilot.push.translator import VersionedContext
from pilot.server.callbacks import StreamCallbacks
from pilot.translate.proxy import ProxyView
from pilot.xds import types

DEADLINE = 10.0


class Context:
    def __init__(self, snapshot: StoreSnapshot) -> None:
        self.version = f"r{snapshot.revision}"
        self.names = sorted(key.name for key in snapshot.objects)


class StandInTranslator:
    """One cluster per object, prefixed by the view's namespace; records what it was asked."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.fail_views: set[str] = set()
        self.fail_context = False

    def build_context(self, snapshot: StoreSnapshot) -> VersionedContext:
        if self.fail_context:
            raise RuntimeError("bug in PushContext.build")
        context = Context(snapshot)
        self.calls.append(f"context {context.version}")
        return context

    def build_snapshot(self, view: ProxyView, context: VersionedContext) -> Snapshot:
        assert isinstance(context, Context)
        self.calls.append(f"view {view.namespace} {context.version}")
        if view.namespace in self.fail_views:
            raise RuntimeError(f"bug translating {view.namespace}")
        names = [f"{view.namespace}/{n}" for n in context.names]
        clusters = [(name, cluster_pb2.Cluster(name=name)) for name in names]
        return Snapshot.from_messages(context.version, {types.CLUSTER: clusters})


def node(node_id: str, namespace: str | None = None) -> base_pb2.Node:
    result = base_pb2.Node(id=node_id)
    if namespace is not None:
        result.metadata.update({"NAMESPACE": namespace})
    return result


def entry(name: str, origin: str = "test.yaml") -> ParseResult:
    key = ConfigKey("ServiceEntry", "default", name)
    spec = struct_pb2.Struct()
    spec.update({"hosts": [f"{name}.example.com"]})
    return ParseResult(origin, objects=(ConfigObject(key, "networking.istio.io/v1", spec, origin),))


def cluster_names(cache: SnapshotCache, view: object) -> set[str]:
    snapshot = cache.get_snapshot(view)  # type: ignore[arg-type]
    assert snapshot is not None
    return set(snapshot.resources(types.CLUSTER))


async def eventually(check: Callable[[], bool], what: str, timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for: {what}")
        await asyncio.sleep(0.01)


@pytest.fixture
def store() -> ConfigStore:
    return ConfigStore()


@pytest.fixture
def cache() -> SnapshotCache:
    return SnapshotCache()


@pytest.fixture
def translator() -> StandInTranslator:
    return StandInTranslator()


@pytest.fixture
def pusher(store: ConfigStore, cache: SnapshotCache, translator: StandInTranslator) -> Pusher:
    return Pusher(store, cache, debounce_after=0.05, debounce_max=5.0, translator=translator)


@pytest.fixture
async def loop_running(pusher: Pusher) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(pusher.run())
    yield task
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def test_pusher_is_stream_callbacks(pusher: Pusher):
    callbacks: StreamCallbacks = pusher
    assert callbacks is pusher


async def test_stream_open_translates_a_view_once_and_shares_it(pusher, store, cache, translator):
    store.apply(entry("a"))
    view = await pusher.on_stream_open(1, node("sidecar~10.0.0.1~pod-a.shop~shop.svc.cluster.local"))
    assert isinstance(view, ProxyView) and view.namespace == "shop"
    assert cluster_names(cache, view) == {"shop/a"}
    assert translator.calls == ["context r1", "view shop r1"]

    # A second proxy of the same view reuses the snapshot: no translation.
    same = await pusher.on_stream_open(2, node("sidecar~10.0.0.2~pod-b.shop~shop.svc.cluster.local"))
    assert same == view
    assert translator.calls == ["context r1", "view shop r1"]

    other = await pusher.on_stream_open(3, node("front-envoy", namespace="web"))
    assert other != view
    assert cluster_names(cache, other) == {"web/a"}
    assert pusher.views() == {view: 2, other: 1}


async def test_last_stream_of_a_view_frees_its_snapshot(pusher, cache):
    view = await pusher.on_stream_open(1, node("a", namespace="ns"))
    await pusher.on_stream_open(2, node("b", namespace="ns"))
    pusher.on_stream_closed(1)
    assert cache.get_snapshot(view) is not None
    pusher.on_stream_closed(2)
    assert cache.get_snapshot(view) is None
    assert pusher.views() == {}
    pusher.on_stream_closed(2)  # unknown or repeated: ignored
    # Reopening rebuilds it.
    assert await pusher.on_stream_open(3, node("c", namespace="ns")) == view
    assert cache.get_snapshot(view) is not None


async def test_empty_node_id_is_refused(pusher):
    with pytest.raises(ValueError, match="node.id"):
        await pusher.on_stream_open(1, base_pb2.Node())
    assert pusher.views() == {}


async def test_store_changes_are_debounced_into_one_push(pusher, store, cache, translator, loop_running):
    view = await pusher.on_stream_open(1, node("p", namespace="ns"))
    assert pusher.push_count == 0
    triggers_before = metrics.push_triggers.labels("config")._value.get()
    for name in ("a", "b", "c", "d", "e"):
        store.apply(entry(name, origin=f"{name}.yaml"))
    await eventually(lambda: pusher.push_count == 1, "one push")
    assert cluster_names(cache, view) == {"ns/a", "ns/b", "ns/c", "ns/d", "ns/e"}
    assert metrics.push_triggers.labels("config")._value.get() - triggers_before == 5
    status = pusher.last_push
    assert status is not None
    assert (status.number, status.version, status.revision, status.views) == (1, "r5", 5, 1)
    assert status.reasons == (("config", 5),)
    # Exactly one context per push, and the view translated once for it.
    assert translator.calls[-2:] == ["context r5", "view ns r5"]

    store.remove_origin("a.yaml")
    await eventually(lambda: pusher.push_count == 2, "second push")
    assert "ns/a" not in cluster_names(cache, view)


async def test_a_failing_view_keeps_its_snapshot_and_others_get_theirs(pusher, store, cache, translator):
    good = await pusher.on_stream_open(1, node("p", namespace="good"))
    bad = await pusher.on_stream_open(2, node("q", namespace="bad"))
    old_bad = cache.get_snapshot(bad)
    errors_before = metrics.translation_errors._value.get()
    translator.fail_views.add("bad")
    store.apply(entry("a"))
    status = await pusher.push(PushRequest.for_config([], start=time.monotonic()))
    assert (status.views, status.failed_views) == (1, 1)
    assert cluster_names(cache, good) == {"good/a"}
    assert cache.get_snapshot(bad) is old_bad
    assert metrics.translation_errors._value.get() - errors_before == 1


async def test_first_translation_failure_refuses_the_stream(pusher, translator):
    translator.fail_views.add("bad")
    with pytest.raises(ValueError, match="no config"):
        await pusher.on_stream_open(1, node("q", namespace="bad"))
    assert pusher.views() == {}


async def test_a_failing_push_context_keeps_the_previous_one(pusher, store, cache, translator):
    view = await pusher.on_stream_open(1, node("p", namespace="ns"))
    before = cache.get_snapshot(view)
    context = pusher.context
    translator.fail_context = True
    store.apply(entry("a"))
    status = await pusher.push()
    assert status.failed_views == 1
    assert pusher.context is context
    assert cache.get_snapshot(view) is before


async def test_pushes_are_serialized(pusher, store, translator):
    await pusher.on_stream_open(1, node("p", namespace="one"))
    await pusher.on_stream_open(2, node("q", namespace="two"))
    translator.calls.clear()
    store.apply(entry("a"))
    await asyncio.gather(pusher.push(), pusher.push())
    # The second push's context is built only after the first push's views are done (and then
    # finds both views already built from an identical context version).
    assert translator.calls == ["context r1", "view one r1", "view two r1", "context r1"]
    assert pusher.push_count == 2


async def test_push_before_any_stream_builds_the_context(pusher, store):
    store.apply(entry("a"))
    assert pusher.context is None
    status = await pusher.push()
    assert pusher.context is not None and pusher.context.version == "r1"
    assert status.views == 0


async def test_events_already_in_the_context_are_not_pushed_twice(pusher, store, loop_running):
    # Start-up: the initial load's events sit in the debouncer while the app pushes directly.
    store.apply(entry("a"))
    await pusher.push()
    assert pusher.push_count == 1
    # Then a real change: pushed once more, and only once.
    store.apply(entry("b", origin="b.yaml"))
    await eventually(lambda: pusher.push_count == 2, "the change pushed")
    assert pusher.last_push is not None and pusher.last_push.revision == 2
    # Quiet long enough for a redundant push of "a" to have happened.
    deadline = time.monotonic() + 0.3
    while time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        assert pusher.push_count == 2
