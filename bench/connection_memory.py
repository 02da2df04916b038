"""RSS per connected proxy behind real grpc, and which of the server's mappings hold it.

    .venv/bin/python -m bench.connection_memory --services 1000 --protocol sotw --runs 3
    .venv/bin/python -m bench.connection_memory --server floor --services 1000 --trim
    .venv/bin/python -m bench.connection_memory --env MALLOC_MMAP_THRESHOLD_=65536 --edits 6

Phase 0 of ``python -m bench`` alone, on a fresh server per run: ``pilot serve`` (or the floor,
``bench/floor_server.py``, which speaks state of the world only) on the bench mesh; one proxy
connects (the view's snapshot is built), then ``--proxies`` more in batches of ``--batch``, each
batch waiting until its proxies have full config. The figure is the RSS difference between the
one proxy and all of them, each read ``--quiet-wait`` seconds after the last connection, per
added proxy (the least-squares slope of RSS read after each batch is given too).
``/proc/PID/smaps`` before and after names which mappings grew: ``heap`` (the main thread's
malloc arena, brk), ``arena`` (an anonymous mapping at a 64 MiB boundary: the malloc arena of
another thread, here grpc core's), ``anon`` (other anonymous mappings: pymalloc's arenas, large
blocks malloc mapped on their own, thread stacks) and ``file``; and how many anonymous mappings
are new, by size.

``--trim``: the server calls glibc's ``malloc_trim(0)`` (SIGUSR1, handled by the floor and by
pilot started through this module's ``--as-pilot``) after both readings, which are read again:
what goes is what malloc held free. ``--env NAME=VALUE`` sets an environment variable of the
server (``MALLOC_ARENA_MAX``, ``MALLOC_MMAP_THRESHOLD_``, ``PYTHONMALLOC``...),
``--grpc-option NAME=INT`` adds a grpc server option to pilot's, ``--edits E`` then edits the
VirtualService of ``svc-0000`` E times (each waited for) for pilot's CPU per push.
``--tracemalloc N``: pilot traces Python allocations (N frames; its RSS is then not comparable)
and the run also gives the Python heap per added proxy by source line (``python_top``).
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import signal
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import procstat
from bench.measured_servers import BenchPilot, FloorProcess
from bench.mesh import BenchService, edit_virtual_service, edit_weight, write_mesh
from bench.phases import edit_round
from bench.workers import Workers

_ROOT = Path(__file__).resolve().parent.parent
_ARENA_ALIGN = 64 * 1024 * 1024  # glibc's HEAP_MAX_SIZE on 64-bit: non-main arenas start here


def smaps(pid: int) -> dict[tuple[int, str], int]:
    """(start address, kind) → Rss KiB of every mapping of ``pid``."""
    out: dict[tuple[int, str], int] = {}
    key: tuple[int, str] | None = None
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        head = line.split(maxsplit=5)
        if "-" in head[0] and not head[0].endswith(":"):
            start = int(head[0].split("-")[0], 16)
            name = head[5] if len(head) > 5 else ""
            if name == "[heap]":
                kind = "heap"
            elif name.startswith("["):
                kind = name.strip("[]")
            elif name:
                kind = "file"
            else:
                kind = "arena" if start % _ARENA_ALIGN == 0 else "anon"
            key = (start, kind)
        elif head[0] == "Rss:" and key is not None:
            out[key] = out.get(key, 0) + int(head[1])
    return out


def anon_sizes(pid: int) -> dict[int, int]:
    """Start address → size (KiB) of every anonymous mapping of ``pid``."""
    sizes = {}
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        fields = line.split()
        if len(fields) == 5:  # no path: anonymous
            start, end = (int(x, 16) for x in fields[0].split("-"))
            sizes[start] = (end - start) // 1024
    return sizes


def by_kind(maps: dict[tuple[int, str], int]) -> dict[str, int]:
    kinds: dict[str, int] = {}
    for (_, kind), rss in maps.items():
        kinds[kind] = kinds.get(kind, 0) + rss
    return kinds


def slope(points: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of y over x."""
    mean_x = statistics.fmean(x for x, _ in points)
    mean_y = statistics.fmean(y for _, y in points)
    num = sum((x - mean_x) * (y - mean_y) for x, y in points)
    den = sum((x - mean_x) ** 2 for x, _ in points)
    return num / den if den else float("nan")


