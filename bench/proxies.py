"""Simulated Envoy proxies: one worker process runs many ADS streams on one grpc.aio event loop.

Each simulated proxy has its own channel (and so its own TCP connection, as separate Envoys
would) and subscribes the way an Envoy sidecar does over ADS:

1. CDS and LDS, wildcard (the first request carries the node);
2. on a CDS response: EDS for every EDS cluster in it (if that set changed), then the CDS ACK;
3. on an LDS response: RDS for every route configuration its listeners name (if changed), then
   the LDS ACK;
4. EDS and RDS responses: ACK.

A proxy has "full config" once it has ACKed a response of each of the four types. Every RDS
response is also read for the weight of subset v1 of ``svc-0000`` (the route the benchmark
edits), so a worker can tell when each of its proxies ACKed the new routes.

When a proxy's stream ends (an error such as ``CANCELLED`` or ``UNAVAILABLE``, or the server
finishing it), the proxy opens a new one on the same channel after a jittered exponential
backoff, as Envoy's ``GrpcStream`` does (see :class:`Backoff`), and subscribes again from
scratch. The ends are counted per phase of the run (``retries``: ``added``, ``storm``,
``connected`` between a connect and the next, ``edits``), by how the stream ended.

Decoding is memoized per (type URL, version), over delta per (type URL, version, nonce): every
proxy of the one view gets the same bytes, so the worker parses a CDS/LDS/RDS payload once per
version and its proxies only read the DiscoveryResponse envelope. This keeps the simulated fleet's
CPU (which shares the machine with pilot) small.

The parent drives a worker over a ``multiprocessing`` pipe with small tuples (see ``Worker``).
All times are ``time.monotonic()``, which is one clock for every process on Linux.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any, TypeAlias

import grpc
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.service.discovery.v3 import discovery_pb2

from bench.mesh import BenchService, node_id
from pilot.xds.listeners import route_config_names

METHOD = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"
CDS = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
EDS = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
LDS = "type.googleapis.com/envoy.config.listener.v3.Listener"
RDS = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
ALL_TYPES = frozenset({CDS, EDS, LDS, RDS})
EDITED_HOST_PREFIX = BenchService(0).host + ":"

CHANNEL_OPTIONS = (
    # Without this, channels to one target share one TCP connection in a process.
    ("grpc.use_local_subchannel_pool", 1),
    ("grpc.max_receive_message_length", 256 * 1024 * 1024),
    ("grpc.enable_retries", 0),
)

Request = discovery_pb2.DiscoveryRequest
Response: TypeAlias = Any  # discovery_pb2.DiscoveryResponse (the stubs do not type it)
_EOF: object = grpc.aio.EOF  # type: ignore[attr-defined]


def anys(response: Response) -> list[Any]:
    """The ``Any`` of each resource: a DiscoveryResponse holds them, a delta one wraps them."""
    if isinstance(response, discovery_pb2.DeltaDiscoveryResponse):
        return [resource.resource for resource in response.resources]
    return list(response.resources)


def eds_clusters(response: Response) -> tuple[str, ...]:
    names = []
    for any_msg in anys(response):
        cluster = cluster_pb2.Cluster.FromString(any_msg.value)
        if cluster.type == cluster_pb2.Cluster.EDS:
            names.append(cluster.eds_cluster_config.service_name or cluster.name)
    return tuple(sorted(names))


def route_names(response: Response) -> tuple[str, ...]:
    listeners = (listener_pb2.Listener.FromString(any_msg.value) for any_msg in anys(response))
    return tuple(sorted(route_config_names(listeners)))


def edited_weight(response: Response) -> int:
    """The v1 weight of the edited service's route (-1 if not found), in route configurations or
    (VHDS) virtual hosts, whose names are ``ROUTE_CONFIG/`` and Istio's."""
    vhosts: list[Any] = []
    for any_msg in anys(response):
        if any_msg.type_url.endswith(".VirtualHost"):
            vhosts.append(route_components_pb2.VirtualHost.FromString(any_msg.value))
        else:
            vhosts.extend(route_pb2.RouteConfiguration.FromString(any_msg.value).virtual_hosts)
    for vhost in vhosts:
        if not vhost.name.rpartition("/")[2].startswith(EDITED_HOST_PREFIX):
            continue
        for route in vhost.routes:
            if route.route.HasField("weighted_clusters"):
                for weighted in route.route.weighted_clusters.clusters:
                    if "|v1|" in weighted.name:
                        return int(weighted.weight.value)
    return -1


class Backoff:
    """When a proxy opens its next stream: Envoy's GrpcStream retries its xDS stream after
    ``JitteredExponentialBackOffStrategy(500 ms, 30 s)`` (RetryInitialDelayMs,
    RetryMaxDelayMs in source/common/config/grpc_stream.h): a delay uniform in [0, interval),
    the interval doubling from 0.5 s up to 30 s, back to 0.5 s whenever a response arrives
    (GrpcStream::onReceiveMessage).
    https://github.com/envoyproxy/envoy/blob/main/source/common/config/grpc_stream.h
    https://github.com/envoyproxy/envoy/blob/main/source/common/common/backoff_strategy.cc"""

    BASE = 0.5
    MAX = 30.0
    __slots__ = ("interval",)

    def __init__(self) -> None:
        self.interval = self.BASE

    def reset(self) -> None:
        self.interval = self.BASE

    def next_delay(self) -> float:
        delay = random.random() * self.interval
        self.interval = min(self.interval * 2, self.MAX)
        return delay


