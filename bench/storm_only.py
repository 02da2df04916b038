"""The connect storm alone, as ``bench.run`` runs it: how many streams it loses, and its CPU.

    .venv/bin/python -m bench.storm_only pilot --proxies 2000 --services 1000
    .venv/bin/python -m bench.storm_only pilot --proxies 200 --services 1000 --protocol delta --repeat 3
    BENCH_GRPC_OPTIONS='[["grpc.max_connection_age_ms", 1800000]]' \\
        .venv/bin/python -m bench.storm_only floor --proxies 2000 --services 1000

The same sequence as a case of ``bench.run`` up to its storm: one proxy (the view's snapshot is
built), 25 more in batches of 6, all closed (the view goes cold), then N at once. Prints how many
reached full config, how the streams that ended (each opened again) ended, the storm's wall time,
and the CPU seconds (utime + stime) of the server and of the simulated fleet (its 4 worker
processes) during it; CPU seconds stay comparable on a loaded machine, wall times do not.
``--repeat`` runs the storm again (each starts cold: the view's snapshot goes with its last stream
and is built again). The floor takes extra grpc server options from ``BENCH_GRPC_OPTIONS``
(docs/benchmarks.md, "Why streams are lost in the storm").
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench import procstat
from bench.measured_servers import BenchPilot, FloorProcess
from bench.mesh import write_mesh
from bench.workers import Workers

ADDED = 25
BATCH = 6


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("server", choices=("pilot", "floor"))
    parser.add_argument("--proxies", type=int, default=2000)
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--timeout", type=float, default=45.0, help="seconds the storm may take")
    parser.add_argument(
        "--protocol", choices=("sotw", "delta", "vhds"), default="sotw", help="how pilot's proxies speak ADS"
    )
    parser.add_argument("--repeat", type=int, default=1, help="storms, one after the other")
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
            protocol = args.protocol if args.server == "pilot" else "sotw"  # the floor speaks SotW
            try:
                workers.connect(target, [n], 60, protocol)
                time.sleep(1.0)
                for first in range(n + 1, n + 1 + ADDED, BATCH):
                    workers.connect(target, range(first, min(first + BATCH, n + 1 + ADDED)), 60, protocol)
                time.sleep(1.0)
                workers.close_proxies()
                time.sleep(0.5)
                for _ in range(args.repeat):
                    at = time.strftime("%H:%M:%S", time.gmtime())
                    server_cpu, fleet_cpu = _cpu(server.pid, workers)
                    started, full, errors = workers.connect(target, range(n), args.timeout, protocol)
                    server_after, fleet_after = _cpu(server.pid, workers)
                    wall = max(full.values(), default=started) - started
                    print(
                        f"{args.server} {protocol} storm at {at} UTC: {len(full)}/{n} full config in "
                        f"{wall:.2f} s, CPU: server {server_after - server_cpu:.2f} s, fleet "
                        f"{fleet_after - fleet_cpu:.2f} s; streams ended: {errors}",
                        flush=True,
                    )
                    workers.close_proxies()
                    time.sleep(1.0)
            finally:
                server.stop()
        finally:
            workers.stop()
    return 0


def _cpu(pid: int | None, workers: Workers) -> tuple[float, float]:
    """CPU seconds so far of the server and of the fleet's workers together."""
    assert pid is not None
    return procstat.cpu_seconds(pid), workers.cpu_seconds()


if __name__ == "__main__":
    sys.exit(main())
