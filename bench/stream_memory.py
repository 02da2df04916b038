"""Per-stream memory and bytes of the ADS server: N in-process proxies of one view, K services.

Each proxy is a fake gRPC context that subscribes the way a sidecar does (CDS and LDS wildcard,
EDS for every cluster, RDS for every route configuration; with ``vhds``, delta ADS and node
metadata ``VHDS: "true"``, plus Envoy's VHDS request, which names nothing), ACKs every response,
and keeps nothing of what it is sent. Figures, per proxy:

- ``in_step_kib_per_proxy``: the Python heap the server holds (tracemalloc) once every proxy is in
  step with the view's snapshot, divided by N; it includes each stream's share of what the streams
  share (encoded selections), and not the snapshots themselves (built before measuring);
- ``sync_peak_kib_per_proxy``: the heap's peak while they all sync, divided by N (the response
  buffers of a connect storm);
- ``after_push_kib_per_proxy``: the heap after a push of a snapshot in which one VirtualService
  has a new weight;
- ``bytes_per_proxy_per_edit``: what that push wrote to each proxy (serialized responses); and
  ``sync_bytes_per_proxy``, what the initial sync wrote.

``--push-time``: the wall time of that push instead, without tracemalloc, and
``rss_in_step_kib_per_proxy``, the process's RSS growth from before the first proxy until all are
in step, divided by N: what the streams cost below Python too (the allocator, protobuf's arenas),
but without grpc core, which the fake contexts replace (run one ``--protocol`` per process for it:
a later protocol reuses the pages the first one freed). Bytes do not depend on the machine's load;
heap figures depend only on the code.

    .venv/bin/python -m bench.stream_memory --proxies 1000 --services 1000
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from envoy.service.discovery.v3 import discovery_pb2

from bench import procstat
from bench.mesh import edit_virtual_service, node_id, write_mesh
from pilot.cache.cache import SnapshotCache
from pilot.cache.snapshot import Snapshot
from pilot.config.parse import parse_text
from pilot.config.store import ConfigStore
from pilot.server.ads import AdsServer
from pilot.server.connection import Connection
from pilot.server.delta import DeltaStream
from pilot.server.sotw import SotwStream
from pilot.translate.context import PushContext
from pilot.translate.proxy import VHDS_METADATA, Proxy
from pilot.translate.snapshot import build_snapshot
from pilot.xds import types

_EOF: object = object()
VIEW = "bench"


class FakeProxy:
    """A sidecar's side of one stream: its requests in order, an ACK for every response."""

    def __init__(self, protocol: str, first: list[Any], synced: Callable[[], None]) -> None:
        self._protocol = protocol
        self._requests: asyncio.Queue[Any] = asyncio.Queue()
        for request in first:
            self._requests.put_nowait(request)
        self._synced = synced
        self.unacked = 0
        self.written = 0
        self.by_type: dict[str, int] = {}

    async def read(self) -> Any:
        return await self._requests.get()

    async def write(self, data: bytes) -> None:
        self.written += len(data)
        if self._protocol == "sotw":
            response = discovery_pb2.DiscoveryResponse.FromString(data)
            ack: Any = discovery_pb2.DiscoveryRequest(
                type_url=response.type_url,
                version_info=response.version_info,
                response_nonce=response.nonce,
                resource_names=_SUBSCRIBED.get(response.type_url, ()),
            )
        else:
            delta = discovery_pb2.DeltaDiscoveryResponse.FromString(data)
            ack = discovery_pb2.DeltaDiscoveryRequest(type_url=delta.type_url, response_nonce=delta.nonce)
        short = types.short_name(ack.type_url)
        self.by_type[short] = self.by_type.get(short, 0) + len(data)
        self._requests.put_nowait(ack)
        self._synced()


_SUBSCRIBED: dict[str, Sequence[str]] = {}
PROTOCOLS = ("sotw", "delta", "vhds")  # vhds: delta ADS, virtual hosts over VHDS
_CLASSIC_TYPES = (types.CLUSTER, types.ENDPOINT, types.LISTENER, types.ROUTE)


def subscribed_types(protocol: str) -> tuple[str, ...]:
    return (*_CLASSIC_TYPES, types.VIRTUAL_HOST) if protocol == "vhds" else _CLASSIC_TYPES


def first_requests(protocol: str, index: int, snapshot: Snapshot) -> list[Any]:
    node: dict[str, Any] = {"id": node_id(index)}
    if protocol == "vhds":
        node["metadata"] = {VHDS_METADATA: "true"}
    out: list[Any] = []
    for type_url in subscribed_types(protocol):
        names = _SUBSCRIBED.get(type_url, ())
        if protocol == "sotw":
            out.append(discovery_pb2.DiscoveryRequest(type_url=type_url, resource_names=names, node=node))
        elif type_url == types.VIRTUAL_HOST:
            # Envoy's VHDS request names nothing (pilot.server.delta: _route_configurations).
            out.append(discovery_pb2.DeltaDiscoveryRequest(type_url=type_url, node=node))
        else:
            out.append(
                discovery_pb2.DeltaDiscoveryRequest(
                    type_url=type_url, resource_names_subscribe=names or ["*"], node=node
                )
            )
        node = {}
    return out


def translate(root: Path, protocol: str = "sotw") -> tuple[ConfigStore, Snapshot]:
    store = ConfigStore()
    for path in sorted(root.rglob("*.yaml")):
        store.apply(parse_text(path.read_text(encoding="utf-8"), str(path)))
    metadata = {VHDS_METADATA: "true"} if protocol == "vhds" else {}
    view = Proxy.from_node(node_id(0), metadata).view()
    return store, build_snapshot(view, PushContext.build(store.snapshot()))


