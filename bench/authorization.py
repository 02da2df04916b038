"""What AuthorizationPolicies cost: translation time and bytes per proxy with 100 policies in one namespace.

    .venv/bin/python -m bench.authorization                 # the default case below
    .venv/bin/python -m bench.authorization --policies 100 --proxies 100 --workloads 10

In process, no server: bench.sidecar_scope's mesh (K HTTP services over M namespaces, W workloads in
namespace ``app`` with N/W REDIRECT proxies each), once without policies and once with P
AuthorizationPolicies in ``app``: every tenth namespace-wide, the others each selecting one workload
(``app: wI``), actions ALLOW, DENY and AUDIT in turn, each with three rules of Istio's usual shapes
(principals and paths; namespaces, methods and a header condition; request principals and a
destination port). Per case:

- bytes per proxy: the view's serialized snapshot, averaged over the proxies (what a full push
  sends one), and of it the listeners (where the RBAC filters are);
- CPU per push: ``PushContext.build`` + ``view_of`` every proxy + ``build_snapshot`` every view, from
  scratch (process CPU, best of ``--repeat``);
- authz ms/view: translating the policies that select one view into its RBAC filters
  (``build_authorization_filters``, not memoized), mean over the views, best of ``--repeat``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from typing import Any

from google.protobuf import json_format

from bench.sidecar_scope import APP_NAMESPACE, full_push, git_commit, mesh, proxies, snapshot_bytes
from pilot._gen import security_pb2 as sec
from pilot.config.objects import ConfigKey, ConfigObject
from pilot.translate.authz_listeners import build_authorization_filters
from pilot.translate.context import PushContext
from pilot.translate.proxy import ProxyView
from pilot.translate.snapshot import build_snapshot
from pilot.xds import types

ACTIONS = ("ALLOW", "DENY", "AUDIT")


def policy(index: int, workloads: int) -> ConfigObject:
    rules = [
        {
            "from": [{"source": {"principals": [f"cluster.local/ns/{APP_NAMESPACE}/sa/client-{index}"]}}],
            "to": [{"operation": {"paths": [f"/api/v{index}/*", "/healthz"]}}],
        },
        {
            "from": [{"source": {"namespaces": [f"team-{index % 7}"]}}],
            "to": [{"operation": {"methods": ["GET", "HEAD"]}}],
            "when": [{"key": "request.headers[x-tenant]", "values": [f"tenant-{index}"]}],
        },
        {
            "from": [{"source": {"requestPrincipals": [f"https://issuer.example/user-{index}"]}}],
            "to": [{"operation": {"ports": ["9080"]}}],
        },
    ]
    spec: dict[str, Any] = {"action": ACTIONS[index % len(ACTIONS)], "rules": rules}
    if index % 10:
        spec["selector"] = {"matchLabels": {"app": f"w{index % workloads}"}}
    parsed = json_format.ParseDict(spec, sec.AuthorizationPolicy())
    key = ConfigKey("AuthorizationPolicy", APP_NAMESPACE, f"policy-{index:03d}")
    return ConfigObject(key, "security.istio.io/v1", parsed, "bench")


def authz_ms_per_view(views: Sequence[ProxyView], context: PushContext, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.process_time()
        for view in views:
            build_authorization_filters(view, context)
        best = min(best, time.process_time() - start)
    return 1000 * best / len(views)


def listener_bytes(view: ProxyView, context: PushContext) -> int:
    typed = build_snapshot(view, context).by_type.get(types.LISTENER)
    return sum(len(r.body) for r in typed.resources.values()) if typed else 0


def measure(args: argparse.Namespace, policies: int) -> dict[str, Any]:
    replicas = args.proxies // args.workloads
    objects = mesh(args.services, args.namespaces, args.workloads, replicas, sidecar=True)
    objects += [policy(i, args.workloads) for i in range(policies)]
    nodes = proxies(args.workloads, replicas)
    runs = [full_push(objects, nodes) for _ in range(args.repeat)]
    cpu = min(run[0] for run in runs)
    _, context, views = runs[-1]
    distinct = list(dict.fromkeys(views))
    sizes = {view: snapshot_bytes(view, context) for view in distinct}
    listeners = {view: listener_bytes(view, context) for view in distinct}
    return {
        "policies": policies,
        "views": len(distinct),
        "bytes_per_proxy": sum(sizes[view] for view in views) / len(views),
        "listener_bytes_per_proxy": sum(listeners[view] for view in views) / len(views),
        "cpu_per_push_s": cpu,
        "cpu_per_view_ms": 1000 * cpu / len(distinct),
        "authz_ms_per_view": authz_ms_per_view(distinct, context, args.repeat),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--policies", type=int, default=100)
    parser.add_argument("--proxies", type=int, default=100)
    parser.add_argument("--workloads", type=int, default=10)
    parser.add_argument("--services", type=int, default=20)
    parser.add_argument("--namespaces", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=5, help="runs per case; the best CPU is kept")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    rows = [measure(args, count) for count in (0, args.policies)]
    if args.json:
        print(json.dumps({"commit": git_commit(), "args": vars(args), "cases": rows}, indent=2))
        return 0
    print(f"commit {git_commit()}: {args.proxies} proxies of {args.workloads} workloads in {APP_NAMESPACE!r}")
    print(
        f"{'policies':>8} {'views':>5} {'KiB/proxy':>9} {'LDS KiB':>8} {'CPU/push':>9} {'ms/view':>8}"
        f" {'authz ms/view':>13}"
    )
    for row in rows:
        print(
            f"{row['policies']:>8} {row['views']:>5} {row['bytes_per_proxy'] / 1024:>9.1f}"
            f" {row['listener_bytes_per_proxy'] / 1024:>8.1f} {row['cpu_per_push_s']:>8.3f}s"
            f" {row['cpu_per_view_ms']:>8.1f} {row['authz_ms_per_view']:>13.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
