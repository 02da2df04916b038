"""Pusher with the real translator: config in the store becomes Envoy clusters in the cache."""

from __future__ import annotations

from envoy.config.core.v3 import base_pb2
from google.protobuf import json_format

from pilot._gen import networking_pb2
from pilot.cache.cache import SnapshotCache
from pilot.config.objects import ConfigKey, ConfigObject, ParseResult
from pilot.config.store import ConfigStore
from pilot.push.pusher import Pusher
from pilot.xds import types

NODE = "sidecar~10.0.0.1~app-1.default~default.svc.cluster.local"


def service_entry(name: str, origin: str) -> ParseResult:
    spec = json_format.ParseDict(
        {
            "hosts": [f"{name}.example.com"],
            "ports": [{"number": 80, "name": "http", "protocol": "HTTP"}],
            "resolution": "STATIC",
            "endpoints": [{"address": "127.0.0.1"}],
        },
        networking_pb2.ServiceEntry(),
    )
    obj = ConfigObject(ConfigKey("ServiceEntry", "default", name), "networking.istio.io/v1", spec, origin)
    return ParseResult(origin, objects=(obj,))


async def test_real_translation_on_open_and_on_push():
    store, cache = ConfigStore(), SnapshotCache()
    pusher = Pusher(store, cache, debounce_after=0.01, debounce_max=1.0)
    store.apply(service_entry("alpha", "a.yaml"))
    await pusher.push()
    view = await pusher.on_stream_open(1, base_pb2.Node(id=NODE))
    snapshot = cache.get_snapshot(view)
    assert snapshot is not None
    assert "outbound|80||alpha.example.com" in snapshot.resources(types.CLUSTER)
    assert snapshot.inconsistencies() == []

    store.apply(service_entry("beta", "b.yaml"))
    status = await pusher.push()
    assert (status.views, status.failed_views) == (1, 0)
    snapshot = cache.get_snapshot(view)
    assert snapshot is not None
    assert {"outbound|80||alpha.example.com", "outbound|80||beta.example.com"} <= set(
        snapshot.resources(types.CLUSTER)
    )
    pusher.on_stream_closed(1)
    assert cache.get_snapshot(view) is None
