"""The floor: the least an ADS server in Python with grpc.aio can do to push the same config.

It serves the very bytes pilot would send (built once at start-up with pilot's own translator and
:mod:`pilot.server.wire`), and nothing else: no translation after start-up, no per-stream
bookkeeping beyond a write queue, no ACK tracking, no metrics, no push throttle. A request with
an empty ``response_nonce`` (the first of its type) gets the current response of its type; every
other request (ACKs) is read and dropped. ``bench.Floor/Push`` (unary, request = the weight as
ASCII) makes the RDS response with that weight of the edited route current and queues it on
every stream. Like pilot's SotW server since commit 2320e6d, an RDS push holds only the route
configurations that changed (``--rds full``: all of them, as before). Same generic-handler trick as
pilot/server/wire.py: the response serializer passes bytes through.

    python -m bench.floor_server --config-dir DIR --port P --weights 10,11,12 [--uvloop] [--rds full]
    python -m bench.floor_server --config-dir DIR --weights 10,11,12 --processes 2 [--pin 0,1]

Prints ``READY <port> <control ports> <pids>`` on stdout once serving (the lists comma-separated);
stops on SIGTERM/SIGINT.

**More than one process** (``--processes P``, P > 1): this process translates and encodes the
responses once, as above, then starts P server processes and hands each the encoded bytes over
its stdin (one pickle, serialized once; no process translates again). They listen on one port
with ``SO_REUSEPORT`` (grpc's ``grpc.so_reuseport``), so the kernel spreads the proxies'
connections over them by a hash of each connection's addresses. A ``Push`` must reach every
process, so each also listens on a control port of its own: ``bench.Floor/Push`` to each control
port is what a translator telling its stream servers about a new version costs them (the bytes
for each weight are already there). ``bench.Floor/Streams`` answers how many streams a process
holds. ``--pin 0,1`` pins server process i to CPU i (``sched_setaffinity`` before its exec, so
grpc's threads inherit it; ``--pin 0`` pins a lone server process). This process waits and does
nothing else meanwhile.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pickle
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
from envoy.service.discovery.v3 import discovery_pb2

from bench.connection_memory import timed_trim
from bench.mesh import BenchService, node_id, virtual_service_doc, virtual_service_path
from pilot.cache.snapshot import Snapshot, TypeResources
from pilot.config.parse import parse_text
from pilot.config.store import ConfigStore
from pilot.server import wire
from pilot.translate.context import PushContext
from pilot.translate.proxy import Proxy
from pilot.translate.snapshot import build_snapshot
from pilot.xds import types

ADS_SERVICE = "envoy.service.discovery.v3.AggregatedDiscoveryService"
FLOOR_SERVICE = "bench.Floor"
_EOF: object = grpc.aio.EOF  # type: ignore[attr-defined]


def _snapshot(store: ConfigStore) -> Snapshot:
    return build_snapshot(Proxy.from_node(node_id(0)).view(), PushContext.build(store.snapshot()))


def _response(typed: TypeResources, nonce: str, previous: TypeResources | None = None) -> bytes:
    """Every resource of ``typed``, or with ``previous`` only those that differ from it."""
    resources = [
        r
        for name, r in typed.resources.items()
        if previous is None or name not in previous.resources or previous.resources[name].version != r.version
    ]
    payload = wire.encode_resources(r.body for r in resources)
    return wire.discovery_response(
        version_info=typed.version, resources=payload, type_url=typed.type_url, nonce=nonce
    )


def load(
    config_dir: Path, weights: list[int], rds_changed_only: bool
) -> tuple[dict[str, bytes], dict[int, bytes]]:
    """The initial responses per type, and the RDS response for each weight of the edited route
    (in the order given: each holds what changed since the one before if ``rds_changed_only``,
    as pilot's SotW RDS pushes do since commit 2320e6d, else every route configuration)."""
    import yaml

    store = ConfigStore()
    for path in sorted(config_dir.rglob("*.yaml")):
        store.apply(parse_text(path.read_text(encoding="utf-8"), str(path)))
    snapshot = _snapshot(store)
    initial = {type_url: _response(typed, "f0") for type_url, typed in snapshot.by_type.items()}
    edited = BenchService(0)
    origin = str(virtual_service_path(config_dir, edited))
    routes = {}
    previous = snapshot.by_type[types.ROUTE]
    for weight in weights:
        text = yaml.safe_dump(virtual_service_doc(edited, weight), sort_keys=False)
        store.apply(parse_text(text, origin))
        typed = _snapshot(store).by_type[types.ROUTE]
        routes[weight] = _response(typed, f"w{weight}", previous if rds_changed_only else None)
        previous = typed
    return initial, routes


class FloorServer:
    def __init__(self, initial: dict[str, bytes], routes: dict[int, bytes]) -> None:
        self.current = dict(initial)
        self.routes = routes
        self.queues: set[asyncio.Queue[bytes]] = set()

    async def stream(self, request_iterator: Any, context: grpc.aio.ServicerContext[Any, bytes]) -> None:
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        self.queues.add(queue)

        async def writer() -> None:
            while True:
                await context.write(await queue.get())

        sender = asyncio.create_task(writer())
        try:
            while True:
                request = await context.read()
                if request is _EOF:
                    return
                if not request.response_nonce:
                    queue.put_nowait(self.current[request.type_url])
                request = None  # hold no request while waiting for the next (an EDS one is big)
        finally:
            self.queues.discard(queue)
            sender.cancel()

    async def push(self, request: bytes, context: grpc.aio.ServicerContext[Any, bytes]) -> bytes:
        data = self.routes[int(request.decode())]
        self.current[types.ROUTE] = data
        for queue in self.queues:
            queue.put_nowait(data)
        return b""

    async def streams(self, request: bytes, context: grpc.aio.ServicerContext[Any, bytes]) -> bytes:
        return str(len(self.queues)).encode()


def _bytes(message: bytes) -> bytes:
    return message


def _load(args: argparse.Namespace) -> tuple[dict[str, bytes], dict[int, bytes]]:
    weights = [int(w) for w in args.weights.split(",") if w]
    return load(Path(args.config_dir), weights, args.rds == "changed")


async def main_async(args: argparse.Namespace, initial: dict[str, bytes], routes: dict[int, bytes]) -> None:
    floor = FloorServer(initial, routes)
    options: list[tuple[str, Any]] = [
        ("grpc.max_send_message_length", 256 * 1024 * 1024),
        ("grpc.max_concurrent_streams", 100_000),
        # Processes of one group share the port; the kernel spreads connections over them.
        ("grpc.so_reuseport", 1 if args.reuseport else 0),
    ]
    # Extra channel arguments to experiment with (JSON list of [name, value]).
    options += [tuple(item) for item in json.loads(os.environ.get("BENCH_GRPC_OPTIONS", "[]"))]
    server = grpc.aio.server(options=tuple(options))
    ads = grpc.stream_stream_rpc_method_handler(
        floor.stream,
        request_deserializer=discovery_pb2.DiscoveryRequest.FromString,
        response_serializer=_bytes,
    )
    floor_methods = {
        "Push": grpc.unary_unary_rpc_method_handler(
            floor.push, request_deserializer=_bytes, response_serializer=_bytes
        ),
        "Streams": grpc.unary_unary_rpc_method_handler(
            floor.streams, request_deserializer=_bytes, response_serializer=_bytes
        ),
    }
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(ADS_SERVICE, {"StreamAggregatedResources": ads}),
            grpc.method_handlers_generic_handler(FLOOR_SERVICE, floor_methods),
        )
    )
    port = server.add_insecure_port(f"127.0.0.1:{args.port}")
    # A port of this process alone: with SO_REUSEPORT the shared one reaches a process at random.
    control = server.add_insecure_port("127.0.0.1:0") if args.control_port else port
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    # bench.connection_memory --trim: what malloc holds free, against pilot's.
    loop.add_signal_handler(signal.SIGUSR1, timed_trim)
    print(f"READY {port} {control} {os.getpid()}", flush=True)
    await stop.wait()
    await server.stop(0.5)