class Memo:
    """Per-process decode cache keyed by (type URL, version_info)."""

    def __init__(self) -> None:
        self._cache: dict[tuple[Any, ...], Any] = {}

    def get(self, response: Response, decode: Callable[[Response], Any]) -> Any:
        key: tuple[Any, ...]
        if isinstance(response, discovery_pb2.DeltaDiscoveryResponse):
            # A delta response at one version holds what this proxy lacks, which differs between
            # proxies: key by its nonce too. pilot numbers each response it encodes from one
            # counter and sends the same bytes under the same nonce to every stream in step, so
            # (version, nonce) names the bytes exactly while one server runs (``clear`` between
            # servers); keying by the resources' names instead cost the fleet 3000 names per
            # proxy and response at K=1000, more CPU than pilot's own per stream.
            key = (
                response.type_url,
                response.system_version_info,
                response.nonce,
                len(response.resources),
                len(response.removed_resources),
            )
        else:
            key = (response.type_url, response.version_info)
        found = self._cache.get(key)
        if found is None:
            found = self._cache[key] = decode(response)
            if len(self._cache) > 4096:
                self._cache.clear()
                self._cache[key] = found
        return found

    def clear(self) -> None:
        self._cache.clear()


@dataclass
class Tracker:
    """Who ACKed RDS with a given weight of the edited route, and when."""

    weight: int
    expected: int
    times: dict[int, float] = field(default_factory=dict)
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def record(self, index: int, at: float) -> None:
        if index not in self.times:
            self.times[index] = at
            if len(self.times) >= self.expected:
                self.done.set()


