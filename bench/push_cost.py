"""The server's CPU per push, in process: N proxies of one view, K services, P edits.

What a push costs pilot's server per stream (wake-up, ledger checks, the response, the write,
reading and applying the ACK), without grpc and without translation: every edit of the
VirtualService of ``svc-0000`` is translated first (incrementally, as the pusher does), then its
snapshot is set in the cache and the CPU seconds (``time.process_time``) until every proxy has
ACKed it are the push's. The proxies are :mod:`bench.stream_memory`'s fakes (they decode each
response and queue an ACK, in this process too: what they cost is in the figure, and in the
profile under ``FakeProxy.write``). CPU seconds do not depend on the machine's load much.

    .venv/bin/python -m bench.push_cost --proxies 1000 --services 1000 --protocol vhds --pushes 20
    .venv/bin/python -m bench.push_cost --protocol vhds --profile /tmp/push.prof   # cProfile
    .venv/bin/python -m bench.translation --show /tmp/push.prof                     # its top
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.mesh import BenchService, edit_virtual_service, node_id, virtual_service_path, write_mesh
from bench.stream_memory import PROTOCOLS, VIEW, InProcessStreams, subscribed_types
from pilot.cache.snapshot import Snapshot
from pilot.config.parse import parse_text
from pilot.config.store import ConfigStore
from pilot.translate.context import PushContext
from pilot.translate.proxy import VHDS_METADATA, Proxy
from pilot.translate.snapshot import build_snapshot


def snapshots(root: Path, protocol: str, edited: BenchService, pushes: int) -> list[Snapshot]:
    """The view's snapshot, then one per edit, each built from the one before."""
    store = ConfigStore()
    for path in sorted(root.rglob("*.yaml")):
        store.apply(parse_text(path.read_text(encoding="utf-8"), str(path)))
    metadata = {VHDS_METADATA: "true"} if protocol == "vhds" else {}
    view = Proxy.from_node(node_id(0), metadata).view()
    context = PushContext.build(store.snapshot())
    chain = [build_snapshot(view, context)]
    path = virtual_service_path(root, edited)
    for edit in range(pushes):
        edit_virtual_service(root, edited, edit)
        store.apply(parse_text(path.read_text(encoding="utf-8"), str(path)))
        previous = context
        context = PushContext.build(store.snapshot(), previous)
        chain.append(build_snapshot(view, context, (previous, chain[-1])))
    return chain


async def measure(
    protocol: str, proxies: int, chain: list[Snapshot], profile: cProfile.Profile | None
) -> dict[str, Any]:
    streams = InProcessStreams(protocol, chain[0])
    await streams.open(proxies, chain[0])
    expected = proxies * len(subscribed_types(protocol))
    await streams.settle(expected)
    cpu = []
    sent_before = streams.written()
    for snapshot in chain[1:]:
        expected += proxies  # one response each (RDS, or VHDS)
        if profile is not None:
            profile.enable()
        started = time.process_time()
        streams.cache.set_snapshot(VIEW, snapshot)
        await streams.settle(expected, after=0.2)  # sleeping costs no CPU
        cpu.append(time.process_time() - started)
        if profile is not None:
            profile.disable()
    await streams.close()
    return {
        "cpu_ms_per_push": round(statistics.median(cpu) * 1000, 1),
        "cpu_ms_per_push_min": round(min(cpu) * 1000, 1),
        "cpu_us_per_proxy": round(statistics.median(cpu) / proxies * 1e6),
        "bytes_per_proxy_per_edit": round((streams.written() - sent_before) / proxies / len(cpu)),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--proxies", type=int, default=1000)
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--protocol", choices=PROTOCOLS, default="vhds")
    parser.add_argument("--pushes", type=int, default=10)
    parser.add_argument("--profile", type=Path, default=None, help="write a cProfile of the pushes here")
    opts = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        services = write_mesh(root, opts.services)
        chain = snapshots(root, opts.protocol, services[0], opts.pushes)
    profile = cProfile.Profile() if opts.profile is not None else None
    out = {
        "proxies": opts.proxies,
        "services": opts.services,
        "protocol": opts.protocol,
        "pushes": opts.pushes,
        **asyncio.run(measure(opts.protocol, opts.proxies, chain, profile)),
    }
    if profile is not None:
        profile.dump_stats(opts.profile)
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
