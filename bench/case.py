"""One case (N proxies, K services): pilot's run, then the floor's, on one mesh (see bench/run.py)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from bench import procstat
from bench.measured_servers import BenchPilot, FloorProcess, debug_json, pushed_bytes
from bench.mesh import BenchService, edit_virtual_service, edit_weight, virtual_service_doc, write_mesh
from bench.paths import RESULTS
from bench.phases import (
    Options,
    connect_added,
    connect_storm,
    edit_round,
    idle_cpu_rate,
    profile_path,
    retries_by_phase,
    translation_time,
)
from bench.profiling import PySpy
from bench.results_table import derive
from bench.samples import percentile, summary
from bench.workers import Workers


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
        out["added"] = connect_added(workers, target, pid, n, opts, opts.protocol)
        log(f"  pilot: {out['added']['per_connection_kib']:.1f} KiB per added connection")
        time.sleep(0.5)

        # 1. connect storm
        with PySpy(pid, profile_path(opts, n, k, "pilot-storm"), opts.profile == "native"):
            cpu0, fleet0 = procstat.cpu_seconds(pid), workers.cpu_seconds()
            out["storm"], line = connect_storm(workers, target, n, opts, opts.protocol)
            out["storm"]["cpu_s"] = procstat.cpu_seconds(pid) - cpu0
            out["storm"]["fleet_cpu_s"] = workers.cpu_seconds() - fleet0
        log(f"  pilot storm: {line}")
        time.sleep(1.0)
        out["rss_connected_kib"] = procstat.rss_kib(pid)
        out["idle_cpu_per_s"] = idle_cpu_rate(pid, 1.0)
        status = debug_json(pilot.http_port, "/debug/push_status")
        out["views_after_storm"] = status["views"]

        # 2. edits
        rounds = []
        from_write: list[float] = []
        from_push: list[float] = []
        spy = PySpy(pid, profile_path(opts, n, k, "pilot-edits"), opts.profile == "native")
        pushed_before = pushed_bytes(pilot.http_port)
        spy.__enter__()
        for edit in range(opts.edits):
            weight = edit_weight(edit)
            before = debug_json(pilot.http_port, "/debug/push_status")["push_count"]
            cpu0 = procstat.cpu_seconds(pid)
            t0, times, missing = edit_round(
                workers, weight, lambda e=edit: edit_virtual_service(config, edited, e), timeout=60
            )
            time.sleep(0.05)  # the last ACKs are read by pilot after the proxies wrote them
            cpu1 = procstat.cpu_seconds(pid)
            status = debug_json(pilot.http_port, "/debug/push_status")
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
        pushed = pushed_bytes(pilot.http_port) - pushed_before
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
        out["retries"] = retries_by_phase(out["added"], out["closed"])
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
        out["added"] = connect_added(workers, target, pid, n, opts)
        time.sleep(0.5)
        cpu0, fleet0 = procstat.cpu_seconds(pid), workers.cpu_seconds()
        out["storm"], line = connect_storm(workers, target, n, opts)
        out["storm"]["cpu_s"] = procstat.cpu_seconds(pid) - cpu0
        out["storm"]["fleet_cpu_s"] = workers.cpu_seconds() - fleet0
        log(f"  floor storm: {line}")
        time.sleep(1.0)
        out["rss_connected_kib"] = procstat.rss_kib(pid)
        idle = idle_cpu_rate(pid, 1.0)
        rounds = []
        spy = PySpy(pid, profile_path(opts, n, 0, "floor-edits"), opts.profile == "native")
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
        out["retries"] = retries_by_phase(out["added"], out["closed"])
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
