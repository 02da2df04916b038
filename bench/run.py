"""The benchmark driver: pilot serving K services to N simulated proxies, against the floor.

    .venv/bin/python -m bench                      # the default matrix (see --help)
    .venv/bin/python -m bench --proxies 1000 --services 100

Per case (N proxies, K services) it:

1. writes the mesh (bench/mesh.py) into a temporary folder and times a full translation of it
   in this process (``PushContext.build`` + ``build_snapshot`` for the proxies' one view);
2. starts ``pilot serve`` on it as a subprocess (CPU and RSS read from /proc/PID);
3. connect storm: the N proxies (spread over the worker processes) connect at once (or
   ``--connect-batch`` B at a time); time until every one has ACKed CDS, EDS, LDS and RDS. A
   proxy whose stream ends opens another, with Envoy's backoff (bench/proxies.py): the streams
   retried are counted per phase;
4. edits the VirtualService of ``svc-0000`` ``--edits`` times in a row (each edit waits until
   every proxy ACKed the new routes): convergence from the file write to each proxy's ACK,
   split into "detect + debounce" (write → push start, from /debug/push_status) and the push
   itself (push start → ACK); pilot CPU seconds per push; RSS after the first and the last edit;
5. connects ``--added`` more proxies: RSS per added connection;
6. stops pilot, starts the floor server (bench/floor_server.py) on the same folder and repeats
   the storm and ``--floor-edits`` pushes of the same RDS bytes to the same N proxy slots.

A table goes to stdout and everything (every sample's summary) to bench/results/*.json. If the
machine's available memory falls under ``--mem-floor`` (3 GiB) during a case, the case stops
(bench/memory_guard.py), is recorded as aborted, and the next one runs.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import grpc

from bench import procstat
from bench.memory_guard import GIB_KIB, MemoryGuard
from bench.mesh import BenchService, edit_virtual_service, edit_weight, virtual_service_doc, write_mesh
from bench.proxies import worker_main
from pilot.localmesh.control_plane import PilotProcess

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"

# Cases the default run skips (too long for the 2-core reference machine): N*K above this.
DEFAULT_MAX_PRODUCT = 100_000


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (pct in 0..100) of a non-empty sample."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(pct / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def summary(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "p50": percentile(values, 50),
        "p99": percentile(values, 99),
        "max": max(values),
        "mean": statistics.fmean(values),
    }


# -- worker processes -------------------------------------------------------------------------------


class Workers:
    """The simulated-proxy processes (spawned once, reused by every case)."""

    def __init__(self, count: int, guard: MemoryGuard | None = None) -> None:
        self.guard = guard
        ctx = multiprocessing.get_context("spawn")
        self.pipes: list[Connection] = []
        self.procs: list[Any] = []
        for _ in range(count):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=worker_main, args=(child,), daemon=True)
            proc.start()
            child.close()
            self.pipes.append(parent)
            self.procs.append(proc)

    def pids(self) -> list[int]:
        return [proc.pid for proc in self.procs]

    def cpu_seconds(self) -> float:
        """CPU seconds of every worker so far: what the simulated fleet costs the machine."""
        return sum(procstat.cpu_seconds(pid) for pid in self.pids())

    def call_all(self, commands: Sequence[tuple[Any, ...]], timeout: float) -> list[Any]:
        if self.guard is not None:
            self.guard.check()
        for pipe, command in zip(self.pipes, commands, strict=True):
            pipe.send(command)
        replies = []
        deadline = time.monotonic() + timeout
        for pipe in self.pipes:
            if not pipe.poll(max(0.0, deadline - time.monotonic())):
                raise TimeoutError(f"worker did not answer {commands[0][0]!r} within {timeout:.0f}s")
            try:
                reply = pipe.recv()
            except EOFError:  # the worker died (the memory guard stops workers so)
                if self.guard is not None:
                    self.guard.check()
                raise
            if isinstance(reply, dict) and "error" in reply:
                raise RuntimeError(f"worker: {reply['error']}")
            replies.append(reply)
        return replies

    def broadcast(self, command: tuple[Any, ...], timeout: float) -> list[Any]:
        return self.call_all([command] * len(self.pipes), timeout)

    def connect(
        self,
        target: str,
        indices: Sequence[int],
        timeout: float,
        protocol: str = "sotw",
        phase: str = "storm",
    ) -> tuple[float, dict[int, float], dict[str, int]]:
        """Open proxies ``indices`` (split over the workers) at once, speaking ``protocol``
        (``sotw``, ``delta``, or ``vhds``: delta with virtual hosts over VHDS); the streams that
        end from now on count as retries of ``phase``.

        Returns (start time, index → time it had full config, how streams ended since the last
        close)."""
        slices = [list(indices[w :: len(self.pipes)]) for w in range(len(self.pipes))]
        started = time.monotonic()
        commands = [("connect", target, s, timeout, protocol, phase) for s in slices]
        replies = self.call_all(commands, timeout + 30)
        full: dict[int, float] = {}
        errors: dict[str, int] = {}
        for reply in replies:
            full.update(reply["full"])
            for key, count in reply["errors"].items():
                errors[key] = errors.get(key, 0) + count
        return started, full, errors

    def close_proxies(self) -> dict[str, Any]:
        replies = self.broadcast(("close",), 60)
        errors: dict[str, int] = {}
        retries: dict[str, dict[str, int]] = {}
        for reply in replies:
            for key, count in reply["errors"].items():
                errors[key] = errors.get(key, 0) + count
            for phase, ends in reply["retries"].items():
                merged = retries.setdefault(phase, {})
                for key, count in ends.items():
                    merged[key] = merged.get(key, 0) + count
        return {
            "closed": sum(r["closed"] for r in replies),
            "errors": errors,
            "retries": retries,
            "responses": sum(r["responses"] for r in replies),
        }

    def stop(self) -> None:
        if self.guard is not None:
            for pid in self.pids():
                self.guard.unwatch(pid)
        for pipe in self.pipes:
            try:
                pipe.send(("exit",))
            except (OSError, BrokenPipeError):
                pass
        for proc in self.procs:
            proc.join(10)
            if proc.is_alive():
                proc.terminate()
                proc.join(5)


# -- the measured servers ---------------------------------------------------------------------------


class BenchPilot(PilotProcess):
    """``pilot serve`` started by the benchmark; on uvloop through bench/pilot_uvloop.py if asked."""

    def __init__(self, *args: Any, uvloop: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.uvloop = uvloop

    @property
    def command(self) -> list[str]:
        command = super().command
        if self.uvloop:
            command[1:3] = ["-m", "bench.pilot_uvloop"]
        # The simulated proxies connect all at once; a refused stream would be retried after
        # Envoy's backoff: admit them all (the benchmark measures serving, not the admission rate).
        return [*command, "--max-requests-per-second", "0"]


class FloorProcess:
    """bench/floor_server.py as a subprocess: one server process, or ``processes`` of them on one
    SO_REUSEPORT port (``pin``: the CPU of each), under a parent that encoded their responses."""

    def __init__(
        self,
        config_dir: Path,
        weights: Sequence[int],
        log_path: Path,
        uvloop: bool,
        rds: str = "changed",
        processes: int = 1,
        pin: Sequence[int] = (),
    ) -> None:
        command = [
            sys.executable,
            "-m",
            "bench.floor_server",
            "--config-dir",
            str(config_dir),
            "--weights",
            ",".join(str(w) for w in weights),
            "--rds",
            rds,
        ]
        if uvloop:
            command.append("--uvloop")
        if processes > 1:
            command += ["--processes", str(processes)]
        if pin:
            command += ["--pin", ",".join(str(c) for c in pin)]
        self._log = open(log_path, "ab")  # noqa: SIM115 -- closed in stop()
        self.proc = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=self._log, cwd=ROOT, start_new_session=True
        )
        assert self.proc.stdout is not None
        fields = self.proc.stdout.readline().decode().split()  # READY <port> <controls> <pids>
        if not fields or fields[0] != "READY":
            self.stop()
            raise RuntimeError(f"floor server did not start (see {log_path})")
        self.port = int(fields[1])
        self.pids = [int(pid) for pid in fields[3].split(",")]
        self.channels = [grpc.insecure_channel(f"127.0.0.1:{port}") for port in fields[2].split(",")]
        self._push = [
            channel.unary_unary("/bench.Floor/Push", request_serializer=None, response_deserializer=None)
            for channel in self.channels
        ]
        self._streams = [
            channel.unary_unary("/bench.Floor/Streams", request_serializer=None, response_deserializer=None)
            for channel in self.channels
        ]

    @property
    def pid(self) -> int:
        """The server process (the first one of a group)."""
        return self.pids[0]

    def push(self, weight: int) -> None:
        """Every server process makes the RDS response of ``weight`` current and queues it."""
        calls = [push.future(str(weight).encode(), timeout=10) for push in self._push]
        for call in calls:
            call.result()

    def streams(self) -> list[int]:
        """How many ADS streams each server process holds."""
        return [int(streams(b"", timeout=10).decode()) for streams in self._streams]

    def stop(self) -> None:
        for channel in getattr(self, "channels", []):
            channel.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


class PySpy:
    """``py-spy record`` on a process for the duration of a ``with`` block (collapsed stacks)."""

    def __init__(self, pid: int, out: Path | None, native: bool = False) -> None:
        self.pid, self.out, self.native = pid, out, native
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> PySpy:
        if self.out is not None:
            exe = Path(sys.executable).with_name("py-spy")
            command = [
                str(exe),
                "record",
                "--pid",
                str(self.pid),
                "--format",
                "raw",
                "--rate",
                "250",
                "--output",
                str(self.out),
                "--nonblocking",
            ]
            if self.native:
                command.append("--native")
            self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.5)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.send_signal(2)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _get_json(port: int, path: str) -> Any:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as reply:
        return json.loads(reply.read())


def _pushed_bytes(port: int) -> float:
    """Every response byte pilot has written (``pilot_xds_push_bytes_total``, all types)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    return sum(float(v) for v in re.findall(r"^pilot_xds_push_bytes_total\{[^}]*\} (\S+)$", text, re.M))


