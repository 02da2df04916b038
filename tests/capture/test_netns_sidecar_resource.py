"""The ``Sidecar`` resource on real Envoys in a network-namespace mesh, configured by ``pilot serve``.

Pods ``locked`` (app=locked) and ``open`` (app=open) run REDIRECT sidecars bootstrapped by ``pilot
bootstrap`` and served over ADS by a ``pilot serve`` in the node's namespace, whose config holds one
HTTP service on 9080 and a Sidecar selecting app=locked with ``outboundTrafficPolicy`` REGISTRY_ONLY;
the mesh default stays ALLOW_ANY. Pod ``outside`` runs an app the registry does not know, on 9080 and
on a port no service has, with no sidecar.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.capture.test_netns_capture import envoy_binary
from tests.capture.test_netns_redirect_sidecar import (
    ADMIN_PORT,
    ENVOY_READY_TIMEOUT,
    READY_TIMEOUT,
    SERVICE_PORT,
    UNDECLARED_PORT,
    VIP,
    envoy_stats,
)
from tests.support import netns

CONFIG = [
    {
        "kind": "ServiceEntry",
        "metadata": {"name": "reviews"},
        "spec": {
            "hosts": ["reviews.default.svc.cluster.local"],
            "addresses": [VIP],
            "location": "MESH_INTERNAL",
            "resolution": "STATIC",
            "ports": [{"number": SERVICE_PORT, "name": "http", "protocol": "HTTP"}],
            "endpoints": [{"address": "10.96.1.1"}],
        },
    },
    {
        "kind": "Sidecar",
        "metadata": {"name": "locked"},
        "spec": {
            "workloadSelector": {"labels": {"app": "locked"}},
            "outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"},
        },
    },
]


@dataclass(frozen=True)
class SidecarMesh:
    mesh: netns.Mesh
    locked: netns.Pod
    open: netns.Pod
    outside: netns.Pod


def write_config(folder: Path) -> None:
    documents = [
        {
            "apiVersion": "networking.istio.io/v1",
            **doc,
            "metadata": {**doc["metadata"], "namespace": "default"},
        }
        for doc in CONFIG
    ]
    (folder / "mesh.yaml").write_text(yaml.safe_dump_all(documents))


XDS_PORT = 15010  # pilot's, in the node's namespace


def envoy_or_skip() -> str:
    """The Envoy binary the pods' sidecars run; skips where network namespaces or such a binary are
    not available."""
    reason = netns.unavailable()
    if reason is not None:
        pytest.skip(reason)
    envoy = envoy_binary()
    if envoy is None or not netns.runnable_by_anyone(envoy):
        pytest.skip(f"no envoy binary that uid {netns.PROXY_UID} may run (found: {envoy})")
    return envoy


@contextlib.contextmanager
def pilot_serving(mesh: netns.Mesh, folder: Path, log_path: Path) -> Iterator[None]:
    """``pilot serve`` on ``folder`` in the node's namespace (xDS at NODE_ADDRESS:XDS_PORT), killed
    on exit. Not Mesh.spawn: pilot's worker processes would keep a pipe open; its own session lets
    the whole group be stopped."""
    serve = [sys.executable, "-m", "pilot", "serve", "--config-dir", str(folder), "--xds-port", str(XDS_PORT)]
    with log_path.open("w") as log:
        pilot = subprocess.Popen(
            mesh.node.command([*serve, "--http-port", "0"]),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        yield
    finally:
        os.killpg(pilot.pid, signal.SIGKILL)
        pilot.wait(10)


def start_sidecar(mesh: netns.Mesh, pod: netns.Pod, envoy: str) -> None:
    """Capture rules, a default route out of ``pod``, and an Envoy (uid 1337) that ``pilot
    bootstrap`` points at the node's pilot, REDIRECT, labelled app=POD."""
    mesh.install_capture(pod)
    netns.ip("-n", pod.netns, "route", "add", "default", "via", netns.NODE_ADDRESS)
    node_id = f"sidecar~{pod.address}~{pod.name}.default~default.svc.cluster.local"
    flags = ["--interception", "REDIRECT", "--label", f"app={pod.name}", "--admin-port", str(ADMIN_PORT)]
    bootstrap = mesh.run(
        mesh.node,
        [sys.executable, "-m", "pilot", "bootstrap", "--node-id", node_id]
        + ["--xds-address", f"{netns.NODE_ADDRESS}:{XDS_PORT}", *flags],
    )
    assert bootstrap.returncode == 0, bootstrap.stderr
    argv = [envoy, "--config-yaml", bootstrap.stdout, "--disable-hot-restart", "--log-level", "info"]
    mesh.spawn(pod, argv, uid=netns.PROXY_UID)


def wait_configured(mesh: netns.Mesh, pod: netns.Pod) -> None:
    """The port listener, virtualOutbound and virtualInbound are active."""
    deadline = time.monotonic() + ENVOY_READY_TIMEOUT
    while envoy_stats(mesh, pod).get("listener_manager.total_listeners_active", 0) < 3:
        assert time.monotonic() < deadline, f"{pod.name} not configured: {envoy_stats(mesh, pod)}"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def sidecar_mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SidecarMesh]:
    envoy = envoy_or_skip()
    tmp_path = tmp_path_factory.mktemp("sidecar-resource")
    folder = tmp_path / "config"
    folder.mkdir()
    write_config(folder)
    with netns.mesh("locked", "open", "outside") as mesh:
        locked, opened, outside = (mesh.pods[name] for name in ("locked", "open", "outside"))
        app = netns.python_program(netns.PROGRAMS / "http_app.py")
        ready = mesh.spawn(outside, [*app, "outside", str(SERVICE_PORT), str(UNDECLARED_PORT)])
        ready.log.wait_for(lambda line: line == "listening", READY_TIMEOUT)
        with pilot_serving(mesh, folder, tmp_path / "pilot.log"):
            for pod in (locked, opened):
                start_sidecar(mesh, pod, envoy)
            for pod in (locked, opened):
                wait_configured(mesh, pod)
            yield SidecarMesh(mesh, locked, opened, outside)


def test_a_registry_only_sidecar_blocks_an_unknown_host_that_allow_any_passes(sidecar_mesh: SidecarMesh):
    """The selected pod: the HTTP port's route configuration ends in block_all (a direct 502), and a
    connection to a port no service has goes to BlackHoleCluster. The pod the Sidecar does not select
    keeps the mesh's ALLOW_ANY: the same request reaches the unknown app through PassthroughCluster."""
    mesh, outside = sidecar_mesh.mesh, sidecar_mesh.outside
    blocked = mesh.http_get(sidecar_mesh.locked, outside.address, SERVICE_PORT)
    assert blocked.status == 502, blocked
    with pytest.raises(netns.NetnsError):
        mesh.http_get(sidecar_mesh.locked, outside.address, UNDECLARED_PORT)
    locked = envoy_stats(mesh, sidecar_mesh.locked)
    assert locked["cluster.BlackHoleCluster.upstream_cx_none_healthy"] >= 1
    assert locked.get("cluster.PassthroughCluster.upstream_cx_total", 0) == 0

    passed = mesh.http_get(sidecar_mesh.open, outside.address, SERVICE_PORT)
    assert passed.status == 200, passed
    assert passed.json()["app"] == "outside"
    assert envoy_stats(mesh, sidecar_mesh.open)["cluster.PassthroughCluster.upstream_rq_completed"] >= 1
