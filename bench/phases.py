"""The phases of a case that pilot's run and the floor's share: the in-process translation, the
added connections, the connect storm, one edit round; and the options they run with."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import procstat
from bench.memory_guard import MemoryGuard
from bench.paths import RESULTS
from bench.samples import summary
from bench.workers import Workers


@dataclass
class Options:
    """What every case of a run runs with (from ``python -m bench``'s command line)."""

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


def idle_cpu_rate(pid: int, seconds: float) -> float:
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


def profile_path(opts: Options, n: int, k: int, what: str) -> Path | None:
    if opts.profile is None:
        return None
    RESULTS.mkdir(parents=True, exist_ok=True)
    return RESULTS / f"profile-{n}x{k}-{what}.txt"


def connect_added(
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


def connect_storm(
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


def retries_by_phase(*closed: dict[str, Any]) -> dict[str, Any]:
    """Streams the proxies opened again, per phase: how many, and how the ended ones ended."""
    phases: dict[str, Any] = {}
    for reply in closed:
        for phase, ends in reply["retries"].items():
            merged = phases.setdefault(phase, {"count": 0, "errors": {}})
            for key, count in ends.items():
                merged["errors"][key] = merged["errors"].get(key, 0) + count
                merged["count"] += count
    return phases