# -- one case -------------------------------------------------------------------------------------


@dataclass
class Options:
    workers: int
    edits: int
    floor_edits: int
    added: int | None
    debounce: float
    pilot_uvloop: bool
    floor_uvloop: bool
    translate_repeats: int
    keep: bool
    profile: str | None = None  # py-spy: None, "python" or "native"
    floor_rds: str = "changed"  # what the floor's RDS pushes hold: "changed" or "full"
    protocol: str = "sotw"  # pilot's proxies: "sotw", "delta" or "vhds" (the floor's are SotW)
    connect_batch: int = 0  # the storm connects this many proxies at a time (0: all at once)
    pilot_args: tuple[str, ...] = ()  # more flags for ``pilot serve``
    guard: MemoryGuard | None = None


def translation_time(config_dir: Path, repeats: int) -> dict[str, Any]:
    """Full translation of the mesh for the proxies' view, in this process (ms)."""
    from bench.mesh import node_id
    from pilot.config.parse import parse_text
    from pilot.config.store import ConfigStore
    from pilot.translate.context import PushContext
    from pilot.translate.proxy import Proxy
    from pilot.translate.snapshot import build_snapshot

    store = ConfigStore()
    for path in sorted(config_dir.rglob("*.yaml")):
        store.apply(parse_text(path.read_text(encoding="utf-8"), str(path)))
    view = Proxy.from_node(node_id(0)).view()
    contexts, snapshots, totals = [], [], []
    sizes: dict[str, Any] = {}
    for _ in range(repeats):
        t0 = time.perf_counter()
        context = PushContext.build(store.snapshot())
        t1 = time.perf_counter()
        snapshot = build_snapshot(view, context)
        t2 = time.perf_counter()
        contexts.append((t1 - t0) * 1000)
        snapshots.append((t2 - t1) * 1000)
        totals.append((t2 - t0) * 1000)
        sizes = {
            typed.type_url.rsplit(".", 1)[-1]: {
                "resources": len(typed.resources),
                "bytes": sum(len(r.body) for r in typed.resources.values()),
            }
            for typed in snapshot.by_type.values()
        }
    return {
        "context_ms": statistics.median(contexts),
        "snapshot_ms": statistics.median(snapshots),
        "total_ms": statistics.median(totals),
        "total_min_ms": min(totals),
        "repeats": repeats,
        "resources": sizes,
    }


