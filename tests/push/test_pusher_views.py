"""A proxy's view changes with the config: the pusher recomputes every stream's view on each push
and moves the streams whose view changed (real translator, real store and cache)."""

from __future__ import annotations

from collections.abc import Hashable

import grpc
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2

from pilot.cache.cache import SnapshotCache
from pilot.config.objects import ConfigObject, ParseResult
from pilot.config.store import ConfigStore
from pilot.push.pusher import Pusher
from pilot.server.ads import AdsServer
from pilot.translate.targets import ServiceTarget
from pilot.xds import types
from tests import factories as f
from tests.server.ads_client import AdsClient

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


async def test_a_stream_moved_by_a_selecting_rule_receives_its_new_config() -> None:
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
        client = AdsClient(channel, NODE)
        client.node.metadata.update({"LABELS": {"app": "reviews", "track": "canary"}})
        await client.request(types.CLUSTER)
        first = await client.recv()
        assert lb_policy(first) == cluster_pb2.Cluster.LEAST_REQUEST  # the default
        await client.ack(first)
        (connection,) = ads.connections()
        assert "track" not in connection.view

        apply(store, canary_rule(), origin="dr.yaml")
        await pusher.push()
        pushed = await client.recv()
        assert lb_policy(pushed) == cluster_pb2.Cluster.RANDOM
        (connection,) = ads.connections()
        assert connection.view.endswith("/track=canary")
        client.close()
    finally:
        await channel.close(None)
        await server.stop(None)


def lb_policy(response: object) -> int:
    from envoy.service.discovery.v3 import discovery_pb2

    assert isinstance(response, discovery_pb2.DiscoveryResponse)
    for any_message in response.resources:
        cluster = cluster_pb2.Cluster()
        any_message.Unpack(cluster)
        if cluster.name == CLUSTER:
            return int(cluster.lb_policy)
    raise AssertionError(f"{CLUSTER} not sent")
