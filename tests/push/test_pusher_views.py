"""A proxy's view changes with the config: the pusher recomputes every stream's view on each push
and moves the streams whose view changed (real translator, real store and cache)."""

from __future__ import annotations

import time
from collections.abc import Hashable

import grpc
import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2

from pilot.cache.cache import SnapshotCache
from pilot.config.objects import ConfigObject, ParseResult
from pilot.config.store import ConfigStore
from pilot.push.pusher import Pusher
from pilot.push.translator import IstioTranslator, VersionedContext
from pilot.server.ads import AdsServer
from pilot.translate.proxy import Proxy, ProxyView
from pilot.translate.targets import ServiceTarget
from pilot.xds import types
from tests import factories as f
from tests.server.ads_client import AdsClient, DeltaClient, DeltaXds, SotwXds, Update, XdsClient

NODE = "sidecar~10.0.0.1~app-1.default~default.svc.cluster.local"
REVIEWS = "reviews.default.svc.cluster.local"
CLUSTER = f"outbound|80||{REVIEWS}"


def node(labels: dict[str, str]) -> base_pb2.Node:
    result = base_pb2.Node(id=NODE)
    result.metadata.update({"LABELS": labels})
    return result


def apply(store: ConfigStore, *objects: ConfigObject, origin: str = "test.yaml") -> None:
    store.apply(ParseResult(origin, objects=objects))


def canary_rule() -> ConfigObject:
    return f.destination_rule(
        "canary",
        host=REVIEWS,
        workloadSelector={"matchLabels": {"track": "canary"}},
        trafficPolicy={"loadBalancer": {"simple": "RANDOM"}},
    )


async def test_a_new_endpoint_at_the_proxy_ip_moves_its_stream_to_a_view_with_targets() -> None:
    store, cache = ConfigStore(), SnapshotCache()
    pusher = Pusher(store, cache, debounce_after=0.01, debounce_max=1.0)
    moved: list[tuple[int, Hashable]] = []
    pusher.move_stream = lambda stream_id, view: moved.append((stream_id, view))
    apply(store, f.http_service("reviews"))
    await pusher.push()
    before = await pusher.on_stream_open(1, node({"app": "reviews"}))
    await pusher.on_stream_open(
        2, base_pb2.Node(id="sidecar~10.0.0.2~other.default~default.svc.cluster.local")
    )
    assert before == pusher.stream_views()[2]  # no targets yet: both share one view

    apply(store, f.http_service("reviews", endpoints=[{"address": "10.0.0.1"}]))
    status = await pusher.push()
    after = pusher.stream_views()[1]
    assert after.targets == (ServiceTarget(REVIEWS, 80, 80, "HTTP"),)
    assert moved == [(1, after)] and status.moved_streams == 1
    assert pusher.views() == {before: 1, after: 1}
    assert cache.get_snapshot(after) is not None and cache.get_snapshot(before) is not None

    # The endpoint goes: the stream moves back, and the view nobody reads any more is dropped.
    apply(store, f.http_service("reviews"))
    await pusher.push()
    assert moved[-1] == (1, before) and pusher.views() == {before: 2}
    assert cache.get_snapshot(after) is None


