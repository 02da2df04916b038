"""``pilot serve --kube`` end to end: changes made through the fake Kubernetes API server reach a real Envoy.

No real API server runs here, so the cluster is tests/support/kube_api.py's FakeKubeApi, served from a
thread (KubeApiThread). pilot runs as the real command line, ``pilot serve --kube --kubeconfig F``, as a
subprocess, and reads the fake through the real ``kubernetes`` client, as it would read a cluster. Envoy
is a real sidecar of that pilot; the pods are two real backends.

The cluster: Service ``reviews`` (namespace default, port N named ``http``, a named targetPort), pods
``reviews-v1-x`` and ``reviews-v2-x`` (labels ``version: v1``/``v2``), and one EndpointSlice per pod. Both
backends listen on 127.0.0.1, so both "pods" have that address, each with its own port; a slice's ports
apply to all its endpoints, hence one slice per pod, as the EndpointSlice controller does for pods whose
named targetPort resolves to different numbers. pilot keeps two pods at one address as two endpoints
(pilot/config/kube_core.py). Istio's DestinationRule subsets v1/v2 select them by label.

Port N is a free port rather than 9080: the sidecar's listener ``0.0.0.0_N`` binds the Service port itself.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pilot.localmesh.backend import Backend
from tests.support import EnvoyProcess, HttpClient, PilotProcess, failure_logs, free_port
from tests.support.kube_api import (
    FakeKubeApi,
    KubeApiThread,
    endpoint_slice,
    pod,
    service,
    virtual_service,
    write_kubeconfig,
)
from tests.support.mesh import outcome, start_backends, stop_backends, tally, wait_routed

pytestmark = pytest.mark.e2e

NODE = "sidecar~127.0.0.1~client.default~default.svc.cluster.local"
TOKEN = "e2e-token"


def destination_rule() -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "DestinationRule",
        "metadata": {"name": "reviews", "namespace": "default"},
        "spec": {
            "host": "reviews",
            "subsets": [
                {"name": "v1", "labels": {"version": "v1"}},
                {"name": "v2", "labels": {"version": "v2"}},
            ],
        },
    }


def reviews_slice(version: str, port: int) -> dict[str, Any]:
    return endpoint_slice(
        f"reviews-{version}",
        "reviews",
        endpoints=[("127.0.0.1", f"reviews-{version}-x", True)],
        ports=[("http", port)],
    )


@dataclass
class KubeMesh:
    kube: KubeApiThread
    pilot: PilotProcess
    envoy: EnvoyProcess
    backends: dict[str, Backend]
    port: int  # the Service port, and the sidecar's listener

    @property
    def api(self) -> FakeKubeApi:
        return self.kube.api

    def apply(self, obj: dict[str, Any]) -> None:
        self.kube.call(self.api.apply, obj)

    def client(self) -> HttpClient:
        return HttpClient(self.port, authority="reviews", timeout=5.0)


@pytest.fixture
def kube_mesh(tmp_path: Path) -> Iterator[KubeMesh]:
    backends = start_backends(("v1", "v2"))
    kube = KubeApiThread(FakeKubeApi(token=TOKEN))
    pilot: PilotProcess | None = None
    envoy: EnvoyProcess | None = None
    try:
        kube.start()
        port = free_port()
        kube.call(
            kube.api.apply,
            service(
                "reviews",
                cluster_ip="10.96.0.10",
                ports=[{"name": "http", "port": port, "targetPort": "http"}],
            ),
        )
        for version, backend in backends.items():
            labels = {"app": "reviews", "version": version}
            kube.call(kube.api.apply, pod(f"reviews-{version}-x", ip="127.0.0.1", labels=labels))
            kube.call(kube.api.apply, reviews_slice(version, backend.port))
        kube.call(kube.api.apply, destination_rule())
        kube.call(kube.api.apply, virtual_service("reviews", subset="v1"))

        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", kube.api.url, token=TOKEN)
        (tmp_path / "config").mkdir()  # PilotProcess always passes --config-dir: an empty folder
        pilot = PilotProcess(
            tmp_path / "config",
            tmp_path / "pilot.log",
            extra_args=("--kube", "--kubeconfig", str(kubeconfig), "--pilot-namespace", "pilot-system"),
        )
        failure_logs.watch(pilot)
        pilot.start()  # /ready: every watch listed, first push built, xDS serving
        envoy = EnvoyProcess(NODE, pilot.xds_port, tmp_path, name="envoy-client")
        failure_logs.watch(envoy)
        envoy.start()
        envoy.wait_listener(f"0.0.0.0_{port}", timeout=20.0)
        yield KubeMesh(kube, pilot, envoy, backends, port)
    finally:
        try:
            if envoy is not None:
                envoy.stop()
            if pilot is not None:
                pilot.stop()
        finally:
            if envoy is not None:
                failure_logs.unwatch(envoy)
            if pilot is not None:
                failure_logs.unwatch(pilot)
            kube.stop()
            stop_backends(backends)


def kube_watch_status(mesh: KubeMesh) -> dict[str, Any] | None:
    """The KubeSource's ``status()`` from pilot's /debug/sourcez; None when no KubeSource is listed."""
    reply = mesh.pilot.http_get("/debug/sourcez")
    assert reply.status == 200, reply.text
    for source in reply.json().get("sources", []):
        if source.get("kind") == "KubeSource":
            status: dict[str, Any] = source["status"]
            return status
    return None


def test_kube_changes_reach_a_real_envoy(kube_mesh: KubeMesh, capsys: pytest.CaptureFixture[str]) -> None:
    mesh = kube_mesh
    api = mesh.api
    timings: list[str] = []
    with mesh.client() as client:
        # 1. The VirtualService read from the API server: everything to the v1 pod.
        wait_routed(client, lambda r: r.version == "v1", consecutive=30, message="all on v1")
        assert tally(client, 40) == {"v1": 40}

        # 2. MODIFIED VirtualService (100% v2), through the fake's watch.
        written = time.monotonic()
        mesh.apply(virtual_service("reviews", subset="v2"))
        seconds = wait_routed(
            client,
            lambda r: r.version == "v2",
            consecutive=30,
            since=written,
            message="all on v2 after the VirtualService change",
        )
        timings.append(f"VirtualService v1 -> v2: all on v2 {seconds:.3f}s after the API write")
        assert seconds < 5.0

        # 3. The v2 pod's EndpointSlice is deleted: subset v2 has no endpoints. Istio does not fall over
        #    to another subset: Envoy answers 503 (no healthy upstream), and v1 gets nothing.
        written = time.monotonic()
        assert mesh.kube.call(api.delete, "EndpointSlice", "default", "reviews-v2")
        seconds = wait_routed(
            client,
            lambda r: r.status == 503,
            consecutive=20,
            since=written,
            message="503 once subset v2 has no endpoints",
        )
        timings.append(f"EndpointSlice reviews-v2 deleted: 503s {seconds:.3f}s after the API delete")
        assert tally(client, 20) == {"status 503": 20}

        # 4. Scaled back up: a new slice with the v2 pod (ADDED) brings v2 back.
        written = time.monotonic()
        mesh.apply(reviews_slice("v2", mesh.backends["v2"].port))
        seconds = wait_routed(
            client,
            lambda r: r.version == "v2",
            consecutive=30,
            since=written,
            message="v2 again after the slice is re-created",
        )
        timings.append(f"EndpointSlice reviews-v2 re-created: all on v2 {seconds:.3f}s after the API write")

        # 5. Every watch connection is cut mid-stream, and the VirtualService changes while they are
        #    down: pilot reconnects from its last resourceVersion (no relist) and the change arrives.
        lists_before = mesh.kube.call(lambda: len(api.list_requests("virtualservices")))
        watches_before = mesh.kube.call(lambda: len(api.watch_requests("virtualservices")))
        dropped = mesh.kube.call(api.drop_watches)
        assert dropped >= 8, dropped  # 4 Istio kinds, Services, EndpointSlices, Pods, the ConfigMap
        written = time.monotonic()
        mesh.apply(virtual_service("reviews", subset="v1"))
        seconds = wait_routed(
            client,
            lambda r: r.version == "v1",
            consecutive=30,
            since=written,
            message="all on v1 after the watches were cut",
        )
        timings.append(f"watches cut, VirtualService v2 -> v1: all on v1 {seconds:.3f}s after the API write")
        assert mesh.kube.call(lambda: len(api.watch_requests("virtualservices"))) > watches_before
        assert mesh.kube.call(lambda: len(api.list_requests("virtualservices"))) == lists_before
        assert {outcome(client.get("/")) for _ in range(10)} == {"v1"}

    status = kube_watch_status(mesh)
    assert status is not None, "pilot serves no KubeSource status on /debug/sourcez"
    watch = next(w for w in status["watches"] if w["resource"].startswith("virtualservices."))
    assert watch["watches"] >= 2 and watch["lists"] == 1 and watch["errors"] >= 1, watch
    assert mesh.pilot.http_get("/ready").status == 200
    assert mesh.envoy.rejected_updates() == {}, mesh.envoy.log_tail(30)
    with capsys.disabled():
        print("\n[e2e kube] " + "\n[e2e kube] ".join(timings))
