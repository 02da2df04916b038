"""``pilot agent`` with a real Envoy: SDS ``default``/``ROOTCA`` in a listener and a cluster, ADS
through the agent's proxy to a TLS secure port with the token, and rotation under traffic.

Envoy loops to itself over mTLS: listener ``front`` (plain HTTP) routes to cluster ``mtls-loop``,
whose upstream TLS presents ``default`` and checks the peer against ``ROOTCA`` and the workload's
SPIFFE id; it connects to listener ``mtls``, which requires a client certificate the same way and
answers with the client certificate's serial. One request per connection, so each request is a
new handshake with the certificate Envoy holds at that moment. Certificates live 6 s (renewed at
about 3 s): two rotations take about 6 s of traffic, none of which may fail.
"""

from __future__ import annotations

import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2  # noqa: F401 -- registers the Any type
from envoy.extensions.filters.network.http_connection_manager.v3 import (  # noqa: F401 -- registers the Any type
    http_connection_manager_pb2,
)
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2  # noqa: F401 -- registers the Any type
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2  # noqa: F401 -- registers the Any type
from google.protobuf import json_format

from pilot.ca.identity import ServiceAccount
from tests.agent.fake_pilot import FakePilotThread, pack
from tests.support import find_envoy, free_port, get, wait_until

pytestmark = pytest.mark.e2e

SLEEP = ServiceAccount("default", "sleep")
SPIFFE = "spiffe://cluster.local/ns/default/sa/sleep"
CLUSTER_TYPE = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
LISTENER_TYPE = "type.googleapis.com/envoy.config.listener.v3.Listener"
LIFETIME_SECONDS = 6
ROTATIONS = 2

SDS_CONFIG = {
    # What istiod writes (and pilot's translation): SotW SDS over the bootstrap's sds-grpc cluster.
    "api_config_source": {
        "api_type": "GRPC",
        "transport_api_version": "V3",
        "set_node_on_first_message_only": True,
        "grpc_services": [{"envoy_grpc": {"cluster_name": "sds-grpc"}}],
    },
    "initial_fetch_timeout": "0s",
    "resource_api_version": "V3",
}
COMMON_TLS = {
    "tls_certificate_sds_secret_configs": [{"name": "default", "sds_config": SDS_CONFIG}],
    "combined_validation_context": {
        "default_validation_context": {
            "match_typed_subject_alt_names": [{"san_type": "URI", "matcher": {"exact": SPIFFE}}]
        },
        "validation_context_sds_secret_config": {"name": "ROOTCA", "sds_config": SDS_CONFIG},
    },
}


def _hcm(name: str, route: dict[str, Any], headers: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3"
            ".HttpConnectionManager",
            "stat_prefix": name,
            "route_config": {
                "name": name,
                "virtual_hosts": [
                    {
                        "name": "all",
                        "domains": ["*"],
                        "routes": [{"match": {"prefix": "/"}, **route}],
                        "response_headers_to_add": headers or [],
                    }
                ],
            },
            "http_filters": [
                {
                    "name": "envoy.filters.http.router",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
                    },
                }
            ],
        },
    }


def _address(port: int) -> dict[str, Any]:
    return {"socket_address": {"address": "127.0.0.1", "port_value": port}}


def resources(front_port: int, mtls_port: int) -> dict[str, list[Any]]:
    cluster = {
        "name": "mtls-loop",
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": "mtls-loop",
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": _address(mtls_port)}}]}],
        },
        "transport_socket": {
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                "common_tls_context": COMMON_TLS,
            },
        },
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "common_http_protocol_options": {"max_requests_per_connection": 1},
                "explicit_http_config": {"http_protocol_options": {}},
            }
        },
    }
    front = {
        "name": "front",
        "address": _address(front_port),
        "filter_chains": [{"filters": [_hcm("front", {"route": {"cluster": "mtls-loop"}})]}],
    }
    serial = [{"header": {"key": "x-peer-serial", "value": "%DOWNSTREAM_PEER_SERIAL%"}}]
    peer = [{"header": {"key": "x-peer-uri", "value": "%DOWNSTREAM_PEER_URI_SAN%"}}]
    mtls = {
        "name": "mtls",
        "address": _address(mtls_port),
        "filter_chains": [
            {
                "transport_socket": {
                    "name": "envoy.transport_sockets.tls",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3"
                        ".DownstreamTlsContext",
                        "common_tls_context": COMMON_TLS,
                        "require_client_certificate": True,
                    },
                },
                "filters": [
                    _hcm(
                        "mtls",
                        {"direct_response": {"status": 200, "body": {"inline_string": "ok"}}},
                        serial + peer,
                    )
                ],
            }
        ],
    }
    return {
        CLUSTER_TYPE: [pack(json_format.ParseDict(cluster, cluster_pb2.Cluster()))],
        LISTENER_TYPE: [
            pack(json_format.ParseDict(listener, listener_pb2.Listener())) for listener in (front, mtls)
        ],
    }