class Fleet:
    """The simulated proxies of one worker process."""

    def __init__(self) -> None:
        self.memo = Memo()
        self.proxies: dict[int, asyncio.Task[None]] = {}
        self.channels: dict[int, grpc.aio.Channel] = {}
        self.full_at: dict[int, float] = {}
        self.full_event = asyncio.Event()
        self.waiting: frozenset[int] = frozenset()  # the proxies the current connect waits for
        self.tracker: Tracker | None = None
        self.errors: dict[str, int] = {}
        self.phase = "storm"  # what the driver is measuring: ends of streams are counted per phase
        self.retries: dict[str, dict[str, int]] = {}  # phase -> how streams ended -> count
        self.responses = 0
        self.nacks = 0

    # -- one proxy -------------------------------------------------------------------------------

    async def run(self, index: int, target: str, protocol: str) -> None:
        """Proxy ``index``: one stream after another on its channel until it is cancelled."""
        from bench.delta_proxies import delta_proxy  # it imports this module

        channel = grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS)
        self.channels[index] = channel
        backoff = Backoff()
        while True:
            try:
                if protocol == "sotw":
                    await self.proxy(index, channel, backoff)
                else:
                    await delta_proxy(self, index, channel, backoff, protocol)
                key = "stream ended by the server"  # Envoy retries this too (onRemoteClose)
            except asyncio.CancelledError:
                raise
            except grpc.aio.AioRpcError as exc:
                key = f"{exc.code().name}: {exc.details()}"[:120]
            except Exception as exc:  # a broken stream is counted and retried, not fatal to the worker
                key = type(exc).__name__
            self.errors[key] = self.errors.get(key, 0) + 1
            phase = self.retries.setdefault(self.phase, {})
            phase[key] = phase.get(key, 0) + 1
            await asyncio.sleep(backoff.next_delay())

    async def proxy(self, index: int, channel: grpc.aio.Channel, backoff: Backoff) -> None:
        """One SotW stream until it ends (returns) or fails (raises)."""
        call: Any = channel.stream_stream(
            METHOD,
            request_serializer=Request.SerializeToString,
            response_deserializer=discovery_pb2.DiscoveryResponse.FromString,
        )(wait_for_ready=True)  # type: ignore[call-arg]
        node = base_pb2.Node(id=node_id(index), cluster="bench")
        acked: set[str] = set()
        eds_names: tuple[str, ...] = ()
        rds_names: tuple[str, ...] = ()
        last: dict[str, tuple[str, str]] = {}  # type -> (version, nonce) of the last response
        weight = -1
        try:
            await call.write(Request(node=node, type_url=CDS))
            await call.write(Request(type_url=LDS))
            while True:
                response: Response = await call.read()
                if response is _EOF:
                    return
                self.responses += 1
                backoff.reset()
                type_url = response.type_url
                version, nonce = response.version_info, response.nonce
                last[type_url] = (version, nonce)
                if type_url == CDS:
                    names = self.memo.get(response, eds_clusters)
                    if names != eds_names:
                        eds_names = names
                        eds_version, eds_nonce = last.get(EDS, ("", ""))
                        await call.write(
                            Request(
                                type_url=EDS,
                                resource_names=names,
                                version_info=eds_version,
                                response_nonce=eds_nonce,
                            )
                        )
                    await call.write(Request(type_url=CDS, version_info=version, response_nonce=nonce))
                elif type_url == LDS:
                    names = self.memo.get(response, route_names)
                    if names != rds_names:
                        rds_names = names
                        rds_version, rds_nonce = last.get(RDS, ("", ""))
                        await call.write(
                            Request(
                                type_url=RDS,
                                resource_names=names,
                                version_info=rds_version,
                                response_nonce=rds_nonce,
                            )
                        )
                    await call.write(Request(type_url=LDS, version_info=version, response_nonce=nonce))
                elif type_url == EDS:
                    await call.write(
                        Request(
                            type_url=EDS, resource_names=eds_names, version_info=version, response_nonce=nonce
                        )
                    )
                elif type_url == RDS:
                    await call.write(
                        Request(
                            type_url=RDS, resource_names=rds_names, version_info=version, response_nonce=nonce
                        )
                    )
                    new_weight = self.memo.get(response, edited_weight)
                    if new_weight != weight:
                        weight = new_weight
                        self.saw_weight(index, weight)
                if len(acked) < 4 and type_url in ALL_TYPES:
                    acked.add(type_url)
                    if acked >= ALL_TYPES:
                        self.has_full_config(index)
                # Not held while the next read waits: at K=5000 each stream's last response is
                # MBs (4 x 1250 streams' worth ran a 23 GB machine out of memory at N=5000).
                del response
        finally:
            call.cancel()

    def saw_weight(self, index: int, weight: int) -> None:
        """Proxy ``index`` ACKed routes with the edited route's v1 at ``weight``."""
        tracker = self.tracker
        if tracker is not None and tracker.weight == weight:
            tracker.record(index, time.monotonic())

    def has_full_config(self, index: int) -> None:
        """Proxy ``index`` ACKed all four types (again, after a retry: the first time counts)."""
        if index in self.waiting and index not in self.full_at:
            self.full_at[index] = time.monotonic()
            if len(self.full_at) >= len(self.waiting):
                self.full_event.set()

    # -- commands --------------------------------------------------------------------------------

    async def connect(
        self, target: str, indices: list[int], timeout: float, protocol: str = "sotw", phase: str = "storm"
    ) -> dict[str, Any]:
        self.phase = phase
        self.full_at = {}
        self.full_event = asyncio.Event()
        self.waiting = frozenset(indices)
        started = time.monotonic()
        for index in indices:
            self.proxies[index] = asyncio.create_task(self.run(index, target, protocol))
        if not indices:
            self.full_event.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.full_event.wait(), timeout)
        self.phase = "connected"  # until the next connect or edit: idle, connected proxies
        return {"started": started, "full": dict(self.full_at), "errors": dict(self.errors)}

    def expect(self, weight: int) -> None:
        self.phase = "edits"
        alive = sum(1 for task in self.proxies.values() if not task.done())
        self.tracker = Tracker(weight, alive)

    async def wait(self, weight: int, timeout: float) -> dict[str, Any]:
        tracker = self.tracker
        if tracker is None or tracker.weight != weight:
            raise RuntimeError(f"wait({weight}) without expect({weight})")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(tracker.done.wait(), timeout)
        return {"times": dict(tracker.times), "expected": tracker.expected, "errors": dict(self.errors)}

    async def close(self) -> dict[str, Any]:
        tasks = list(self.proxies.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        channels = list(self.channels.values())
        await asyncio.gather(*(channel.close(None) for channel in channels), return_exceptions=True)
        self.proxies.clear()
        self.channels.clear()
        self.tracker = None
        self.memo.clear()  # the next connect may be to another server, whose nonces start anew
        errors, self.errors = self.errors, {}
        retries, self.retries = self.retries, {}
        responses, self.responses = self.responses, 0
        self.waiting = frozenset()
        gc.collect()
        return {"closed": len(tasks), "errors": errors, "retries": retries, "responses": responses}


async def _serve(pipe: Connection) -> None:
    loop = asyncio.get_running_loop()
    fleet = Fleet()
    while True:
        command: tuple[Any, ...] = await loop.run_in_executor(None, pipe.recv)
        name = command[0]
        try:
            if name == "connect":
                reply: Any = await fleet.connect(command[1], command[2], command[3], *command[4:])
            elif name == "expect":
                fleet.expect(command[1])
                reply = "ok"
            elif name == "wait":
                reply = await fleet.wait(command[1], command[2])
            elif name == "close":
                reply = await fleet.close()
            elif name == "exit":
                await fleet.close()
                pipe.send("bye")
                return
            else:
                reply = {"error": f"unknown command {name!r}"}
        except Exception as exc:  # report to the parent instead of dying silently
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        pipe.send(reply)


def worker_main(pipe: Connection) -> None:
    """Entry point of a worker process (multiprocessing, spawn)."""
    try:
        asyncio.run(_serve(pipe))
    finally:
        pipe.close()
