"""pilot's REDIRECT sidecar config on real Envoys in a network-namespace mesh.

Pods ``client``, ``reviews-v1`` and ``reviews-v2`` each get a sidecar pod's capture rules (``pilot
iptables``) and an Envoy (uid 1337) running, statically, exactly what pilot translates for it: the
client's view is a REDIRECT sidecar; the reviews pods' views also carry their ServiceTarget (reviews
9080 → the app's 8080). The client app's plain HTTP GET to the ServiceEntry address is captured on
15001, routed by the VirtualService (all to v2), and arrives at the v2 pod, whose capture sends it to
15006: ``virtualInbound``'s chain ``0.0.0.0_8080`` hands it to ``inbound|8080||``, which reaches the
app from 127.0.0.6. Pod ``strict`` is a client under mesh ``outboundTrafficPolicy`` REGISTRY_ONLY.
Each Envoy's admin (127.0.0.1:15000 in its pod) gives the counters that say which
listener and chain carried a request.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from google.protobuf import json_format

from pilot.translate.proxy import InterceptionMode
from pilot.translate.snapshot import generate_messages
from pilot.translate.targets import ServiceTarget
from tests import factories as f
from tests.capture.test_netns_capture import envoy_binary
from tests.support import netns
from tests.translate.golden import static_bootstrap

APP_PORT = 8080
SERVICE_PORT = 9080
UNDECLARED_PORT = 9090  # no service has it
VIP = "10.96.0.10"  # the ServiceEntry's address: nothing in the mesh has it, only capture reaches it
HOST = "reviews.default.svc.cluster.local"
ADMIN_PORT = 15000
READY_TIMEOUT = 5.0
ENVOY_READY_TIMEOUT = 20.0
MAX_ARGUMENT = 120_000  # Linux refuses one command-line argument over 128 KiB


def specs(v1: str, v2: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(kind, name, spec) of the mesh's config: reviews at the two pods, a VirtualService sending all
    of it to v2."""
    reviews = {
        "hosts": [HOST],
        "addresses": [VIP],
        "location": "MESH_INTERNAL",
        "resolution": "STATIC",
        "ports": [{"number": SERVICE_PORT, "name": "http", "protocol": "HTTP", "targetPort": APP_PORT}],
        "endpoints": [
            {"address": v1, "labels": {"version": "v1"}},
            {"address": v2, "labels": {"version": "v2"}},
        ],
    }
    subsets = [{"name": "v1", "labels": {"version": "v1"}}, {"name": "v2", "labels": {"version": "v2"}}]
    route = {
        "hosts": ["reviews"],
        "http": [{"route": [{"destination": {"host": "reviews", "subset": "v2"}}]}],
    }
    return [
        ("ServiceEntry", "reviews", reviews),
        ("DestinationRule", "reviews", {"host": "reviews", "subsets": subsets}),
        ("VirtualService", "reviews", route),
    ]


def config(v1: str, v2: str) -> tuple:
    return tuple(f.config(kind, name, spec) for kind, name, spec in specs(v1, v2))


def config_yaml(v1: str, v2: str) -> str:
    """The same config as a folder file for ``pilot serve``."""
    documents = [
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": kind,
            "metadata": {"name": name, "namespace": "default"},
            "spec": spec,
        }
        for kind, name, spec in specs(v1, v2)
    ]
    return yaml.safe_dump_all(documents)


def envoy_config(view, objects) -> str:
    """pilot's translation for ``view`` as one static bootstrap, with an admin on loopback."""
    bootstrap = static_bootstrap(generate_messages(view, f.push_context(*objects)))
    bootstrap.admin.address.socket_address.address = "127.0.0.1"
    bootstrap.admin.address.socket_address.port_value = ADMIN_PORT
    text = json.dumps(json_format.MessageToDict(bootstrap))
    assert len(text) < MAX_ARGUMENT
    return text


@dataclass(frozen=True)
class RedirectMesh:
    mesh: netns.Mesh
    client: netns.Pod
    v1: netns.Pod
    v2: netns.Pod
    strict: netns.Pod  # REGISTRY_ONLY

    def stats(self, pod: netns.Pod) -> dict[str, int]:
        return envoy_stats(self.mesh, pod)


def envoy_stats(mesh: netns.Mesh, pod: netns.Pod) -> dict[str, int]:
    """The counters of the Envoy in ``pod`` (read as root: loopback is never captured); empty while
    its admin does not answer."""
    read = "import urllib.request as u; print(u.urlopen('http://127.0.0.1:%d/stats').read().decode())"
    done = mesh.run(pod, [sys.executable, "-c", read % ADMIN_PORT])
    out = {}
    for line in done.stdout.splitlines() if done.returncode == 0 else ():
        name, _, value = line.partition(": ")
        if value.isdigit():
            out[name] = int(value)
    return out