class Agent:
    def __init__(self, tmp: Path) -> None:
        self.front_port, self.mtls_port, self.admin_port = free_port(), free_port(), free_port()
        self.pilot_thread = FakePilotThread(tmp / "ca", resources(self.front_port, self.mtls_port))
        pilot = self.pilot_thread.pilot
        self.workdir = tmp / "w"
        (tmp / "root-cert.pem").write_bytes(pilot.root_pem)
        (tmp / "token").write_text(pilot.token(SLEEP))
        self.log_path = tmp / "agent.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 -- closed in stop()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pilot",
                "agent",
                f"--xds-address={pilot.address}",
                f"--root-cert={tmp / 'root-cert.pem'}",
                f"--token-file={tmp / 'token'}",
                "--namespace=default",
                "--service-account=sleep",
                "--interception=NONE",
                "--label=app=sleep",
                f"--envoy={find_envoy()}",
                f"--admin-port={self.admin_port}",
                f"--workdir={self.workdir}",
                f"--secret-ttl={LIFETIME_SECONDS}s",
                "--envoy-arg=--concurrency",
                "--envoy-arg=1",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def admin(self, path: str) -> Any:
        return get(self.admin_port, path).json()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._log.close()
        self.pilot_thread.close()


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Agent]:
    running = Agent(tmp_path_factory.mktemp("agent"))
    try:
        wait_until(
            lambda: running.proc.poll() is None and get(running.front_port, "/").status == 200,
            30,
            0.1,
            "a request through Envoy's mTLS loop",
        )
    except BaseException:
        print(running.log())
        running.stop()
        raise
    try:
        yield running
    finally:
        running.stop()


def certs_serials(agent: Agent) -> set[str]:
    return {
        cert["serial_number"]
        for entry in agent.admin("/certs")["certificates"]
        for cert in entry.get("cert_chain", [])
    }


def test_mtls_with_sds_certificates_and_the_node_through_the_proxy(agent: Agent):
    reply = get(agent.front_port, "/")
    assert reply.status == 200 and reply.headers["x-peer-uri"] == SPIFFE
    pilot = agent.pilot_thread.pilot
    assert pilot.callers and set(pilot.callers) == {SLEEP}  # every ADS stream carried the token
    node = pilot.requests[0].node
    assert node.id.startswith("sidecar~127.0.0.1~") and node.id.endswith(".default~default.svc.cluster.local")
    metadata = json_format.MessageToDict(node.metadata)
    assert metadata["NAMESPACE"] == "default" and metadata["SERVICE_ACCOUNT"] == "sleep"
    assert metadata["LABELS"] == {"app": "sleep"} and metadata["INTERCEPTION_MODE"] == "NONE"
    key = agent.workdir / "etc/certs/key.pem"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600


def test_rotation_under_traffic_without_a_failed_request(agent: Agent):
    failures: list[str] = []
    serials: list[str] = []
    deadline = time.monotonic() + LIFETIME_SECONDS * (ROTATIONS + 2)
    while len(serials) < ROTATIONS + 1 and time.monotonic() < deadline:
        try:
            reply = get(agent.front_port, "/", timeout=2)
        except OSError as err:
            failures.append(repr(err))
            continue
        if reply.status != 200:
            failures.append(f"{reply.status}: {reply.text[:200]}")
            continue
        serial = reply.headers["x-peer-serial"]
        if not serials or serials[-1] != serial:
            serials.append(serial)
        time.sleep(0.02)
    assert not failures, failures[:5]
    assert len(serials) == ROTATIONS + 1, f"serials seen: {serials}\n{agent.log()}"
    # Envoy's /certs holds the newest serial (it lists the hex serial in lower case, no colons).
    assert wait_until(lambda: serials[-1].lower().replace(":", "") in certs_serials(agent), 5, 0.1)
    stats = get(agent.admin_port, "/stats?filter=^sds\\.").text
    assert "update_rejected: 0" in stats and "update_rejected: 1" not in stats, stats


def test_sigterm_stops_envoy_and_exits_zero(agent: Agent):
    agent.proc.send_signal(signal.SIGTERM)
    assert agent.proc.wait(timeout=20) == 0, agent.log()
    with pytest.raises(OSError):
        get(agent.admin_port, "/ready", timeout=1)