def _child_setup(cpu: int | None) -> Callable[[], None]:
    """Run in a server process before its exec: undo the group's blocked signals (the mask is
    inherited, and a blocked SIGTERM would never reach the child's event loop), pin it."""

    def setup() -> None:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})

    return setup


def serve_group(args: argparse.Namespace) -> None:
    """Encode once, start ``args.processes`` server processes on one SO_REUSEPORT port, wait."""
    started = time.perf_counter()
    blob = pickle.dumps(_load(args), protocol=pickle.HIGHEST_PROTOCOL)
    encoded = time.perf_counter() - started
    pins = [int(c) for c in args.pin.split(",")] if args.pin else []
    command = [sys.executable, "-m", "bench.floor_server", "--from-stdin", "--reuseport", "--control-port"]
    if args.uvloop:
        command.append("--uvloop")
    children: list[subprocess.Popen[bytes]] = []
    port, controls = args.port, []
    try:
        for index in range(args.processes):
            child = subprocess.Popen(
                [*command, "--port", str(port)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                preexec_fn=_child_setup(pins[index] if index < len(pins) else None),  # noqa: PLW1509
            )
            children.append(child)
            assert child.stdin is not None and child.stdout is not None
            child.stdin.write(blob)
            child.stdin.close()
            fields = child.stdout.readline().decode().split()  # READY <port> <control> <pid>
            if not fields or fields[0] != "READY":
                raise RuntimeError(f"floor process {index} did not start")
            port = int(fields[1])
            controls.append(fields[2])
        print(f"floor group: {len(blob)} bytes encoded once in {encoded:.2f}s", file=sys.stderr, flush=True)
        pids = ",".join(str(child.pid) for child in children)
        print(f"READY {port} {','.join(controls)} {pids}", flush=True)
        signal.sigwait({signal.SIGTERM, signal.SIGINT})
    finally:
        for child in children:
            child.terminate()
        for child in children:
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config-dir", default="")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--weights", default="")
    parser.add_argument("--uvloop", action="store_true")
    parser.add_argument(
        "--rds",
        choices=("changed", "full"),
        default="changed",
        help="an RDS push holds the changed route configurations, or all of them",
    )
    parser.add_argument("--processes", type=int, default=1, help="server processes on one port")
    parser.add_argument("--pin", default="", help="the CPU of each server process, e.g. 0,1")
    parser.add_argument("--reuseport", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--control-port", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--from-stdin", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.processes > 1:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
        serve_group(args)
        return 0
    if args.pin:  # one process: pinned before grpc starts its threads, which inherit it
        os.sched_setaffinity(0, {int(args.pin)})
    if args.from_stdin:  # a process of a group: the group's encoded responses, unpickled
        started = time.perf_counter()
        initial, routes = pickle.load(sys.stdin.buffer)
        took = (time.perf_counter() - started) * 1000
        print(f"floor process {os.getpid()}: responses read and unpickled in {took:.1f} ms", file=sys.stderr)
    else:
        initial, routes = _load(args)
    if args.uvloop:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    asyncio.run(main_async(args, initial, routes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