@pytest.mark.parametrize("protocol", ["sotw", "delta"])
async def test_a_stream_moved_by_a_selecting_rule_receives_its_new_config(protocol: str) -> None:
    """Through the real server: a DestinationRule with a workloadSelector that selects the proxy
    arrives; its stream moves to the new view, the proxy gets the rule's cluster, and syncz
    shows the new view."""
    store, cache = ConfigStore(), SnapshotCache()
    pusher = Pusher(store, cache, debounce_after=0.01, debounce_max=1.0)
    ads = AdsServer(cache, pusher, push_concurrency=10, send_timeout=5.0)
    pusher.move_stream = ads.move_stream
    server = grpc.aio.server()
    ads.add_to(server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        apply(store, f.http_service("reviews"))
        await pusher.push()
        raw = AdsClient(channel, NODE) if protocol == "sotw" else DeltaClient(channel, NODE)
        raw.node.metadata.update({"LABELS": {"app": "reviews", "track": "canary"}})
        client: XdsClient = SotwXds(raw) if isinstance(raw, AdsClient) else DeltaXds(raw)
        await client.subscribe(types.CLUSTER)
        first = await client.recv()
        assert lb_policy(first) == cluster_pb2.Cluster.LEAST_REQUEST  # Istio's default
        await client.ack(first)
        (connection,) = ads.connections()
        assert "track" not in connection.view

        apply(store, canary_rule(), origin="dr.yaml")
        await pusher.push()
        pushed = await client.recv()
        assert lb_policy(pushed) == cluster_pb2.Cluster.RANDOM
        (connection,) = ads.connections()
        assert connection.view.endswith("/track=canary")
        raw.close()
    finally:
        await channel.close(None)
        await server.stop(None)


def lb_policy(update: Update) -> int:
    cluster = cluster_pb2.Cluster.FromString(update.values[CLUSTER])
    return int(cluster.lb_policy)


async def test_a_thousand_proxies_of_ten_workloads_are_ten_views_in_the_pusher() -> None:
    """Each workload: a ServiceEntry with 100 endpoints (distinct IPs), pods with the same app
    label and a per-pod label. 1000 streams, 10 views; a push translates 10, not 1000."""
    store, cache = ConfigStore(), SnapshotCache()
    pusher = Pusher(store, cache, debounce_after=0.01, debounce_max=1.0)
    addresses = {w: [f"10.{w}.{i // 250}.{i % 250 + 1}" for i in range(100)] for w in range(10)}
    rules = [
        f.destination_rule(
            "w0-canary",
            host="w0",
            workloadSelector={"matchLabels": {"app": "w1"}},
            trafficPolicy={"loadBalancer": {"simple": "RANDOM"}},
        )
    ]
    apply(
        store,
        *(f.http_service(f"w{w}", endpoints=[{"address": a} for a in ips]) for w, ips in addresses.items()),
    )
    apply(store, *rules, origin="rules.yaml")
    await pusher.push()
    started = time.perf_counter()
    stream_id = 0
    for w, ips in addresses.items():
        for i, ip in enumerate(ips):
            stream_id += 1
            proxy = base_pb2.Node(id=f"sidecar~{ip}~w{w}-{i}.default~default.svc.cluster.local")
            proxy.metadata.update({"LABELS": {"app": f"w{w}", "pod-template-hash": f"h{i}"}})
            await pusher.on_stream_open(stream_id, proxy)
    opened = time.perf_counter() - started
    assert len(pusher.views()) == 10 and set(pusher.views().values()) == {100}

    apply(store, f.http_service("extra"), origin="extra.yaml")
    status = await pusher.push()
    assert (status.views, status.failed_views, status.moved_streams) == (10, 0, 0)
    print(
        f"1000 streams opened in {opened * 1e3:.0f} ms; push of 10 views {status.duration * 1e3:.0f} ms",
        f"(views of 1000 streams {status.view_time * 1e3:.1f} ms)",
    )


async def test_a_push_of_route_edits_alone_computes_no_view() -> None:
    counted: list[str] = []

    class Counting(IstioTranslator):
        def view_of(self, proxy: Proxy, context: VersionedContext) -> ProxyView:
            counted.append(proxy.id)
            return super().view_of(proxy, context)

    store, cache = ConfigStore(), SnapshotCache()
    pusher = Pusher(store, cache, debounce_after=0.01, debounce_max=1.0, translator=Counting())
    route = {"route": [{"destination": {"host": "reviews"}}], "timeout": "1s"}
    apply(store, f.http_service("reviews"), f.virtual_service("reviews", hosts=["reviews"], http=[route]))
    await pusher.push()
    await pusher.on_stream_open(1, node({"app": "web"}))
    await pusher.push()  # the streams' views are computed once after they opened
    counted.clear()
    route["timeout"] = "2s"
    apply(store, f.http_service("reviews"), f.virtual_service("reviews", hosts=["reviews"], http=[route]))
    status = await pusher.push()
    assert counted == [] and status.views == 1  # translated again, no view computed
    route["match"] = [{"sourceLabels": {"app": "web"}}]  # a selector: views are computed again
    apply(store, f.http_service("reviews"), f.virtual_service("reviews", hosts=["reviews"], http=[route]))
    status = await pusher.push()
    assert counted == [NODE] and status.moved_streams == 1
