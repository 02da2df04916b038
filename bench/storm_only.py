"""The connect storm alone, as ``bench.run`` runs it, to find why streams are lost.

    .venv/bin/python -m bench.storm_only pilot --proxies 2000 --services 1000
    BENCH_GRPC_OPTIONS='[["grpc.max_connection_age_ms", 1800000]]' \\
        .venv/bin/python -m bench.storm_only floor --proxies 2000 --services 1000

The same sequence as a case of ``bench.run`` up to its storm: one proxy (the view's snapshot is
built), 25 more in batches of 6, all closed (the view goes cold), then N at once. Prints how many
reached full config and how the streams that ended (each opened again) ended; the floor takes
extra grpc server options from ``BENCH_GRPC_OPTIONS`` (docs/benchmarks.md, "Why streams are lost
in the storm").
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench.mesh import write_mesh
from bench.run import BenchPilot, FloorProcess, Workers

ADDED = 25
BATCH = 6


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("server", choices=("pilot", "floor"))
    parser.add_argument("--proxies", type=int, default=2000)
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--timeout", type=float, default=45.0, help="seconds the storm may take")
    args = parser.parse_args(argv)
    n = args.proxies
    with tempfile.TemporaryDirectory(prefix="pilot-storm-") as tmp:
        root = Path(tmp)
        config = root / "config"
        write_mesh(config, args.services)
        workers = Workers(4)
        server: BenchPilot | FloorProcess
        try:
            if args.server == "pilot":
                server = BenchPilot(config, root / "pilot.log", debounce_after=0.1)
                server.start(timeout=120)
                target = f"127.0.0.1:{server.xds_port}"
            else:
                server = FloorProcess(config, [10], root / "floor.log", uvloop=False)
                target = f"127.0.0.1:{server.port}"
            try:
                workers.connect(target, [n], 60)
                time.sleep(1.0)
                for first in range(n + 1, n + 1 + ADDED, BATCH):
                    workers.connect(target, range(first, min(first + BATCH, n + 1 + ADDED)), 60)
                time.sleep(1.0)
                workers.close_proxies()
                time.sleep(0.5)
                at = time.strftime("%H:%M:%S", time.gmtime())
                _, full, errors = workers.connect(target, range(n), args.timeout)
                ended = f"streams ended: {errors}"
                print(f"{args.server} storm at {at} UTC: {len(full)}/{n} full config, {ended}")
                workers.close_proxies()
            finally:
                server.stop()
        finally:
            workers.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