def _idle_cpu_rate(pid: int, seconds: float) -> float:
    before = procstat.cpu_seconds(pid)
    time.sleep(seconds)
    return (procstat.cpu_seconds(pid) - before) / seconds


def edit_round(workers: Workers, weight: int, trigger: Any, timeout: float) -> tuple[float, list[float], int]:
    """Expect ``weight``, run ``trigger()``, wait for every proxy's ACK.

    Returns (trigger time, ACK times, proxies that did not ACK in time)."""
    workers.broadcast(("expect", weight), 30)
    t0 = time.monotonic()
    trigger()
    replies = workers.broadcast(("wait", weight, timeout), timeout + 30)
    times = [t for reply in replies for t in reply["times"].values()]
    missing = sum(reply["expected"] - len(reply["times"]) for reply in replies)
    return t0, times, missing


def _profile_path(opts: Options, n: int, k: int, what: str) -> Path | None:
    if opts.profile is None:
        return None
    RESULTS.mkdir(parents=True, exist_ok=True)
    return RESULTS / f"profile-{n}x{k}-{what}.txt"


def _added_connections(
    workers: Workers, target: str, pid: int, n: int, opts: Options, protocol: str = "sotw"
) -> dict[str, Any]:
    added = opts.added if opts.added is not None else max(n // 4, 25)
    batch = max(1, min(25, added // 4))
    first_index = n + 1  # indices the storm does not use (each proxy has its own node id)
    started, full, errors = workers.connect(target, [n], 60, protocol, phase="added")
    # The first proxy of a view waits for the view's snapshot (a full translation) besides its sync.
    first_full_s = max(full.values(), default=float("nan")) - started
    time.sleep(1.0)
    one_kib = procstat.rss_kib(pid)
    connected = 0
    for first in range(first_index, first_index + added, batch):
        batch_indices = range(first, min(first + batch, first_index + added))
        _, full, more = workers.connect(target, batch_indices, 60, protocol, phase="added")
        connected += len(full)
        errors = more  # how streams ended since the last close, so far
    time.sleep(1.0)
    after_kib = procstat.rss_kib(pid)
    closed = workers.close_proxies()
    return {
        "count": added,
        "first_full_s": first_full_s,
        "batch": batch,
        "connected": connected,
        "errors": errors,
        "rss_one_proxy_kib": one_kib,
        "rss_after_kib": after_kib,
        "closed": closed["closed"],
        "retries": closed["retries"],
        "per_connection_kib": (after_kib - one_kib) / max(1, connected),
    }


def _storm(
    workers: Workers, target: str, n: int, opts: Options, protocol: str = "sotw"
) -> tuple[dict[str, Any], str]:
    """Proxies 0..n-1 connect: all at once, or ``opts.connect_batch`` at a time, each batch
    waiting for full config (each proxy's time counts from its batch's start).

    Returns the storm's summary and a line for the log."""
    size = opts.connect_batch or n
    times: list[float] = []
    errors: dict[str, int] = {}
    began = time.monotonic()
    for first in range(0, n, size):
        batch = range(first, min(first + size, n))
        started, full, errors = workers.connect(target, batch, timeout=120, protocol=protocol)
        times += [t - started for t in full.values()]
    wall = time.monotonic() - began
    storm = {**summary(times), "connected": len(times), "errors": errors, "batch": opts.connect_batch}
    storm["wall_s"] = wall
    slowest = max(times, default=float("nan"))
    how = f"in batches of {size}, {wall:.2f}s in all" if opts.connect_batch else f"in {slowest:.2f}s"
    return storm, f"{len(times)}/{n} proxies full config {how}"


def _retries(*closed: dict[str, Any]) -> dict[str, Any]:
    """Streams the proxies opened again, per phase: how many, and how the ended ones ended."""
    phases: dict[str, Any] = {}
    for reply in closed:
        for phase, ends in reply["retries"].items():
            merged = phases.setdefault(phase, {"count": 0, "errors": {}})
            for key, count in ends.items():
                merged["errors"][key] = merged["errors"].get(key, 0) + count
                merged["count"] += count
    return phases


def run_pilot(
    n: int, k: int, root: Path, config: Path, workers: Workers, opts: Options, log: Any
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    edited = BenchService(0)
    pilot = BenchPilot(
        config,
        root / "pilot.log",
        debounce_after=opts.debounce,
        uvloop=opts.pilot_uvloop,
        extra_args=("--log-level", "info", *opts.pilot_args),
    )
    wall_minus_mono = time.time() - time.monotonic()
    pilot.start(timeout=120)
    guard = opts.guard
    if guard is not None:
        guard.watch(pilot.pid)
    try:
        pid = pilot.pid
        assert pid is not None
        time.sleep(1.0)
        out["rss_idle_kib"] = procstat.rss_kib(pid)
        target = f"127.0.0.1:{pilot.xds_port}"

        # 0. memory per connection, before any storm: one proxy (the view's snapshot is built),
        # then more, a few at a time, so the figure is the steady cost of a connection and not
        # the transient buffers of a storm (which the allocator keeps, see rss_per_proxy_kib).
        # They all disconnect again; the last one leaving drops the view's snapshot, so the storm
        # below starts cold.
        out["added"] = _added_connections(workers, target, pid, n, opts, opts.protocol)
        log(f"  pilot: {out['added']['per_connection_kib']:.1f} KiB per added connection")
        time.sleep(0.5)

        # 1. connect storm
        with PySpy(pid, _profile_path(opts, n, k, "pilot-storm"), opts.profile == "native"):
            cpu0, fleet0 = procstat.cpu_seconds(pid), workers.cpu_seconds()
            out["storm"], line = _storm(workers, target, n, opts, opts.protocol)
            out["storm"]["cpu_s"] = procstat.cpu_seconds(pid) - cpu0
            out["storm"]["fleet_cpu_s"] = workers.cpu_seconds() - fleet0
        log(f"  pilot storm: {line}")
        time.sleep(1.0)
        out["rss_connected_kib"] = procstat.rss_kib(pid)
        out["idle_cpu_per_s"] = _idle_cpu_rate(pid, 1.0)
        status = _get_json(pilot.http_port, "/debug/push_status")
        out["views_after_storm"] = status["views"]

        # 2. edits
        rounds = []
        from_write: list[float] = []
        from_push: list[float] = []
        spy = PySpy(pid, _profile_path(opts, n, k, "pilot-edits"), opts.profile == "native")
        pushed_before = _pushed_bytes(pilot.http_port)
        spy.__enter__()
        for edit in range(opts.edits):
            weight = edit_weight(edit)
            before = _get_json(pilot.http_port, "/debug/push_status")["push_count"]
            cpu0 = procstat.cpu_seconds(pid)
            t0, times, missing = edit_round(
                workers, weight, lambda e=edit: edit_virtual_service(config, edited, e), timeout=60
            )
            time.sleep(0.05)  # the last ACKs are read by pilot after the proxies wrote them
            cpu1 = procstat.cpu_seconds(pid)
            status = _get_json(pilot.http_port, "/debug/push_status")
            last = status["last_push"] or {"finished_at": float("nan"), "duration": 0.0, "views": 0}
            push_start = last["finished_at"] - last["duration"] - wall_minus_mono
            pushes = status["push_count"] - before
            write_to_ack = [t - t0 for t in times]
            push_to_ack = [t - push_start for t in times]
            from_write += write_to_ack
            from_push += push_to_ack
            rounds.append(
                {
                    "edit": edit,
                    "weight": weight,
                    "missing": missing,
                    "pushes": pushes,
                    "views": last["views"],
                    "translate_s": last["duration"],
                    "debounce_s": push_start - t0,
                    "last_ack_from_write_s": max(write_to_ack, default=float("nan")),
                    "push_s": max(push_to_ack, default=float("nan")),
                    "cpu_s": cpu1 - cpu0 - 0.05 * out["idle_cpu_per_s"],
                    "rss_kib": procstat.rss_kib(pid),
                }
            )
            if edit == 0:
                time.sleep(0.5)
                out["rss_after_first_edit_kib"] = procstat.rss_kib(pid)
            if edit in (0, opts.edits - 1) or (edit + 1) % 25 == 0:
                log(
                    f"  pilot edit {edit + 1}/{opts.edits}: push {rounds[-1]['push_s']:.3f}s, "
                    f"cpu {rounds[-1]['cpu_s']:.3f}s, missing {missing}"
                )
        spy.__exit__()
        time.sleep(0.5)
        pushed = _pushed_bytes(pilot.http_port) - pushed_before
        out["rss_after_last_edit_kib"] = procstat.rss_kib(pid)
        out["edits"] = {
            "count": opts.edits,
            "from_write": summary(from_write),
            "from_push_start": summary(from_push),
            "debounce": summary([r["debounce_s"] for r in rounds]),
            "translate": summary([r["translate_s"] for r in rounds]),
            "push": summary([r["push_s"] for r in rounds]),
            "cpu_per_push": summary([r["cpu_s"] for r in rounds]),
            "missing": sum(r["missing"] for r in rounds),
            "extra_pushes": sum(r["pushes"] - 1 for r in rounds),
            "views_per_push": sorted({r["views"] for r in rounds}),
            "bytes_per_proxy_per_edit": pushed / max(1, opts.edits * out["storm"]["connected"]),
            "rounds": rounds,
        }

        out["closed"] = workers.close_proxies()
        out["retries"] = _retries(out["added"], out["closed"])
        out["cpu_total_s"] = procstat.cpu_seconds(pid)
    finally:
        pilot.stop()
        if guard is not None:
            guard.unwatch(pid)
    return out


def run_floor(n: int, config: Path, root: Path, workers: Workers, opts: Options, log: Any) -> dict[str, Any]:
    import yaml

    from bench.mesh import virtual_service_path
    from pilot.localmesh.config_files import write_atomically

    edited = BenchService(0)
    initial = yaml.safe_dump(virtual_service_doc(edited), sort_keys=False)
    write_atomically(virtual_service_path(config, edited), initial)
    weights = [edit_weight(e) for e in range(opts.floor_edits)]
    floor = FloorProcess(config, weights, root / "floor.log", opts.floor_uvloop, opts.floor_rds)
    if opts.guard is not None:
        opts.guard.watch(floor.proc.pid)
    out: dict[str, Any] = {}
    try:
        pid = floor.pid
        time.sleep(0.5)
        out["rss_idle_kib"] = procstat.rss_kib(pid)
        target = f"127.0.0.1:{floor.port}"
        out["added"] = _added_connections(workers, target, pid, n, opts)
        time.sleep(0.5)
        cpu0, fleet0 = procstat.cpu_seconds(pid), workers.cpu_seconds()
        out["storm"], line = _storm(workers, target, n, opts)
        out["storm"]["cpu_s"] = procstat.cpu_seconds(pid) - cpu0
        out["storm"]["fleet_cpu_s"] = workers.cpu_seconds() - fleet0
        log(f"  floor storm: {line}")
        time.sleep(1.0)
        out["rss_connected_kib"] = procstat.rss_kib(pid)
        idle = _idle_cpu_rate(pid, 1.0)
        rounds = []
        spy = PySpy(pid, _profile_path(opts, n, 0, "floor-edits"), opts.profile == "native")
        spy.__enter__()
        for weight in weights:
            cpu0 = procstat.cpu_seconds(pid)
            t0, times, missing = edit_round(workers, weight, lambda w=weight: floor.push(w), timeout=60)
            time.sleep(0.05)
            cpu1 = procstat.cpu_seconds(pid)
            rounds.append(
                {
                    "weight": weight,
                    "missing": missing,
                    "push_s": max((t - t0 for t in times), default=float("nan")),
                    "p50_s": percentile([t - t0 for t in times], 50) if times else float("nan"),
                    "cpu_s": cpu1 - cpu0 - 0.05 * idle,
                    "rss_kib": procstat.rss_kib(pid),
                }
            )
        spy.__exit__()
        out["edits"] = {
            "count": len(weights),
            "push": summary([r["push_s"] for r in rounds]),
            "cpu_per_push": summary([r["cpu_s"] for r in rounds]),
            "missing": sum(r["missing"] for r in rounds),
            "rounds": rounds,
        }
        log(f"  floor pushes: median {out['edits']['push']['p50']:.3f}s")
        out["closed"] = workers.close_proxies()
        out["retries"] = _retries(out["added"], out["closed"])
    finally:
        floor.stop()
        if opts.guard is not None:
            opts.guard.unwatch(floor.proc.pid)
    return out


def run_case(n: int, k: int, workers: Workers, opts: Options, log: Any) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"pilot-bench-{n}x{k}-") as tmp:
        root = Path(tmp)
        config = root / "config"
        write_mesh(config, k)
        case: dict[str, Any] = {
            "proxies": n,
            "services": k,
            "protocol": opts.protocol,
            "load_before": procstat.load_average(),
        }
        started = time.monotonic()
        case["translation"] = translation_time(config, opts.translate_repeats)
        log(f"  translation: {case['translation']['total_ms']:.1f} ms")
        case["pilot"] = run_pilot(n, k, root, config, workers, opts, log)
        case["floor"] = run_floor(n, config, root, workers, opts, log)
        case["wall_s"] = time.monotonic() - started
        case["load_after"] = procstat.load_average()
        if opts.keep:
            kept = RESULTS / f"logs-{n}x{k}"
            kept.mkdir(parents=True, exist_ok=True)
            for name in ("pilot.log", "floor.log"):
                if (root / name).exists():
                    (kept / name).write_bytes((root / name).read_bytes())
        return derive(case)


def _slope(rounds: Sequence[dict[str, Any]]) -> float | None:
    """RSS growth per push (KiB): least-squares slope of the RSS read after each push."""
    points = [(float(i), float(r["rss_kib"])) for i, r in enumerate(rounds) if "rss_kib" in r]
    if len(points) < 3:
        return None
    mean_x = statistics.fmean(x for x, _ in points)
    mean_y = statistics.fmean(y for _, y in points)
    var = sum((x - mean_x) ** 2 for x, _ in points)
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / var


def derive(case: dict[str, Any]) -> dict[str, Any]:
    """The headline figures of a case, next to the raw ones."""
    pilot, floor = case["pilot"], case["floor"]
    n = case["proxies"]
    pe, fe = pilot["edits"], floor["edits"]
    shared = pilot["rss_idle_kib"]

    def storm_s(storm: dict[str, Any]) -> float | str | None:
        return f"batches of {storm['batch']}" if storm.get("batch") else storm.get("max")

    case["headline"] = {
        "storm_s": storm_s(pilot["storm"]),
        "storm_floor_s": storm_s(floor["storm"]),
        "storm_cpu_s": pilot["storm"].get("cpu_s"),
        "storm_cpu_floor_s": floor["storm"].get("cpu_s"),
        "storm_fleet_cpu_s": pilot["storm"].get("fleet_cpu_s"),
        "storm_fleet_cpu_floor_s": floor["storm"].get("fleet_cpu_s"),
        "storm_retries": pilot["retries"].get("storm", {}).get("count", 0),
        "storm_retries_floor": floor["retries"].get("storm", {}).get("count", 0),
        "retries": sum(phase["count"] for phase in pilot["retries"].values()),
        "retries_floor": sum(phase["count"] for phase in floor["retries"].values()),
        "convergence_from_write_p50_s": pe["from_write"].get("p50"),
        "convergence_from_write_p99_s": pe["from_write"].get("p99"),
        "convergence_from_write_max_s": pe["from_write"].get("max"),
        "debounce_median_s": pe["debounce"].get("p50"),
        "convergence_after_debounce_p99_s": pe["from_push_start"].get("p99"),
        "push_median_s": pe["push"].get("p50"),
        "push_floor_median_s": fe["push"].get("p50"),
        "push_ratio": pe["push"]["p50"] / fe["push"]["p50"] if fe["push"].get("p50") else None,
        "cpu_per_push_s": pe["cpu_per_push"].get("p50"),
        "cpu_per_push_floor_s": fe["cpu_per_push"].get("p50"),
        "rss_idle_mib": shared / 1024,
        "rss_connected_mib": pilot["rss_connected_kib"] / 1024,
        "rss_per_proxy_kib": (pilot["rss_connected_kib"] - shared) / n,
        "rss_snapshot_mib": (pilot["added"]["rss_one_proxy_kib"] - shared) / 1024,
        "first_proxy_s": pilot["added"].get("first_full_s"),
        "first_proxy_floor_s": floor["added"].get("first_full_s"),
        "rss_per_added_proxy_kib": pilot["added"]["per_connection_kib"],
        "rss_per_added_proxy_floor_kib": floor["added"]["per_connection_kib"],
        "rss_per_proxy_floor_kib": (floor["rss_connected_kib"] - floor["rss_idle_kib"]) / n,
        "translation_ms": case["translation"]["total_ms"],
        "memory_growth_pct": 100 * (pilot["rss_after_last_edit_kib"] / pilot["rss_after_first_edit_kib"] - 1),
        "rss_growth_per_push_kib": _slope(pe["rounds"]),
        "rss_growth_per_push_floor_kib": _slope(fe["rounds"]),
        "bytes_per_proxy_per_edit": pe.get("bytes_per_proxy_per_edit"),
        "edits": pe["count"],
    }
    return case


# -- output ---------------------------------------------------------------------------------------

COLUMNS = (
    ("N", "proxies", "{:d}"),
    ("K", "services", "{:d}"),
)
ROWS = (
    ("connect storm, all ACKed (s)", "storm_s", "{:.2f}"),
    ("  floor (s)", "storm_floor_s", "{:.2f}"),
    ("pilot CPU during the storm (s)", "storm_cpu_s", "{:.2f}"),
    ("  floor (s)", "storm_cpu_floor_s", "{:.2f}"),
    ("simulated fleet's CPU during the storm (s)", "storm_fleet_cpu_s", "{:.2f}"),
    ("  against the floor (s)", "storm_fleet_cpu_floor_s", "{:.2f}"),
    ("streams retried in the storm", "storm_retries", "{:d}"),
    ("  floor", "storm_retries_floor", "{:d}"),
    ("streams retried, all phases", "retries", "{:d}"),
    ("  floor", "retries_floor", "{:d}"),
    ("first proxy of a new view, full config (s)", "first_proxy_s", "{:.3f}"),
    ("  floor (s)", "first_proxy_floor_s", "{:.3f}"),
    ("convergence from write p50 (s)", "convergence_from_write_p50_s", "{:.3f}"),
    ("convergence from write p99 (s)", "convergence_from_write_p99_s", "{:.3f}"),
    ("convergence from write max (s)", "convergence_from_write_max_s", "{:.3f}"),
    ("  of which detect+debounce, median (s)", "debounce_median_s", "{:.3f}"),
    ("convergence after debounce p99 (s)", "convergence_after_debounce_p99_s", "{:.3f}"),
    ("push to all, median (s)", "push_median_s", "{:.3f}"),
    ("  floor push to all, median (s)", "push_floor_median_s", "{:.3f}"),
    ("  push / floor", "push_ratio", "{:.2f}x"),
    ("pilot CPU per push (s)", "cpu_per_push_s", "{:.3f}"),
    ("  floor CPU per push (s)", "cpu_per_push_floor_s", "{:.3f}"),
    ("RSS idle, config loaded (MiB)", "rss_idle_mib", "{:.1f}"),
    ("RSS with N connected (MiB)", "rss_connected_mib", "{:.1f}"),
    ("RSS of the first proxy: snapshot etc. (MiB)", "rss_snapshot_mib", "{:.1f}"),
    ("RSS per added proxy, steady (KiB)", "rss_per_added_proxy_kib", "{:.1f}"),
    ("  floor (KiB)", "rss_per_added_proxy_floor_kib", "{:.1f}"),
    ("RSS per proxy after storm, incl. all (KiB)", "rss_per_proxy_kib", "{:.1f}"),
    ("  floor (KiB)", "rss_per_proxy_floor_kib", "{:.1f}"),
    ("full translation, in-process (ms)", "translation_ms", "{:.1f}"),
    ("RSS after last edit vs first (%)", "memory_growth_pct", "{:+.1f}"),
    ("  RSS growth per push (KiB)", "rss_growth_per_push_kib", "{:+.1f}"),
    ("  floor RSS growth per push (KiB)", "rss_growth_per_push_floor_kib", "{:+.1f}"),
    ("bytes per proxy per edit", "bytes_per_proxy_per_edit", "{:,.0f}"),
    ("edits", "edits", "{:d}"),
)


def table(cases: Sequence[dict[str, Any]]) -> str:
    width = max(len(label) for label, _, _ in ROWS) + 2
    header = "".ljust(width) + "".join(f"N={c['proxies']},K={c['services']}".rjust(16) for c in cases)
    lines = [header, "-" * len(header)]
    for label, key, fmt in ROWS:
        cells = []
        for case in cases:
            value = f"aborted: {case['aborted']}" if "aborted" in case else case["headline"].get(key)
            text = "-" if value is None else value if isinstance(value, str) else fmt.format(value)
            cells.append(text.rjust(16))
        lines.append(label.ljust(width) + "".join(cells))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--proxies", default="10,100,1000", help="comma-separated N values")
    parser.add_argument("--services", default="100,1000", help="comma-separated K values")
    parser.add_argument(
        "--all",
        action="store_true",
        help=f"also run cases with N*K > {DEFAULT_MAX_PRODUCT} (skipped by default)",
    )
    parser.add_argument("--workers", type=int, default=4, help="simulated-proxy processes")
    parser.add_argument("--edits", type=int, default=100, help="consecutive VirtualService edits per case")
    parser.add_argument("--floor-edits", type=int, default=20, help="pushes by the floor server per case")
    parser.add_argument(
        "--added", type=int, default=None, help="proxies added at the end (default N/4, at least 25)"
    )
    parser.add_argument("--debounce", type=float, default=0.1, help="pilot --debounce-after (s)")
    parser.add_argument("--pilot-loop", choices=("asyncio", "uvloop"), default="asyncio")
    parser.add_argument("--floor-loop", choices=("asyncio", "uvloop", "same"), default="same")
    parser.add_argument(
        "--floor-rds",
        choices=("changed", "full"),
        default="changed",
        help="the floor's RDS pushes hold the changed route configurations (what pilot sends) or all of them",
    )
    parser.add_argument(
        "--protocol",
        choices=("sotw", "delta", "vhds"),
        default="sotw",
        help="how pilot's proxies speak ADS (vhds: delta, virtual hosts over VHDS); the floor's: sotw",
    )
    parser.add_argument(
        "--connect-batch",
        type=int,
        default=0,
        metavar="B",
        help="the storm (pilot's and the floor's) connects B proxies at a time, each batch waiting "
        "for full config (0: all N at once)",
    )
    parser.add_argument(
        "--max-connection-age",
        type=float,
        default=None,
        metavar="SECONDS",
        help="pilot serve --max-connection-age (default: pilot's, 1800; 0: no maximum age)",
    )
    parser.add_argument(
        "--mem-floor",
        type=float,
        default=3.0,
        metavar="GIB",
        help="stop a case when the machine's MemAvailable falls under this (default 3 GiB)",
    )
    parser.add_argument("--translate-repeats", type=int, default=5)
    parser.add_argument(
        "--profile",
        choices=("python", "native"),
        default=None,
        help="py-spy record pilot (storm, edits) and the floor (pushes) into bench/results/",
    )
    parser.add_argument("--keep-logs", action="store_true", help="copy pilot/floor logs to bench/results/")
    parser.add_argument(
        "--out", type=Path, default=None, help="JSON path (default bench/results/<time>.json)"
    )
    args = parser.parse_args(argv)

    proxies = [int(x) for x in args.proxies.split(",") if x]
    services = [int(x) for x in args.services.split(",") if x]
    cases = [(n, k) for k in services for n in proxies]
    skipped = [(n, k) for n, k in cases if n * k > DEFAULT_MAX_PRODUCT and not args.all]
    cases = [case for case in cases if case not in skipped]
    floor_loop = args.pilot_loop if args.floor_loop == "same" else args.floor_loop
    age = args.max_connection_age
    opts = Options(
        workers=args.workers,
        edits=args.edits,
        floor_edits=args.floor_edits,
        added=args.added,
        debounce=args.debounce,
        pilot_uvloop=args.pilot_loop == "uvloop",
        floor_uvloop=floor_loop == "uvloop",
        translate_repeats=args.translate_repeats,
        keep=args.keep_logs,
        profile=args.profile,
        floor_rds=args.floor_rds,
        protocol=args.protocol,
        connect_batch=args.connect_batch,
        pilot_args=() if age is None else ("--max-connection-age", str(age)),
        guard=MemoryGuard(floor_kib=int(args.mem_floor * GIB_KIB)),
    )
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    machine = procstat.machine()
    log(f"machine: {machine}; load {procstat.load_average()}")
    if skipped:
        log(f"skipping {skipped} (N*K > {DEFAULT_MAX_PRODUCT}; pass --all to run them)")
    started = time.time()
    results: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "machine": machine,
        "options": {**vars(args), "out": str(args.out) if args.out else None},
        "loop": {"pilot": args.pilot_loop, "floor": floor_loop},
        "load_before": procstat.load_average(),
        "cases": [],
    }
    guard = opts.guard
    assert guard is not None
    workers = Workers(args.workers, guard)
    try:
        for n, k in cases:
            log(f"case N={n} K={k}")
            t0 = time.monotonic()
            guard.arm(workers.pids())
            try:
                results["cases"].append(run_case(n, k, workers, opts, log))
            except Exception as exc:
                if guard.tripped_at_kib is None:
                    raise
                # The guard stopped the case's processes: record it, start the workers afresh.
                log(f"  aborted: memory ({type(exc).__name__}: {exc})")
                results["cases"].append(
                    {
                        "proxies": n,
                        "services": k,
                        "protocol": opts.protocol,
                        "aborted": "memory",
                        "mem_available_kib": guard.tripped_at_kib,
                        "mem_floor_kib": guard.floor_kib,
                        "error": f"{type(exc).__name__}: {exc}",
                    }
                )
                guard.disarm()
                workers.stop()
                workers = Workers(args.workers, guard)
            guard.disarm()
            log(f"  done in {time.monotonic() - t0:.0f}s")
    finally:
        workers.stop()
        guard.close()
    results["load_after"] = procstat.load_average()
    results["wall_s"] = time.time() - started
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = args.out or RESULTS / time.strftime("%Y%m%d-%H%M%S.json", time.localtime(started))
    out.write_text(json.dumps(results, indent=1, sort_keys=False))
    print(table(results["cases"]))
    print(
        f"\nload average before/after: {results['load_before']} / {results['load_after']}; "
        f"pilot loop: {args.pilot_loop}; {machine['nproc']} x {machine['cpu_model']}"
    )
    print(f"results: {out}")
    return 0