def one_run(args: argparse.Namespace, config: Path, root: Path, workers: Workers, log: Any) -> dict[str, Any]:
    server: BenchPilot | FloorProcess
    if args.server == "pilot":
        extra = ("--log-level", "warning")
        server = TrimmablePilot(config, root / "pilot.log", debounce_after=0.1, extra_args=extra)
        server.start(timeout=180)
        pid = server.pid
        target = f"127.0.0.1:{server.xds_port}"
    else:
        server = FloorProcess(config, [10], root / "floor.log", uvloop=False)
        pid = server.pid
        target = f"127.0.0.1:{server.port}"
    assert pid is not None
    protocol = args.protocol if args.server == "pilot" else "sotw"
    try:
        time.sleep(1.0)
        idle = procstat.rss_kib(pid)
        _, full, errors = workers.connect(target, [0], 120, protocol)
        time.sleep(args.quiet_wait)
        before_maps = smaps(pid)
        before_anon = anon_sizes(pid)
        one = procstat.rss_kib(pid)
        heap_before = _python_heap(pid, root / "one.snap") if args.tracemalloc else None
        one_trimmed = None
        if args.trim:  # the same reading trimmed, after the untrimmed one
            os.kill(pid, signal.SIGUSR1)
            time.sleep(1.0)
            one_trimmed = procstat.rss_kib(pid)
        points = [(0.0, float(one))]
        connected = 0
        cpu0 = procstat.cpu_seconds(pid)
        for first in range(1, args.proxies + 1, args.batch):
            indices = range(first, min(first + args.batch, args.proxies + 1))
            _, full, more = workers.connect(target, indices, 120, protocol)
            connected += len(full)
            for key, count in more.items():
                errors[key] = errors.get(key, 0) + count
            time.sleep(args.settle)
            points.append((float(connected), float(procstat.rss_kib(pid))))
        connect_cpu = procstat.cpu_seconds(pid) - cpu0
        time.sleep(args.quiet_wait)
        after_maps = smaps(pid)
        new_anon: dict[int, int] = {}
        for start, size in anon_sizes(pid).items():
            if start not in before_anon:
                new_anon[size] = new_anon.get(size, 0) + 1
        after = procstat.rss_kib(pid)
        heap_after = _python_heap(pid, root / "all.snap") if args.tracemalloc else None
        out: dict[str, Any] = {
            "idle_kib": idle,
            "one_proxy_kib": one,
            "after_kib": after,
            "connected": connected,
            "errors": errors,
            "slope_kib": slope(points),
            "per_proxy_kib": (after - one) / max(1, connected),
            "kinds_before_kib": by_kind(before_maps),
            "kinds_after_kib": by_kind(after_maps),
            "grown": _grown(before_maps, after_maps, connected),
            # Mappings that are new, by size (KiB): with MALLOC_MMAP_THRESHOLD_ low, the large
            # chunks that stay allocated, one mapping each.
            "connect_cpu_ms_per_proxy": 1000 * connect_cpu / max(1, connected),
            "new_anonymous_mappings": dict(sorted(new_anon.items(), key=lambda kv: -kv[1])[:6]),
        }
        if heap_before is not None and heap_after is not None:
            out["python_top"] = _python_top(heap_before, heap_after, connected)
        if args.trim:
            os.kill(pid, signal.SIGUSR1)
            time.sleep(1.0)
            trimmed = procstat.rss_kib(pid)
            log_text = (root / f"{args.server}.log").read_text(errors="replace")
            took = [line.split()[2] for line in log_text.splitlines() if line.startswith("malloc_trim took")]
            out["trim_ms"] = float(took[-1]) if took else None
            out["trimmed_kib"] = trimmed
            out["one_proxy_trimmed_kib"] = one_trimmed
            out["per_proxy_trimmed_kib"] = (trimmed - (one_trimmed or one)) / max(1, connected)
            out["kinds_trimmed_kib"] = by_kind(smaps(pid))
        if args.edits and args.server == "pilot":
            out["edit_cpu_s"] = _edits(args.edits, config, workers, pid)
            out["after_edits_kib"] = procstat.rss_kib(pid)
        workers.close_proxies()
        return out
    finally:
        server.stop()


def _python_heap(pid: int, path: Path) -> tracemalloc.Snapshot:
    """pilot's traced Python heap (``--tracemalloc``), dumped to ``path`` on SIGUSR2."""
    os.kill(pid, signal.SIGUSR2)
    deadline = time.monotonic() + 120
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"pilot wrote no {path}")
        time.sleep(0.2)
    time.sleep(1.0)  # written whole (the dump renames a finished file into place)
    return tracemalloc.Snapshot.load(str(path))


