"""Translation alone: a full build and the incremental build after one VirtualService edit.

    .venv/bin/python -m bench.translation                        # K = 100, 1000, 5000
    .venv/bin/python -m bench.translation --services 1000 --repeat 7
    .venv/bin/python -m bench.translation --services 1000 --profile /tmp/k1000.prof

In process, no server, on the mesh of ``python -m bench`` (bench/mesh.py: K services, each a
ServiceEntry with one HTTP port of 8, a DestinationRule with two subsets and a VirtualService),
read from YAML into a ConfigStore as pilot reads it. Per K:

- full build: ``PushContext.build`` + ``build_snapshot`` of the proxies' view from scratch, as the
  first push after start-up (no previous context);
- incremental: after the VirtualService of ``svc-0000`` gets a new weight, ``PushContext.build``
  from the previous context + ``build_snapshot`` from the previous snapshot, as every push after
  an edit;
- views: ``--views V`` builds V distinct views (sidecars of V namespaces) per push instead of one,
  for what work is shared between views of one context.

The store's objects are moved out of the cyclic garbage collector's generations once loaded
(``gc.freeze()``), as ``pilot serve`` does after its initial load (pilot.app); ``--no-gc-freeze``
measures without. Each figure is the median (and the minimum) of ``--repeat`` runs, wall time and
process CPU time (``time.process_time``). ``--profile FILE`` writes a cProfile of repeated full
builds of the largest K (read it with ``python -m pstats FILE`` or ``python -m bench.translation
--show FILE``).
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import json
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from bench.mesh import NAMESPACE, BenchService, virtual_service_doc, write_mesh
from bench.sidecar_scope import git_commit
from pilot.cache.snapshot import Snapshot
from pilot.config.parse import parse_text
from pilot.config.store import ConfigStore
from pilot.translate.context import PushContext
from pilot.translate.proxy import Proxy, ProxyView
from pilot.translate.snapshot import build_snapshot


def load_store(root: Path) -> ConfigStore:
    store = ConfigStore()
    for path in sorted(root.rglob("*.yaml")):
        store.apply(parse_text(path.read_text(encoding="utf-8"), str(path)))
    return store


def views(count: int) -> list[ProxyView]:
    """``count`` distinct sidecar views: one proxy in ``bench``, then one per other namespace."""
    spaces = [NAMESPACE, *(f"ns-{i}" for i in range(1, count))]
    return [
        Proxy.from_node(f"sidecar~10.250.0.{i + 1}~p{i}.{ns}~{ns}.svc.cluster.local").view()
        for i, ns in enumerate(spaces)
    ]


def _timed(run: Callable[[], Any]) -> tuple[float, float, Any]:
    wall, cpu = time.perf_counter(), time.process_time()
    out = run()
    return time.perf_counter() - wall, time.process_time() - cpu, out


def _full(store: ConfigStore, targets: Sequence[ProxyView]) -> tuple[PushContext, list[Snapshot]]:
    context = PushContext.build(store.snapshot())
    return context, [build_snapshot(view, context) for view in targets]


def _summary(samples: list[tuple[float, float]]) -> dict[str, float]:
    walls = [w * 1000 for w, _ in samples]
    cpus = [c * 1000 for _, c in samples]
    return {
        "wall_ms": statistics.median(walls),
        "wall_min_ms": min(walls),
        "cpu_ms": statistics.median(cpus),
        "cpu_min_ms": min(cpus),
    }


def measure(services: int, view_count: int, repeat: int, freeze: bool = True) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="pilot-bench-translation-") as tmp:
        root = Path(tmp)
        write_mesh(root, services)
        store = load_store(root)
    if freeze:
        gc.freeze()
    targets = views(view_count)
    full: list[tuple[float, float]] = []
    context: PushContext | None = None
    snapshots: list[Snapshot] = []
    for _ in range(repeat):
        wall, cpu, (context, snapshots) = _timed(lambda: _full(store, targets))
        full.append((wall, cpu))
    assert context is not None
    edited = BenchService(0)
    incremental: list[tuple[float, float]] = []
    for edit in range(repeat):
        doc = virtual_service_doc(edited, 10 + edit)
        store.apply(
            parse_text(yaml.safe_dump(doc, sort_keys=False), str(root / "routes" / "svc-0000-vs.yaml"))
        )
        previous, old = context, snapshots

        def push(
            previous: PushContext = previous, old: list[Snapshot] = old
        ) -> tuple[PushContext, list[Snapshot]]:
            new = PushContext.build(store.snapshot(), previous)
            return new, [build_snapshot(v, new, (previous, s)) for v, s in zip(targets, old, strict=True)]

        wall, cpu, (context, snapshots) = _timed(push)
        incremental.append((wall, cpu))
    size = sum(len(r.body) for typed in snapshots[0].by_type.values() for r in typed.resources.values())
    gc.unfreeze()
    return {
        "services": services,
        "views": view_count,
        "gc_freeze": freeze,
        "bytes_per_view": size,
        "full": _summary(full),
        "incremental": _summary(incremental),
    }


def profile(services: int, view_count: int, repeat: int, out: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="pilot-bench-translation-") as tmp:
        write_mesh(Path(tmp), services)
        store = load_store(Path(tmp))
    targets = views(view_count)
    _full(store, targets)
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(repeat):
        _full(store, targets)
    profiler.disable()
    profiler.dump_stats(str(out))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--services", type=int, action="append", help="K (repeatable; default 100, 1000, 5000)"
    )
    parser.add_argument("--views", type=int, default=1, help="distinct views per push (default 1)")
    parser.add_argument("--repeat", type=int, default=5, help="runs per figure; the median is shown")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument(
        "--no-gc-freeze", dest="freeze", action="store_false", help="leave the loaded config to the cyclic GC"
    )
    parser.add_argument("--profile", type=Path, help="write a cProfile of full builds of the largest K")
    parser.add_argument("--show", type=Path, help="print the top of a cProfile file and exit")
    args = parser.parse_args(argv)
    if args.show is not None:
        pstats.Stats(str(args.show)).sort_stats("cumulative").print_stats(40)
        pstats.Stats(str(args.show)).sort_stats("tottime").print_stats(30)
        return 0
    counts = args.services or [100, 1000, 5000]
    if args.profile is not None:
        profile(max(counts), args.views, args.repeat, args.profile)
        print(f"wrote {args.profile}", file=sys.stderr)
        return 0
    rows = [measure(k, args.views, args.repeat, args.freeze) for k in counts]
    if args.json:
        print(
            json.dumps(
                {"commit": git_commit(), "args": vars(args) | {"services": counts}, "cases": rows}, indent=2
            )
        )
        return 0
    print(f"commit {git_commit()}: {args.views} view(s) per push, median (min) of {args.repeat}")
    header = ("K", "KiB/view", "full wall ms", "full CPU ms", "incr wall ms", "incr CPU ms")
    print(f"{header[0]:>6} {header[1]:>9}" + "".join(f" {h:>16}" for h in header[2:]))
    for row in rows:
        cells = [
            f"{row[phase][f'{what}_ms']:>8.{digits}f} ({row[phase][f'{what}_min_ms']:>5.{digits}f})"
            for phase, digits in (("full", 1), ("incremental", 2))
            for what in ("wall", "cpu")
        ]
        print(f"{row['services']:>6} {row['bytes_per_view'] / 1024:>9.1f} " + " ".join(cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