@pytest.fixture(scope="module")
def redirect_mesh() -> Iterator[RedirectMesh]:
    reason = netns.unavailable()
    if reason is not None:
        pytest.skip(reason)
    envoy = envoy_binary()
    if envoy is None or not netns.runnable_by_anyone(envoy):
        pytest.skip(f"no envoy binary that uid {netns.PROXY_UID} may run (found: {envoy})")
    with netns.mesh("client", "reviews-v1", "reviews-v2", "strict") as mesh:
        client, v1, v2, strict = (
            mesh.pods[name] for name in ("client", "reviews-v1", "reviews-v2", "strict")
        )
        objects = config(v1.address, v2.address)
        registry_only = (*objects, f.mesh_config(outboundTrafficPolicy={"mode": "REGISTRY_ONLY"}))
        client_view = f.sidecar(mode=InterceptionMode.REDIRECT)
        server_view = replace(client_view, targets=(ServiceTarget(HOST, SERVICE_PORT, APP_PORT, "HTTP"),))
        pods = (
            (client, client_view, objects, None),
            (v1, server_view, objects, "v1"),
            (v2, server_view, objects, "v2"),
            (strict, client_view, registry_only, None),
        )
        started = []
        for pod, view, pod_objects, name in pods:
            mesh.install_capture(pod)
            if name is None:
                # The service address is routed out of the pod, as a pod's default route would;
                # capture turns the connection to 15001 before it leaves.
                netns.ip("-n", pod.netns, "route", "add", "default", "via", netns.NODE_ADDRESS)
            else:
                # The app also listens on an undeclared port, which only the passthrough chains serve.
                app = netns.python_program(netns.PROGRAMS / "http_app.py")
                ready = mesh.spawn(pod, [*app, name, str(APP_PORT), str(UNDECLARED_PORT)])
                ready.log.wait_for(lambda line: line == "listening", READY_TIMEOUT)
            argv = [envoy, "--config-yaml", envoy_config(view, pod_objects), "--disable-hot-restart"]
            started.append(mesh.spawn(pod, [*argv, "--log-level", "info"], uid=netns.PROXY_UID))
        for sidecar in started:
            sidecar.log.wait_for(lambda line: "starting workers" in line, ENVOY_READY_TIMEOUT)
        yield RedirectMesh(mesh, client, v1, v2, strict)


def test_a_captured_request_is_routed_and_delivered_through_the_inbound_listener(redirect_mesh: RedirectMesh):
    mesh = redirect_mesh
    answer = mesh.mesh.http_get(mesh.client, VIP, SERVICE_PORT)
    assert answer.status == 200, answer
    body = answer.json()
    assert body["app"] == "v2"  # the VirtualService's route, not the service's two endpoints
    assert body["reached"] == f"{mesh.v2.address}:{APP_PORT}"
    assert body["peer"].startswith("127.0.0.6:")  # inbound|8080|| binds the passthrough source
    client = mesh.stats(mesh.client)
    assert client["cluster.outbound|9080|v2|reviews.default.svc.cluster.local.upstream_rq_completed"] >= 1
    assert (
        client.get("cluster.outbound|9080|v1|reviews.default.svc.cluster.local.upstream_rq_completed", 0) == 0
    )
    server = mesh.stats(mesh.v2)
    assert server["http.inbound_0.0.0.0_8080.downstream_rq_completed"] >= 1
    assert server["cluster.inbound|8080||.upstream_rq_completed"] >= 1
    assert server.get("cluster.InboundPassthroughCluster.upstream_cx_total", 0) == 0


def test_an_unknown_destination_passes_through_both_sidecars(redirect_mesh: RedirectMesh):
    """Port 8080 is no service port: virtualOutbound's catch-all (ALLOW_ANY) passes it through, and
    the v1 pod's inbound chain for its target port delivers it."""
    mesh = redirect_mesh
    before = mesh.stats(mesh.client).get("cluster.PassthroughCluster.upstream_cx_total", 0)
    answer = mesh.mesh.http_get(mesh.client, mesh.v1.address, APP_PORT)
    assert answer.status == 200, answer
    assert answer.json()["app"] == "v1" and answer.json()["peer"].startswith("127.0.0.6:")
    assert mesh.stats(mesh.client)["cluster.PassthroughCluster.upstream_cx_total"] == before + 1
    assert mesh.stats(mesh.v1)["http.inbound_0.0.0.0_8080.downstream_rq_completed"] >= 1


