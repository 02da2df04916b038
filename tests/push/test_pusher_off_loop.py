"""Issue 11: translation never blocks the event loop that serves xDS and HTTP.

A gateway proxy bound to a 16,000-host VirtualService costs most of a second of translation per
push; while it runs, /ready (answered on the same loop) must stay fast.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import grpc

from pilot.app import serve
from pilot.cache.cache import SnapshotCache
from pilot.cache.snapshot import Snapshot
from pilot.config.store import ConfigStore
from pilot.push.pusher import Pusher
from pilot.push.translator import VersionedContext
from pilot.settings import Settings
from pilot.translate.proxy import ProxyView
from pilot.xds import types
from tests.push.test_pusher import DEADLINE, StandInTranslator, cluster_names, entry, node
from tests.server.ads_client import AdsClient
from tests.test_config_load_latency import probe

ROUTER = "router~10.0.0.9~gw-1.istio-system~istio-system.svc.cluster.local"
HOSTS = 16_000

GATEWAY = """\
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["*"]
"""
SERVICE = """\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: {name}, namespace: default}}
spec:
  hosts: [{name}.example.com]
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  resolution: DNS
"""


def big_virtual_service(destination: str) -> str:
    listed = "".join(f"  - h{i}.example.com\n" for i in range(HOSTS))
    return (
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\n"
        "metadata: {name: big, namespace: default}\n"
        f"spec:\n  gateways: [istio-system/gw]\n  hosts:\n{listed}"
        f"  http:\n  - route:\n    - destination: {{host: {destination}.example.com}}\n"
    )


async def probed(port: int, during: asyncio.Future[object]) -> list[float]:
    stop, latencies = threading.Event(), []
    prober = threading.Thread(target=probe, args=(port, stop, latencies))
    prober.start()
    try:
        await during
    finally:
        stop.set()
        await asyncio.to_thread(prober.join)
    return latencies


async def test_a_large_gateway_translation_does_not_hold_up_ready(tmp_path: Path) -> None:
    (tmp_path / "gw.yaml").write_text(GATEWAY)
    for name in ("one", "two"):
        (tmp_path / f"{name}.yaml").write_text(SERVICE.format(name=name))
    (tmp_path / "big.yaml").write_text(big_virtual_service("one"))
    settings = Settings(
        config_dir=tmp_path,
        xds_host="127.0.0.1",
        xds_port=0,
        http_host="127.0.0.1",
        http_port=0,
        max_hosts_per_object=20_000,
        debounce_after=0.01,
    )
    async with serve(settings) as pilot:
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{pilot.xds_port}")
        client = AdsClient(channel, ROUTER)
        client.node.metadata.update({"LABELS": {"istio": "ingressgateway"}})
        try:
            await client.request(types.LISTENER)
            listeners = await client.recv(timeout=60)
            await client.ack(listeners)
            await client.request(types.ROUTE, ["http.80"])
            routes = await client.recv(timeout=60)
            await client.ack(routes, ["http.80"])
            pushes = pilot.pusher.push_count
            idle = await probed(pilot.http_port, asyncio.ensure_future(asyncio.sleep(0.5)))

            async def edit_and_wait() -> None:
                (tmp_path / "big.yaml").write_text(big_virtual_service("two"))
                update = await client.recv(timeout=60)
                assert update.type_url == types.ROUTE and b"two.example.com" in update.SerializeToString()

            busy = await probed(pilot.http_port, asyncio.ensure_future(edit_and_wait()))
            assert pilot.pusher.push_count > pushes and pilot.pusher.last_push is not None
            translation = pilot.pusher.last_push.duration
        finally:
            client.close()
            await channel.close(None)
    print(f"translation {translation:.3f} s; /ready idle max {max(idle):.3f} s, busy max {max(busy):.3f} s")
    assert translation > 0.2  # the push is big enough to show a blocked loop
    # Measured on 2 shared cores: translated on the loop, /ready took up to 0.26 s during a 0.27 s push;
    # off the loop, 0.01-0.10 s during a 0.35-0.56 s push. The bound leaves room for a busy box.
    added = max(busy) - max(idle)
    assert added < 0.15, f"/ready took up to {max(busy):.3f} s during a {translation:.3f} s push"


# -- the same, with a stand-in translator ----------------------------------------------------------


class GatedTranslator(StandInTranslator):
    """Translates on whichever thread calls it, waiting for ``gate`` first; records the threads."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.gate.set()
        self.threads: set[str] = set()

    def build_snapshot(self, view: ProxyView, context: VersionedContext) -> Snapshot:
        self.threads.add(threading.current_thread().name)
        assert self.gate.wait(DEADLINE)
        return super().build_snapshot(view, context)


async def test_views_are_translated_on_the_worker_thread_while_the_loop_runs() -> None:
    store, cache, translator = ConfigStore(), SnapshotCache(), GatedTranslator()
    pusher = Pusher(store, cache, debounce_after=0.01, debounce_max=1.0, translator=translator)
    store.apply(entry("a"))
    translator.gate.clear()
    opening = asyncio.ensure_future(pusher.on_stream_open(1, node("p", namespace="ns")))
    ticks = 0
    while not translator.threads:  # the loop keeps turning while the translation waits
        ticks += 1
        await asyncio.sleep(0.001)
    translator.gate.set()
    view = await opening
    assert ticks > 0 and threading.current_thread().name not in translator.threads
    assert all(name.startswith("pilot-translate") for name in translator.threads)
    assert cluster_names(cache, view) == {"ns/a"}


async def test_a_view_whose_stream_left_during_its_translation_is_not_cached() -> None:
    store, cache, translator = ConfigStore(), SnapshotCache(), GatedTranslator()
    pusher = Pusher(store, cache, debounce_after=0.01, debounce_max=1.0, translator=translator)
    store.apply(entry("a"))
    view = await pusher.on_stream_open(1, node("p", namespace="ns"))
    store.apply(entry("b"))
    translator.gate.clear()
    pushing = asyncio.ensure_future(pusher.push())
    while len(translator.calls) < 3:  # context r1, view r1, context r2: then the view waits
        await asyncio.sleep(0.001)
    pusher.on_stream_closed(1)
    translator.gate.set()
    await pushing
    assert cache.get_snapshot(view) is None and pusher.views() == {}
