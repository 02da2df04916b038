"""The floor in one process against two: is a second stream-serving process worth it on 2 cores?

    .venv/bin/python -m bench.two_processes                      # N=1000, K=100 and 1000, 3 rounds
    .venv/bin/python -m bench.two_processes --proxies 200 --services 100 --rounds 1 --pushes 3

The floor (bench/floor_server.py) serves N simulated proxies (bench/proxies.py, ``--workers``
processes) in each *layout*; every round runs each layout once, in an order that rotates from
round to round so that a change of the machine's load falls on all of them:

- ``1``: one server process, nothing pinned (the floor of ``python -m bench``);
- ``2``: two server processes on one SO_REUSEPORT port, fed the responses one process encoded;
- ``2-pinned``: the same, server process i pinned to CPU i;
- ``1-split``: one server process pinned to CPU 0 and the simulated proxies to CPU 1, so the
  server has a core that no client uses;
- ``pilot``: ``pilot serve`` itself (not a floor) in the same accounting, to see which of its
  threads a push or a storm waits for. Its pushes are VirtualService edits, so their wall time
  runs from the file write and includes detection and the 0.1 s debounce.

Per layout: the connect storm (all N ACKed CDS, EDS, LDS and RDS) and ``--pushes`` pushes of a
new RDS version to every stream (trigger → last ACK), each with its wall time, the CPU of every
server process (all threads, and the main thread alone: it runs the event loop and holds the GIL
for the Python part), and the CPU of the simulated proxies, which share the 2 cores.

The *server bound* is the least a phase could take if the proxies ran on other machines and the
server had both cores: no less than the CPU of its busiest thread (a grpc.aio process runs Python
on its main thread and grpc core's I/O on grpc's own threads), and no less than its total CPU over
the 2 cores. It is a bound, not a measurement: it leaves out waits.

Each K starts with one storm of layout ``1`` that is not counted: the simulated proxies' first
storm also grows their heaps (page faults), which would fall on whichever layout came first.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bench import procstat
from bench.measured_servers import BenchPilot, FloorProcess
from bench.mesh import (
    BenchService,
    edit_weight,
    virtual_service_doc,
    virtual_service_path,
    write_mesh,
)
from bench.paths import RESULTS
from bench.phases import edit_round
from bench.workers import Workers
from pilot.localmesh.config_files import write_atomically

LAYOUTS: dict[str, tuple[int, tuple[int, ...], set[int] | None]] = {
    # name: (server processes, CPU of each server process, CPUs of the simulated proxies)
    "1": (1, (), None),
    "2": (2, (), None),
    "2-pinned": (2, (0, 1), None),
    "1-split": (1, (0,), {1}),
    "pilot": (1, (), None),
}


@dataclass(frozen=True)
class Reading:
    at: float
    server: tuple[float, ...]  # CPU seconds of each server process, all threads
    main: tuple[float, ...]  # CPU seconds of each server process's main thread
    clients: float  # CPU seconds of every simulated-proxy process
    threads: dict[int, tuple[str, float]]  # every thread of every server process: name, CPU seconds


class Meter:
    def __init__(self, servers: Sequence[int], clients: Sequence[int]) -> None:
        self.servers, self.clients = list(servers), list(clients)

    def read(self) -> Reading:
        return Reading(
            time.monotonic(),
            tuple(procstat.cpu_seconds(pid) for pid in self.servers),
            tuple(procstat.main_thread_cpu_seconds(pid) for pid in self.servers),
            sum(procstat.cpu_seconds(pid) for pid in self.clients),
            {tid: t for pid in self.servers for tid, t in procstat.thread_cpu_seconds(pid).items()},
        )


def spent(before: Reading, after: Reading, wall: float) -> dict[str, Any]:
    """What a phase of ``wall`` seconds cost, between two readings."""
    server = [a - b for a, b in zip(after.server, before.server, strict=True)]
    main = [a - b for a, b in zip(after.main, before.main, strict=True)]
    threads = sorted(
        ((name, cpu - before.threads.get(tid, (name, 0.0))[1]) for tid, (name, cpu) in after.threads.items()),
        key=lambda thread: -thread[1],
    )
    return {
        "wall_s": wall,
        "server_cpu_s": sum(server),
        "server_cpu_per_process_s": server,
        "main_thread_cpu_s": main,
        "busiest_threads": threads[:4],  # (name, CPU seconds): is one thread the limit?
        "clients_cpu_s": after.clients - before.clients,
        "server_bound_s": max(threads[0][1] if threads else 0.0, sum(server) / 2),
    }


def _pin_clients(workers: Workers, cpus: set[int]) -> None:
    for pid in workers.pids():
        procstat.set_affinity(pid, cpus)


def run_layout(
    layout: str, n: int, config: Path, root: Path, workers: Workers, args: argparse.Namespace, log: Any
) -> dict[str, Any]:
    processes, pin, client_cpus = LAYOUTS[layout]
    everything = os.sched_getaffinity(0)
    weights = [edit_weight(e) for e in range(args.pushes)]
    if client_cpus is not None:
        _pin_clients(workers, client_cpus)
    server: FloorProcess | PilotServer
    if layout == "pilot":
        server = PilotServer(config, root / "pilot.log")
    else:
        server = FloorProcess(config, weights, root / f"floor-{layout}.log", False, "changed", processes, pin)
    out: dict[str, Any] = {"layout": layout, "load_before": procstat.load_average()}
    try:
        meter = Meter(server.pids, workers.pids())
        time.sleep(0.5)
        target = f"127.0.0.1:{server.port}"
        before = meter.read()
        started, full, errors = workers.connect(target, range(n), timeout=args.timeout)
        after = meter.read()
        wall = max((t - started for t in full.values()), default=float("nan"))
        out["storm"] = {**spent(before, after, wall), "connected": len(full), "errors": errors}
        out["streams_per_process"] = server.streams()
        log(
            f"  {layout}: storm {wall:.2f}s ({len(full)}/{n}, streams {out['streams_per_process']}), "
            f"server CPU {out['storm']['server_cpu_s']:.2f}s, clients {out['storm']['clients_cpu_s']:.2f}s"
        )
        time.sleep(0.5)
        pushes = []
        for weight in weights:
            before = meter.read()
            t0, times, missing = edit_round(workers, weight, lambda w=weight: server.push(w), args.timeout)
            time.sleep(0.05)  # the last ACKs are read after the proxies wrote them
            after = meter.read()
            wall = max((t - t0 for t in times), default=float("nan"))
            pushes.append({**spent(before, after, wall), "missing": missing})
        out["pushes"] = pushes
        out["push"] = {key: statistics.median(p[key] for p in pushes) for key in _MEDIANS}
        log(
            f"  {layout}: push median {out['push']['wall_s']:.3f}s, server CPU "
            f"{out['push']['server_cpu_s']:.3f}s, clients {out['push']['clients_cpu_s']:.3f}s, "
            f"missing {sum(p['missing'] for p in pushes)}"
        )
        out["closed"] = workers.close_proxies()
    finally:
        server.stop()
        if client_cpus is not None:
            _pin_clients(workers, everything)
    out["load_after"] = procstat.load_average()
    return out


class PilotServer:
    """``pilot serve`` on the mesh, driven like a floor: a push is an edit of the VirtualService."""

    def __init__(self, config: Path, log_path: Path) -> None:
        self.config = config
        self.pilot = BenchPilot(config, log_path, debounce_after=0.1)
        self.pilot.start(timeout=180)
        assert self.pilot.pid is not None
        self.pids = [self.pilot.pid]
        self.port = self.pilot.xds_port

    def push(self, weight: int) -> None:
        self._write(weight)

    def streams(self) -> list[int]:
        return [-1]  # one process holds them all; pilot counts them in /debug/syncz

    def stop(self) -> None:
        self.pilot.stop()
        self._write(90)  # the floors read the mesh as it is written: put the initial weight back

    def _write(self, v1_weight: int) -> None:
        edited = BenchService(0)
        text = yaml.safe_dump(virtual_service_doc(edited, v1_weight), sort_keys=False)
        write_atomically(virtual_service_path(self.config, edited), text)


_MEDIANS = ("wall_s", "server_cpu_s", "clients_cpu_s", "server_bound_s")


def _cell(values: Sequence[float], fmt: str) -> str:
    """The median of the rounds, with their range when there are several."""
    if not values:
        return "-"
    middle = fmt.format(statistics.median(values))
    if len(values) == 1:
        return middle
    return f"{middle} ({fmt.format(min(values))}–{fmt.format(max(values))})"


def table(cases: Sequence[dict[str, Any]]) -> str:
    """A markdown table: per K and layout, the median over rounds (and the range)."""
    lines = [
        "| K | layout | storm (s) | server CPU | busiest thread | proxies' CPU | server bound "
        "| push to all (s) | server CPU | proxies' CPU | server bound | streams per process |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for case in cases:
        for layout in case["layouts"]:
            runs = [r for r in case["runs"] if r["layout"] == layout]
            storm = [r["storm"] for r in runs]
            push = [r["push"] for r in runs]
            cells = [
                _cell([s["wall_s"] for s in storm], "{:.2f}"),
                _cell([s["server_cpu_s"] for s in storm], "{:.2f}"),
                _cell([s["busiest_threads"][0][1] for s in storm], "{:.2f}"),
                _cell([s["clients_cpu_s"] for s in storm], "{:.2f}"),
                _cell([s["server_bound_s"] for s in storm], "{:.2f}"),
                _cell([p["wall_s"] for p in push], "{:.3f}"),
                _cell([p["server_cpu_s"] for p in push], "{:.3f}"),
                _cell([p["clients_cpu_s"] for p in push], "{:.3f}"),
                _cell([p["server_bound_s"] for p in push], "{:.3f}"),
                " / ".join("+".join(str(s) for s in r["streams_per_process"]) for r in runs),
            ]
            lines.append(f"| {case['services']} | {layout} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.two_processes", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--proxies", type=int, default=1000, help="N")
    parser.add_argument("--services", default="100,1000", help="comma-separated K values")
    parser.add_argument("--layouts", default=",".join(LAYOUTS), help=f"of {', '.join(LAYOUTS)}")
    parser.add_argument("--rounds", type=int, default=3, help="runs of every layout per K")
    parser.add_argument("--pushes", type=int, default=10, help="pushes to all per layout and round")
    parser.add_argument("--workers", type=int, default=4, help="simulated-proxy processes")
    parser.add_argument("--timeout", type=float, default=180.0, help="per storm or push (s)")
    parser.add_argument("--out", type=Path, default=None, help="JSON path")
    args = parser.parse_args(argv)
    layouts = [name for name in args.layouts.split(",") if name]
    unknown = [name for name in layouts if name not in LAYOUTS]
    if unknown:
        parser.error(f"unknown layouts {unknown}")

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    machine = procstat.machine()
    log(f"machine: {machine}; load {procstat.load_average()}")
    started = time.time()
    results: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "machine": machine,
        "options": {**vars(args), "out": str(args.out) if args.out else None},
        "load_before": procstat.load_average(),
        "cases": [],
    }
    workers = Workers(args.workers)
    try:
        for k in [int(x) for x in args.services.split(",") if x]:
            with tempfile.TemporaryDirectory(prefix=f"pilot-two-{args.proxies}x{k}-") as tmp:
                root = Path(tmp)
                write_mesh(root / "config", k)
                case: dict[str, Any] = {
                    "proxies": args.proxies,
                    "services": k,
                    "layouts": layouts,
                    "runs": [],
                }
                log(f"K={k} warm-up (not counted)")
                run_layout("1", args.proxies, root / "config", root, workers, args, log)
                for round_ in range(args.rounds):
                    order = layouts[round_ % len(layouts) :] + layouts[: round_ % len(layouts)]
                    log(f"K={k} round {round_ + 1}/{args.rounds}: {order}; load {procstat.load_average()}")
                    for layout in order:
                        run = run_layout(layout, args.proxies, root / "config", root, workers, args, log)
                        case["runs"].append({**run, "round": round_})
                results["cases"].append(case)
    finally:
        workers.stop()
    results["load_after"] = procstat.load_average()
    results["wall_s"] = time.time() - started
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = args.out or RESULTS / time.strftime("two-processes-%Y%m%d-%H%M%S.json", time.localtime(started))
    out.write_text(json.dumps(results, indent=1))
    print(table(results["cases"]))
    print(f"\nload average before/after: {results['load_before']} / {results['load_after']}")
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