def test_allow_any_passes_an_unknown_host_through_and_the_inbound_passthrough_delivers_it(
    redirect_mesh: RedirectMesh,
):
    """On the HTTP port 9080 a Host no service claims takes the route configuration's last virtual
    host, allow_any (PassthroughCluster); on a port no service declares virtualOutbound's catch-all
    passes it. The v1 pod has no chain for either port: virtualInbound-catchall-http and
    InboundPassthroughCluster deliver what the app listens for."""
    mesh = redirect_mesh
    answer = mesh.mesh.http_get(mesh.client, mesh.v1.address, SERVICE_PORT)
    assert answer.status == 503, answer  # passed on, and refused: nothing listens on 9080 in the v1 pod
    answer = mesh.mesh.http_get(mesh.client, mesh.v1.address, UNDECLARED_PORT)
    assert answer.status == 200, answer
    assert answer.json()["app"] == "v1" and answer.json()["peer"].startswith("127.0.0.6:")
    assert mesh.stats(mesh.v1)["cluster.InboundPassthroughCluster.upstream_rq_completed"] >= 1


def test_registry_only_answers_502_on_an_http_port_and_drops_other_connections(redirect_mesh: RedirectMesh):
    mesh = redirect_mesh
    answer = mesh.mesh.http_get(mesh.strict, mesh.v1.address, SERVICE_PORT)
    assert answer.status == 502, answer  # block_all's direct response
    with pytest.raises(netns.NetnsError):  # virtualOutbound-catchall-tcp → BlackHoleCluster
        mesh.mesh.http_get(mesh.strict, mesh.v1.address, UNDECLARED_PORT)
    assert mesh.stats(mesh.strict)["cluster.BlackHoleCluster.upstream_cx_none_healthy"] >= 1
    # The service itself is still reached.
    answer = mesh.mesh.http_get(mesh.strict, VIP, SERVICE_PORT)
    assert answer.status == 200 and answer.json()["app"] == "v2", answer


XDS_PORT = 15010  # pilot's, in the node's namespace


def test_a_sidecar_configured_by_pilot_over_ads_routes_captured_traffic(
    redirect_mesh: RedirectMesh, tmp_path: Path
):
    """The client side again, with its Envoy configured by ``pilot serve`` (in the node's namespace)
    from node metadata INTERCEPTION_MODE=REDIRECT, as ``pilot bootstrap`` writes it."""
    mesh = redirect_mesh.mesh
    folder = tmp_path / "config"
    folder.mkdir()
    (folder / "reviews.yaml").write_text(config_yaml(redirect_mesh.v1.address, redirect_mesh.v2.address))
    serve = [sys.executable, "-m", "pilot", "serve", "--config-dir", str(folder), "--xds-port", str(XDS_PORT)]
    # Not Mesh.spawn: pilot's worker processes would keep a pipe open; its own session lets the
    # whole group be stopped at the end.
    with (tmp_path / "pilot.log").open("w") as log:
        pilot = subprocess.Popen(
            mesh.node.command([*serve, "--http-port", "0"]),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        served_through_pilot(redirect_mesh, tmp_path)
    finally:
        os.killpg(pilot.pid, signal.SIGKILL)
        pilot.wait(10)


def served_through_pilot(redirect_mesh: RedirectMesh, tmp_path: Path) -> None:
    mesh = redirect_mesh.mesh
    pod = mesh.add_pod("xds-client")
    mesh.install_capture(pod)
    netns.ip("-n", pod.netns, "route", "add", "default", "via", netns.NODE_ADDRESS)
    node_id = f"sidecar~{pod.address}~xds-client.default~default.svc.cluster.local"
    bootstrap = mesh.run(
        mesh.node,
        [sys.executable, "-m", "pilot", "bootstrap", "--node-id", node_id]
        + ["--xds-address", f"{netns.NODE_ADDRESS}:{XDS_PORT}", "--admin-port", str(ADMIN_PORT)]
        + ["--metadata", "INTERCEPTION_MODE=REDIRECT"],
    )
    assert bootstrap.returncode == 0, bootstrap.stderr
    envoy = envoy_binary()
    assert envoy is not None
    argv = [envoy, "--config-yaml", bootstrap.stdout, "--disable-hot-restart", "--log-level", "info"]
    mesh.spawn(pod, argv, uid=netns.PROXY_UID)
    # Configured: the port listener, virtualOutbound and virtualInbound are active (the fixture's
    # Envoys are static; this one retries until pilot is up).
    deadline = time.monotonic() + ENVOY_READY_TIMEOUT
    while envoy_stats(mesh, pod).get("listener_manager.total_listeners_active", 0) < 3:
        assert time.monotonic() < deadline, f"not configured: {envoy_stats(mesh, pod)}"
        time.sleep(0.2)
    answer = mesh.http_get(pod, VIP, SERVICE_PORT)
    assert answer.status == 200, answer
    assert answer.json()["app"] == "v2" and answer.json()["peer"].startswith("127.0.0.6:")
    counters = envoy_stats(mesh, pod)
    assert counters["cluster.outbound|9080|v2|reviews.default.svc.cluster.local.upstream_rq_completed"] == 1
