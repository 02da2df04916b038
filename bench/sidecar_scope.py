"""What a namespace-scoped Sidecar saves: views, bytes and translation CPU for 1000 proxies.

    .venv/bin/python -m bench.sidecar_scope                 # the default case below
    .venv/bin/python -m bench.sidecar_scope --proxies 1000 --workloads 10 --services 100 --namespaces 10

In process, no server: K HTTP services spread over M namespaces (``istio-system`` is one of them),
each with a VirtualService; W workloads in namespace ``app`` (one of the M), N/W proxies each, every
workload backing one service of its namespace (its proxies' addresses are that service's endpoints)
and with REDIRECT interception. Two cases, the same mesh with and without a Sidecar ``default`` in
``app`` whose egress imports ``./*`` and ``istio-system/*``. Per case:

- views: the distinct ``view_of`` of the N proxies (the snapshots a push builds);
- bytes per proxy: the serialized snapshot (every resource's ``Any`` body) of the proxy's view,
  averaged over the proxies, i.e. what a full push sends one proxy;
- CPU per push: ``PushContext.build`` + ``view_of`` for every proxy + ``build_snapshot`` for every
  view, from scratch (a full push, process CPU time, best of ``--repeat``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

from google.protobuf import json_format

from pilot._gen import networking_pb2 as nw
from pilot.config.objects import ConfigKey, ConfigObject
from pilot.config.store import StoreSnapshot
from pilot.translate.context import PushContext
from pilot.translate.proxy import Proxy, ProxyView
from pilot.translate.snapshot import build_snapshot
from pilot.translate.views import view_of

APP_NAMESPACE = "app"
ROOT_NAMESPACE = "istio-system"
SIDECAR_EGRESS = ("./*", f"{ROOT_NAMESPACE}/*")


def _object(kind: str, namespace: str, name: str, spec: dict[str, Any], message: Any) -> ConfigObject:
    parsed = json_format.ParseDict(spec, message)
    return ConfigObject(ConfigKey(kind, namespace, name), "networking.istio.io/v1", parsed, "bench")


def namespaces(count: int) -> list[str]:
    """``app``, ``istio-system`` and ``ns-2``...: ``count`` namespaces."""
    return [APP_NAMESPACE, ROOT_NAMESPACE, *(f"ns-{i}" for i in range(2, count))][:count]


def workload_ip(workload: int, replica: int) -> str:
    return f"10.{100 + workload}.{replica // 250}.{replica % 250 + 1}"


def mesh(services: int, spaces: int, workloads: int, replicas: int, sidecar: bool) -> list[ConfigObject]:
    """The services (``svc-III`` in namespace ``i % spaces``), their VirtualServices, and the
    Sidecar if asked. Service ``w`` (w < workloads) of ``app`` is workload ``w``'s."""
    names = namespaces(spaces)
    objects: list[ConfigObject] = []
    per_namespace: dict[str, int] = {}
    for index in range(services):
        namespace = names[index % spaces]
        ordinal = per_namespace[namespace] = per_namespace.get(namespace, -1) + 1
        name = f"svc-{index:03d}"
        host = f"{name}.{namespace}.svc.cluster.local"
        if namespace == APP_NAMESPACE and ordinal < workloads:
            endpoints = [
                {"address": workload_ip(ordinal, r), "labels": {"app": f"w{ordinal}"}}
                for r in range(replicas)
            ]
        else:
            endpoints = [{"address": f"10.{index % 100}.0.{r + 1}"} for r in range(3)]
        entry = {
            "hosts": [host],
            "ports": [{"number": 8080, "name": "http", "protocol": "HTTP", "targetPort": 9080}],
            "resolution": "STATIC",
            "location": "MESH_INTERNAL",
            "endpoints": endpoints,
        }
        objects.append(_object("ServiceEntry", namespace, name, entry, nw.ServiceEntry()))
        route = {"hosts": [host], "http": [{"route": [{"destination": {"host": host}}], "timeout": "5s"}]}
        objects.append(_object("VirtualService", namespace, name, route, nw.VirtualService()))
    if sidecar:
        spec = {"egress": [{"hosts": list(SIDECAR_EGRESS)}]}
        objects.append(_object("Sidecar", APP_NAMESPACE, "default", spec, nw.Sidecar()))
    return objects