class InProcessStreams:
    """The server's streams of ``protocol`` (delta for ``vhds``) for VIEW in this process, each
    with a :class:`FakeProxy`; the server's shared parts (fan-out, encoded caches) as AdsServer
    builds them. ``snapshot`` is the view's first."""

    def __init__(self, protocol: str, snapshot: Snapshot) -> None:
        _SUBSCRIBED.clear()
        _SUBSCRIBED[types.ENDPOINT] = sorted(snapshot.resources(types.ENDPOINT))
        _SUBSCRIBED[types.ROUTE] = sorted(snapshot.resources(types.ROUTE))
        self.protocol = protocol
        self.cache = SnapshotCache()
        self.cache.set_snapshot(VIEW, snapshot)
        self.server = AdsServer(self.cache, callbacks=None, push_concurrency=100, send_timeout=30.0)  # type: ignore[arg-type]
        self.fakes: list[FakeProxy] = []
        self.tasks: list[asyncio.Task[None]] = []
        self.responses = 0  # written to the fakes so far

    def _written(self) -> None:
        self.responses += 1

    async def open(self, count: int, snapshot: Snapshot) -> None:
        """``count`` more streams, each sending its first requests (their names from ``snapshot``)."""
        server, wire_protocol = self.server, "sotw" if self.protocol == "sotw" else "delta"
        stream_type = SotwStream if self.protocol == "sotw" else DeltaStream
        shared = server._selections if self.protocol == "sotw" else server._delta_resources
        control_plane = server._control_plane if self.protocol == "sotw" else server._delta_control_plane
        for _ in range(count):
            i = len(self.fakes)
            conn = Connection(i + 1, node_id(i), "bench", VIEW, protocol=wire_protocol)
            fake = FakeProxy(wire_protocol, first_requests(self.protocol, i, snapshot), self._written)
            self.fakes.append(fake)
            stream = stream_type(
                conn,
                fake,  # a fake context, which the stream only reads and writes
                self.cache,
                server._fanout,
                shared,  # type: ignore[arg-type]  # the protocol's own
                server._responses,
                control_plane,
            )
            first = await fake.read()
            self.tasks.append(asyncio.create_task(stream.run(first)))
            if i % 50 == 49:
                await asyncio.sleep(0)

    async def settle(self, target: int, after: float = 0.5) -> None:
        """Until ``target`` responses were written, and ``after`` seconds more (the last ACKs are
        read)."""
        deadline = time.monotonic() + 600
        while self.responses < target:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.responses} of {target} responses")
            await asyncio.sleep(0.005)
        await asyncio.sleep(after)

    def written(self) -> int:
        """Bytes written to every fake so far."""
        return sum(f.written for f in self.fakes)

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def measure(
    protocol: str, proxies: int, root: Path, services: list[Any], trace: bool = True
) -> dict[str, float]:
    _, snapshot = translate(root, protocol)
    edit_virtual_service(root, services[0], 1)
    _, changed = translate(root, protocol)  # one route differs
    streams = InProcessStreams(protocol, snapshot)
    expected = 0

    gc.collect()
    if trace:
        tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    rss_before = procstat.rss_kib(os.getpid())
    await streams.open(proxies, snapshot)
    expected += proxies * len(subscribed_types(protocol))
    await streams.settle(expected)
    gc.collect()
    in_step, peak = (m - before for m in tracemalloc.get_traced_memory())
    rss_in_step = procstat.rss_kib(os.getpid()) - rss_before
    synced_bytes = streams.written()

    pushed = time.perf_counter()
    streams.cache.set_snapshot(VIEW, changed)
    await streams.settle(expected + proxies)  # one RDS (or VHDS) response each
    push_seconds = time.perf_counter() - pushed - 0.5
    del snapshot
    gc.collect()
    after_push = tracemalloc.get_traced_memory()[0] - before
    if trace:
        tracemalloc.stop()
    await streams.close()
    edit_bytes = streams.written() - synced_bytes
    sizes = {
        "sync_bytes_per_proxy": round(synced_bytes / proxies),
        "bytes_per_proxy_per_edit": round(edit_bytes / proxies),
    }
    if not trace:
        return {
            "push_ms": round(push_seconds * 1000),
            "rss_in_step_kib_per_proxy": round(rss_in_step / proxies, 1),
            **sizes,
        }
    return {
        "in_step_kib_per_proxy": round(in_step / proxies / 1024, 1),
        "sync_peak_kib_per_proxy": round(peak / proxies / 1024, 1),
        "after_push_kib_per_proxy": round(after_push / proxies / 1024, 1),
        **sizes,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--proxies", type=int, default=1000)
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--protocol", choices=(*PROTOCOLS, "all"), default="all")
    parser.add_argument(
        "--push-time",
        action="store_true",
        help="no tracemalloc: time the push of one changed route to every proxy instead",
    )
    opts = parser.parse_args(argv)
    protocols = PROTOCOLS if opts.protocol == "all" else (opts.protocol,)
    out: dict[str, Any] = {"proxies": opts.proxies, "services": opts.services}
    for protocol in protocols:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            services = write_mesh(root, opts.services)
            out[protocol] = asyncio.run(
                measure(protocol, opts.proxies, root, services, trace=not opts.push_time)
            )
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
