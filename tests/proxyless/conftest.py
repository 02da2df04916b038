"""One pilot, two gRPC backends (v1, v2) and one proxyless gRPC client per test module.

The client is ``tests.proxyless.xds_client`` in its own process (gRPC's xDS client is process-wide),
dialing ``xds:///reviews.default.svc.cluster.local:9080`` with a bootstrap from
``pilot.grpc_bootstrap``; ``reviews`` is a ServiceEntry whose two endpoints are the backends.
Tests change the VirtualService and ServiceEntry and watch where the client's calls go.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from pilot.localmesh.config_files import write_atomically
from pilot.localmesh.control_plane import PilotProcess
from pilot.localmesh.polling import Timeout
from tests.proxyless.echo import EchoBackend

HOST = "reviews.default.svc.cluster.local"
PORT = 9080
TARGET = f"{HOST}:{PORT}"
CLIENT_NODE = "sidecar~127.0.0.2~client.default~default.svc.cluster.local"
REPO = Path(__file__).resolve().parents[2]


def meta(name: str) -> dict[str, str]:
    return {"name": name, "namespace": "default"}


def service_entry(backends: Mapping[str, EchoBackend]) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "ServiceEntry",
        "metadata": meta("reviews"),
        "spec": {
            "hosts": [HOST],
            "location": "MESH_INTERNAL",
            "resolution": "STATIC",
            "ports": [{"number": PORT, "name": "grpc", "protocol": "GRPC"}],
            "endpoints": [
                {"address": "127.0.0.1", "ports": {"grpc": b.port}, "labels": {"version": name}}
                for name, b in sorted(backends.items())
            ],
        },
    }


def destination_rule() -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "DestinationRule",
        "metadata": meta("reviews"),
        "spec": {"host": HOST, "subsets": [{"name": v, "labels": {"version": v}} for v in ("v1", "v2")]},
    }


def virtual_service(*http: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": meta("reviews"),
        "spec": {"hosts": ["reviews"], "http": list(http)},
    }


def to(subset: str, weight: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"destination": {"host": "reviews", "subset": subset}}
    if weight is not None:
        out["weight"] = weight
    return out


class Reply:
    def __init__(self, raw: dict[str, Any]) -> None:
        self.outcomes: Counter[str] = Counter(raw["outcomes"])
        self.seconds: list[float] = raw["seconds"]


def grpc_bootstrap(path: Path, node_id: str, xds_port: int) -> dict[str, str]:
    """Write the bootstrap as a user does (``pilot bootstrap --grpc``); the environment naming it."""
    written = subprocess.run(
        [sys.executable, "-m", "pilot", "bootstrap", "--grpc", "--node-id", node_id]
        + ["--xds-address", f"127.0.0.1:{xds_port}", "--label", "app=test"],
        check=True,
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    path.write_text(written.stdout)
    return {**os.environ, "GRPC_XDS_BOOTSTRAP": str(path), "GRPC_VERBOSITY": "ERROR"}


class XdsClient:
    """The client process: ``call`` sends one command and reads its reply."""

    def __init__(
        self, root: Path, xds_port: int, env: Mapping[str, str] | None = None, target: str = TARGET
    ) -> None:
        """``env`` names another bootstrap (``GRPC_XDS_BOOTSTRAP``); by default one for CLIENT_NODE."""
        self.target = target
        if env is None:
            env = grpc_bootstrap(root / "client-bootstrap.json", CLIENT_NODE, xds_port)
        self.stderr = root / "client.stderr"
        with self.stderr.open("wb") as stderr:  # the child keeps its own descriptor
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "tests.proxyless.xds_client", target],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
                env=env,
                cwd=REPO,
            )

    def call(
        self,
        calls: int = 1,
        metadata: Mapping[str, str] | None = None,
        timeout: float = 5.0,
        target: str | None = None,
        **options: str,
    ) -> Reply:
        """``target``: the process's own by default; ``options``: ``method``, ``credentials``
        (tests.proxyless.xds_client)."""
        assert self._proc.stdin is not None and self._proc.stdout is not None
        command = {"calls": calls, "metadata": dict(metadata or {}), "timeout": timeout}
        command.update(target=target or self.target, **options)
        command.update(options)
        self._proc.stdin.write(json.dumps(command) + "\n")
        self._proc.stdin.flush()
        line = self._proc.stdout.readline()
        if not line:
            raise RuntimeError(f"xds client exited:\n{self.stderr.read_text()[-3000:]}")
        return Reply(json.loads(line))

    def wait_for(
        self,
        accept: Callable[[Reply], bool],
        *,
        calls: int = 20,
        metadata: Mapping[str, str] | None = None,
        timeout: float = 15.0,
        message: str = "",
        target: str | None = None,
        **options: str,
    ) -> Reply:
        """Send batches of ``calls`` until one satisfies ``accept``; Timeout with the last one."""
        deadline = time.monotonic() + timeout
        while True:
            reply = self.call(calls, metadata, target=target, **options)
            if accept(reply):
                return reply
            if time.monotonic() > deadline:
                raise Timeout(
                    f"{message or 'routing'} not seen within {timeout:.0f}s; last: {reply.outcomes}"
                )
            time.sleep(0.1)  # pacing the batches, not waiting for a state

    def wait_for_target(self, target: str, accept: Callable[[Reply], bool], calls: int = 5) -> Reply:
        return self.wait_for(accept, calls=calls, target=target, message=f"calls to {target}")

    def stop(self) -> None:
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        try:
            self._proc.wait(5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(5)
        if self._proc.stdout is not None:
            self._proc.stdout.close()


class ProxylessMesh:
    def __init__(self, root: Path, backends: dict[str, EchoBackend]) -> None:
        self.root = root
        self.config_dir = root / "config"
        self.config_dir.mkdir(parents=True, exist_ok=True)
        self.backends = backends
        self.pilot = PilotProcess(self.config_dir, root / "pilot.log")
        self.client: XdsClient | None = None

    def write(self, filename: str, *docs: dict[str, Any]) -> None:
        write_atomically(self.config_dir / filename, yaml.safe_dump_all(docs, sort_keys=False))

    def remove(self, filename: str) -> None:
        (self.config_dir / filename).unlink(missing_ok=True)

    def start(self) -> ProxylessMesh:
        self.write("reviews.yaml", service_entry(self.backends), destination_rule())
        self.pilot.start()
        self.client = XdsClient(self.root, self.pilot.xds_port)
        return self

    def stop(self) -> None:
        if self.client is not None:
            self.client.stop()
        self.pilot.stop()


@pytest.fixture(scope="module")
def backends() -> Iterator[dict[str, EchoBackend]]:
    started: dict[str, EchoBackend] = {}
    try:
        for name in ("v1", "v2"):
            started[name] = EchoBackend(name).start()
        yield started
    finally:
        for backend in started.values():
            backend.stop()


@pytest.fixture(scope="module")
def proxyless(
    tmp_path_factory: pytest.TempPathFactory, backends: dict[str, EchoBackend]
) -> Iterator[ProxylessMesh]:
    mesh = ProxylessMesh(tmp_path_factory.mktemp("proxyless"), backends)
    try:
        yield mesh.start()
    finally:
        mesh.stop()


@pytest.fixture
def client(proxyless: ProxylessMesh) -> XdsClient:
    assert proxyless.client is not None
    return proxyless.client
