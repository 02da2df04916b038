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

This module is the command line; a case is bench/case.py, its shared phases bench/phases.py, the
processes it drives bench/workers.py and bench/measured_servers.py, the table bench/results_table.py.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import procstat
from bench.case import run_case
from bench.memory_guard import GIB_KIB, MemoryGuard
from bench.paths import RESULTS, ROOT
from bench.phases import Options
from bench.results_table import table
from bench.workers import Workers

# Cases the default run skips (too long for the 2-core reference machine): N*K above this.
DEFAULT_MAX_PRODUCT = 100_000


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