def proxies(workloads: int, replicas: int) -> list[Proxy]:
    out = []
    for w in range(workloads):
        for r in range(replicas):
            ip = workload_ip(w, r)
            node = f"sidecar~{ip}~w{w}-{r}.{APP_NAMESPACE}~{APP_NAMESPACE}.svc.cluster.local"
            labels = {"app": f"w{w}", "pod-template-hash": f"h{w}", "pod": f"w{w}-{r}"}
            out.append(Proxy.from_node(node, {"LABELS": labels, "INTERCEPTION_MODE": "REDIRECT"}))
    return out


def snapshot_bytes(view: ProxyView, context: PushContext) -> int:
    snapshot = build_snapshot(view, context)
    return sum(len(r.body) for typed in snapshot.by_type.values() for r in typed.resources.values())


def full_push(
    objects: Sequence[ConfigObject], nodes: Sequence[Proxy]
) -> tuple[float, PushContext, list[ProxyView]]:
    """One full push from scratch: (CPU seconds, the context, each proxy's view)."""
    start = time.process_time()
    store = StoreSnapshot(1, MappingProxyType({obj.key: obj for obj in objects}))
    context = PushContext.build(store)
    views = [view_of(node, context) for node in nodes]
    for view in dict.fromkeys(views):
        build_snapshot(view, context)
    return time.process_time() - start, context, views


def measure(args: argparse.Namespace, sidecar: bool) -> dict[str, Any]:
    replicas = args.proxies // args.workloads
    objects = mesh(args.services, args.namespaces, args.workloads, replicas, sidecar)
    nodes = proxies(args.workloads, replicas)
    runs = [full_push(objects, nodes) for _ in range(args.repeat)]
    cpu = min(run[0] for run in runs)
    _, context, views = runs[-1]
    distinct = list(dict.fromkeys(views))
    sizes = {view: snapshot_bytes(view, context) for view in distinct}
    scope = context.scope_of(distinct[0])
    return {
        "sidecar": sidecar,
        "views": len(distinct),
        "services_seen": len(scope.services),
        "bytes_per_proxy": sum(sizes[view] for view in views) / len(views),
        "cpu_per_push_s": cpu,
        "cpu_per_view_ms": 1000 * cpu / len(distinct),
    }


def git_commit() -> str:
    root = Path(__file__).resolve().parent.parent
    found = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True).stdout
    return found.stdout.strip() + ("+dirty" if dirty.strip() else "")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--proxies", type=int, default=1000)
    parser.add_argument("--workloads", type=int, default=10)
    parser.add_argument("--services", type=int, default=100)
    parser.add_argument("--namespaces", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3, help="full pushes per case; the best CPU is kept")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    rows = [measure(args, sidecar) for sidecar in (False, True)]
    if args.json:
        print(json.dumps({"commit": git_commit(), "args": vars(args), "cases": rows}, indent=2))
        return 0
    print(
        f"commit {git_commit()}: {args.proxies} proxies of {args.workloads} workloads in {APP_NAMESPACE!r}, "
    )
    print(f"{args.services} services over {args.namespaces} namespaces")
    print(f"{'Sidecar':<28} {'views':>5} {'services':>8} {'KiB/proxy':>9} {'CPU/push':>9} {'ms/view':>8}")
    for row in rows:
        label = "egress ./*, istio-system/*" if row["sidecar"] else "none (imports */*)"
        print(
            f"{label:<28} {row['views']:>5} {row['services_seen']:>8} {row['bytes_per_proxy'] / 1024:>9.1f}"
            f" {row['cpu_per_push_s']:>8.2f}s {row['cpu_per_view_ms']:>8.1f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