def _python_top(before: tracemalloc.Snapshot, after: tracemalloc.Snapshot, connected: int) -> dict[str, Any]:
    """The Python heap per added proxy: in all, and by source line (the 60 lines that grew most;
    for a line in asyncio or grpc, the first frame of pilot's that led to it is named too)."""
    total = sum(s.size for s in after.statistics("filename"))
    total -= sum(s.size for s in before.statistics("filename"))
    lines = []
    for stat in after.compare_to(before, "traceback")[:200]:
        frames = [f"{f.filename.rsplit('/site-packages/', 1)[-1]}:{f.lineno}" for f in stat.traceback]
        # Frames run from the oldest to the most recent.
        pilots = [f for f in reversed(frames) if f.startswith(("pilot/", str(_ROOT)))]
        lines.append((stat.size_diff, stat.count_diff, frames[-1], pilots[0] if pilots else ""))
    merged: dict[tuple[str, str], list[float]] = {}
    for size, count, where, ours in lines:
        entry = merged.setdefault((where, ours), [0.0, 0.0])
        entry[0] += size
        entry[1] += count
    top = sorted(merged.items(), key=lambda kv: -kv[1][0])[:60]
    return {
        "bytes_per_proxy": round(total / max(1, connected)),
        "top": [
            {
                "at": where,
                "from": ours.replace(str(_ROOT) + "/", ""),
                "bytes": round(size / max(1, connected)),
                "objects": round(count / max(1, connected), 2),
            }
            for (where, ours), (size, count) in top
        ],
    }


def _edits(count: int, config: Path, workers: Workers, pid: int) -> list[float]:
    """Edit the VirtualService of svc-0000 ``count`` times, each waited for (every proxy ACKs
    it); pilot's CPU seconds for each, from the write to the last ACK."""
    cpu = []
    for edit in range(count):
        before = procstat.cpu_seconds(pid)
        _, _, missing = edit_round(
            workers, edit_weight(edit), lambda e=edit: edit_virtual_service(config, BenchService(0), e), 60
        )
        time.sleep(0.05)  # the last ACKs are read after the proxies wrote them
        cpu.append(procstat.cpu_seconds(pid) - before)
        if missing:
            raise RuntimeError(f"edit {edit}: {missing} proxies did not ACK")
    return cpu


def _grown(
    before: dict[tuple[int, str], int], after: dict[tuple[int, str], int], connected: int
) -> dict[str, Any]:
    """Growth per kind, per proxy (KiB), and the mappings that grew most."""
    kinds: dict[str, float] = {}
    deltas = []
    for key in before.keys() | after.keys():
        delta = after.get(key, 0) - before.get(key, 0)
        kinds[key[1]] = kinds.get(key[1], 0.0) + delta / max(1, connected)
        deltas.append((delta, key))
    deltas.sort(reverse=True)
    top = [{"start": hex(start), "kind": kind, "kib": delta} for delta, (start, kind) in deltas[:8]]
    return {"per_proxy_kib": {k: round(v, 1) for k, v in sorted(kinds.items())}, "top": top}


class TrimmablePilot(BenchPilot):
    """``pilot serve`` started through this module's ``--as-pilot`` (SIGUSR1: malloc_trim(0))."""

    @property
    def command(self) -> list[str]:
        command = super().command
        command[1:3] = ["-m", "bench.connection_memory", "--as-pilot"]
        return command


def run_as_pilot(argv: list[str]) -> int:
    """``pilot`` with extra grpc server options (``BENCH_GRPC_OPTIONS``, a JSON list of [name,
    value]) and a SIGUSR1 handler that calls glibc's ``malloc_trim(0)``."""
    import pilot.app
    from pilot.cli import main

    extra = [tuple(item) for item in json.loads(os.environ.get("BENCH_GRPC_OPTIONS", "[]"))]
    pilot.app.GRPC_OPTIONS = (*pilot.app.GRPC_OPTIONS, *extra)
    signal.signal(signal.SIGUSR1, lambda *_: timed_trim())
    dumps = os.environ.get("BENCH_TRACEMALLOC_DIR")
    if dumps:
        tracemalloc.start(int(os.environ.get("BENCH_TRACEMALLOC_FRAMES", "1")))
        names = iter(("one.snap", "all.snap"))
        signal.signal(signal.SIGUSR2, lambda *_: _dump_heap(Path(dumps), next(names)))
    return main(argv)


