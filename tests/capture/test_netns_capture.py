"""Capture for real: ``pilot iptables --apply`` in two pods' network namespaces, then traffic.

Pod ``client`` runs a plain HTTP client and a sidecar stand-in on 15001 (uid 1337); pod ``server``
runs the app on 8080 and 15021 and a sidecar stand-in on 15006 (uid 1337) that connects to the app
from 127.0.0.6, as Envoy's InboundPassthroughCluster does. Both pods get the rules a sidecar pod gets
(``pilot iptables`` defaults: Istio's injected istio-init arguments). The stand-ins print the
original destination they recover with SO_ORIGINAL_DST; the app answers with the peer it saw.
Skipped, with the reason, where the machine cannot make network namespaces (tests.support.netns).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support import netns

PROGRAMS = Path(__file__).parent / "pod_programs"
PROXY_UID = netns.PROXY_UID
APP_PORT = 8080
HEALTH_PORT = 15021  # among the inbound ports -d excludes by default
READY_TIMEOUT = 5.0


@dataclass(frozen=True)
class CaptureMesh:
    mesh: netns.Mesh
    client: netns.Pod
    server: netns.Pod
    outbound_sidecar: netns.PodProcess  # in client, on 15001
    inbound_sidecar: netns.PodProcess  # in server, on 15006

    def get(self, pod: netns.Pod, host: str, port: int, uid: int | None = None) -> dict[str, str]:
        """One plain HTTP GET from ``pod``: the app's JSON answer (app, peer, reached) and the client's
        own address (local)."""
        client = netns.python_program(PROGRAMS / "http_client.py", uid)
        done = self.mesh.run(pod, [*client, host, str(port)], uid)
        assert done.returncode == 0, done.stderr
        result = json.loads(done.stdout)
        assert result["status"] == 200, result
        return {"local": result["local"], **json.loads(result["body"])}


def original_dst(address: str, port: int) -> str:
    return f"original_dst={address}:{port}"


@pytest.fixture(scope="module")
def capture_mesh() -> Iterator[CaptureMesh]:
    reason = netns.unavailable()
    if reason is not None:
        pytest.skip(reason)
    with netns.mesh("client", "server") as mesh:
        client, server = mesh.pods["client"], mesh.pods["server"]
        for pod in (client, server):
            applied = mesh.run(pod, [sys.executable, "-m", "pilot", "iptables", "--apply"])
            assert applied.returncode == 0, applied.stderr
        relay = netns.python_program(PROGRAMS / "original_dst_relay.py", PROXY_UID)
        started = [
            mesh.spawn(server, [*netns.python_program(PROGRAMS / "http_app.py"), "server", str(APP_PORT),
                                str(HEALTH_PORT)]),
            mesh.spawn(client, [*relay, "15001"], uid=PROXY_UID),
            mesh.spawn(server, [*relay, "15006", "127.0.0.6"], uid=PROXY_UID),
        ]
        for process in started:
            process.log.wait_for(lambda line: line == "listening", READY_TIMEOUT)
        yield CaptureMesh(mesh, client, server, outbound_sidecar=started[1], inbound_sidecar=started[2])


def test_the_rules_are_in_the_pods_namespace(capture_mesh: CaptureMesh):
    for pod in (capture_mesh.client, capture_mesh.server):
        saved = capture_mesh.mesh.run(pod, ["iptables-save", "-t", "nat"]).stdout
        assert "-A OUTPUT -j ISTIO_OUTPUT" in saved
        assert "-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001" in saved
    outer = netns.Pod("outer", capture_mesh.mesh.outer, "")
    assert "ISTIO" not in capture_mesh.mesh.run(outer, ["iptables-save", "-t", "nat"]).stdout


def test_an_apps_connection_is_captured_on_15001_and_delivered_through_15006(capture_mesh: CaptureMesh):
    server = capture_mesh.server
    answer = capture_mesh.get(capture_mesh.client, server.address, APP_PORT)

    # Outbound: the client's own connection (its address and port) reached 15001, which recovered
    # where it was going. The stand-in's onward connection, as uid 1337, was not captured again: had
    # it been, it would have looped back into 15001 and no answer would have come.
    accepted = capture_mesh.outbound_sidecar.log.wait_for(lambda line: f"peer={answer['local']} " in line)
    assert accepted.endswith(original_dst(server.address, APP_PORT))
    # Inbound: the server pod redirected that connection to 15006, and the app was reached from
    # 127.0.0.6 (the InboundPassthroughCluster source that ISTIO_OUTPUT lets through).
    inbound = original_dst(server.address, APP_PORT)
    capture_mesh.inbound_sidecar.log.wait_for(lambda line: line.endswith(inbound))
    assert answer["app"] == "server"
    assert answer["reached"] == f"{server.address}:{APP_PORT}"
    assert answer["peer"].startswith("127.0.0.6:")
    assert answer["local"].startswith(f"{capture_mesh.client.address}:")


def test_the_proxy_uids_own_connections_are_not_captured(capture_mesh: CaptureMesh):
    answer = capture_mesh.get(capture_mesh.client, capture_mesh.server.address, APP_PORT, uid=PROXY_UID)
    assert answer["app"] == "server"
    # The stand-in logs before it connects onward and the answer came back through the server's
    # sidecar, so a capture on the client side would be logged by now.
    assert capture_mesh.outbound_sidecar.log.matching(lambda line: f"peer={answer['local']} " in line) == []


def test_an_excluded_inbound_port_reaches_the_app_directly(capture_mesh: CaptureMesh):
    # As uid 1337 so the client pod does not capture it either: the app sees the client itself.
    answer = capture_mesh.get(capture_mesh.client, capture_mesh.server.address, HEALTH_PORT, uid=PROXY_UID)
    assert answer["peer"] == answer["local"]
    assert answer["reached"] == f"{capture_mesh.server.address}:{HEALTH_PORT}"
    assert answer["local"].startswith(f"{capture_mesh.client.address}:")
    assert capture_mesh.inbound_sidecar.log.matching(lambda line: f":{HEALTH_PORT}" in line) == []


def test_an_apps_loopback_traffic_is_not_captured(capture_mesh: CaptureMesh):
    answer = capture_mesh.get(capture_mesh.server, "127.0.0.1", APP_PORT)
    assert answer["peer"] == answer["local"]
    assert answer["reached"] == f"127.0.0.1:{APP_PORT}"
    assert capture_mesh.inbound_sidecar.log.matching(lambda line: "original_dst=127." in line) == []