def _dump_heap(directory: Path, name: str) -> None:
    gc.collect()
    partial = directory / f"{name}.partial"
    tracemalloc.take_snapshot().dump(str(partial))
    partial.rename(directory / name)


def timed_trim() -> None:
    """glibc's ``malloc_trim(0)``: every arena's free pages back to the OS; logs how long it took."""
    started = time.perf_counter()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    print(f"malloc_trim took {(time.perf_counter() - started) * 1000:.1f} ms", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--as-pilot"]:
        return run_as_pilot(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", choices=("pilot", "floor"), default="pilot")
    parser.add_argument("--protocol", choices=("sotw", "delta", "vhds"), default="sotw")
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--proxies", type=int, default=200, help="proxies added after the first")
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--settle", type=float, default=0.3, help="seconds after a batch before RSS")
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=3.0,
        help="seconds after the last connection before the first and the last RSS",
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the server")
    parser.add_argument("--grpc-option", action="append", default=[], help="NAME=INT for pilot")
    parser.add_argument("--edits", type=int, default=0, help="then edits, each waited for: CPU per push")
    parser.add_argument("--trim", action="store_true", help="read RSS again after malloc_trim(0)")
    parser.add_argument(
        "--tracemalloc", type=int, default=0, metavar="FRAMES", help="pilot's Python heap by line"
    )
    parser.add_argument("--out", type=Path, default=None, help="also write the runs as JSON here")
    args = parser.parse_args(argv)
    for item in args.env:
        name, _, value = item.partition("=")
        os.environ[name] = value
    if args.grpc_option:
        options = [[name, int(value)] for name, _, value in (o.partition("=") for o in args.grpc_option)]
        os.environ["BENCH_GRPC_OPTIONS"] = json.dumps(options)
    root_dir = str(Path(__file__).resolve().parent.parent)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [root_dir, os.environ.get("PYTHONPATH")]))

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    runs = []
    with tempfile.TemporaryDirectory(prefix="pilot-connmem-") as tmp:
        root = Path(tmp)
        if args.tracemalloc:
            os.environ["BENCH_TRACEMALLOC_FRAMES"] = str(args.tracemalloc)
            os.environ["BENCH_TRACEMALLOC_DIR"] = str(root)
        config = root / "config"
        write_mesh(config, args.services)
        workers = Workers(args.workers)
        try:
            for run in range(args.runs):
                result = one_run(args, config, root, workers, log)
                runs.append(result)
                for snap in ("one.snap", "all.snap"):
                    (root / snap).unlink(missing_ok=True)
                if "python_top" in result:
                    heap = json.dumps(result["python_top"], indent=1)
                    log(f"run {run + 1}: Python heap per added proxy {heap}")
                trimmed = (
                    f", trimmed {result['per_proxy_trimmed_kib']:.1f} in {result['trim_ms']} ms"
                    if "trimmed_kib" in result
                    else ""
                )
                log(
                    f"run {run + 1}: {result['connected']} proxies, "
                    f"{result['per_proxy_kib']:.1f} KiB per added proxy{trimmed} "
                    f"(slope {result['slope_kib']:.1f}), "
                    f"by mapping {result['grown']['per_proxy_kib']}, errors {result['errors']}, "
                    f"new anonymous mappings (KiB: count) {result['new_anonymous_mappings']}, "
                    f"connect CPU {result['connect_cpu_ms_per_proxy']:.1f} ms/proxy, "
                    f"edit CPU {[round(c, 3) for c in result.get('edit_cpu_s', [])]} s"
                )
        finally:
            workers.stop()
    label = f"{args.server} {args.protocol if args.server == 'pilot' else 'sotw'} K={args.services}"
    per_proxy = ", ".join(f"{r['per_proxy_kib']:.1f}" for r in runs)
    slopes = ", ".join(f"{r['slope_kib']:.1f}" for r in runs)
    print(
        f"{label} {' '.join([*args.env, *args.grpc_option])}: "
        f"{statistics.median(r['per_proxy_kib'] for r in runs):.1f} KiB per added proxy "
        f"(runs {per_proxy}; slopes {slopes}); load {procstat.load_average()}"
    )
    if args.out:
        given = vars(args) | {"out": str(args.out)}
        args.out.write_text(json.dumps({"options": given, "runs": runs}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
