"""mTLS between proxyless gRPC applications with no Envoy: certificates from pilot's CA through
``pilot agent --proxyless``, TLS settings from pilot through xDS credentials (gRFC A29).

One pilot with its CA and secure port; two agents in proxyless mode, each writing its workload's
certificate files and gRPC bootstrap (``certificate_providers`` over those files, xDS through the
agent's socket to the secure port with the workload's token): ``details`` (service account
``details``, labelled ``security.istio.io/tlsMode: istio``, so its server listener requires mTLS
as Istio's grpcgen builds it) and ``client`` (service account ``client``). The DestinationRule
says ISTIO_MUTUAL. The server answers ``/pilot.test.Echo/Peer`` with the caller's certificate URI
SANs. gRPC's xDS client speaks state of the world only, so this runs over SotW.
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pilot.ca.identity import ServiceAccount
from pilot.ca.tokens import issue_token, load_or_create_signing_key
from pilot.localmesh.control_plane import PilotProcess
from pilot.localmesh.loopback import free_port
from pilot.localmesh.polling import wait_until
from tests.proxyless.conftest import REPO, XdsClient, meta
from tests.proxyless.echo import PEER_METHOD

pytestmark = pytest.mark.e2e

DETAILS = "details.default.svc.cluster.local"
TARGET = f"{DETAILS}:9080"
CLIENT_ID = "spiffe://cluster.local/ns/default/sa/client"
TLS_MODE = "security.istio.io/tlsMode"


def details(port: int, service_account: str = "details") -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "ServiceEntry",
        "metadata": meta("details"),
        "spec": {
            "hosts": [DETAILS],
            "location": "MESH_INTERNAL",
            "resolution": "STATIC",
            "ports": [{"number": 9080, "name": "grpc", "protocol": "GRPC"}],
            "endpoints": [
                {"address": "127.0.0.1", "ports": {"grpc": port}, "serviceAccount": service_account}
            ],
        },
    }


ISTIO_MUTUAL = {
    "apiVersion": "networking.istio.io/v1",
    "kind": "DestinationRule",
    "metadata": meta("details"),
    "spec": {"host": DETAILS, "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}}},
}


class ProxylessAgent:
    """``pilot agent --proxyless`` for one workload; ``env`` names the bootstrap it writes."""

    def __init__(self, root: Path, pilot: PilotProcess, tls_port: int, account: str, ip: str, *labels: str):
        self.workdir = root / f"{account}-agent"
        token = root / f"{account}.token"
        key = load_or_create_signing_key(pilot.config_dir.parent / "ca")
        token.write_text(issue_token(key, ServiceAccount("default", account), datetime.timedelta(hours=1)))
        argv = [sys.executable, "-m", "pilot", "agent", "--proxyless", "--workdir", str(self.workdir)]
        argv += ["--xds-address", f"127.0.0.1:{tls_port}", "--root-cert", str(root / "ca/root-cert.pem")]
        argv += ["--token-file", str(token), "--namespace", "default", "--service-account", account]
        argv += ["--ip", ip, "--node-id", f"sidecar~{ip}~{account}-1.default~default.svc.cluster.local"]
        argv += [f"--label={label}" for label in labels]
        self.log = root / f"{account}-agent.log"
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=REPO)
        self.bootstrap = self.workdir / "etc/istio/proxy/grpc-bootstrap.json"

    def wait(self) -> dict[str, str]:
        def written() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"agent exited {self.proc.returncode}:\n{self.log.read_text()[-2000:]}")
            return self.bootstrap.exists()

        wait_until(written, 30, 0.05, f"{self.bootstrap}")
        return {**os.environ, "GRPC_XDS_BOOTSTRAP": str(self.bootstrap), "GRPC_VERBOSITY": "ERROR"}

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


class MtlsMesh:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.tls_port = free_port()
        (root / "config").mkdir()
        self.pilot = PilotProcess(
            root / "config",
            root / "pilot.log",
            extra_args=("--ca-dir", str(root / "ca"), "--xds-tls-port", str(self.tls_port)),
        )
        self.started: list[ProxylessAgent | subprocess.Popen[bytes] | XdsClient] = []
        self.client: XdsClient | None = None

    def write(self, name: str, *docs: dict[str, Any]) -> None:
        text = "".join(json.dumps(doc) + "\n---\n" for doc in docs)
        tmp = self.root / "config" / f".{name}.tmp"
        tmp.write_text(text)
        tmp.replace(self.root / "config" / name)

    def agent(self, account: str, ip: str, *labels: str) -> ProxylessAgent:
        return ProxylessAgent(self.root, self.pilot, self.tls_port, account, ip, *labels)

    def start(self) -> MtlsMesh:
        self.write("details.yaml", details(self.port), ISTIO_MUTUAL)
        self.pilot.start()
        server_agent = ProxylessAgent(
            self.root, self.pilot, self.tls_port, "details", "127.0.0.1", f"{TLS_MODE}=istio"
        )
        client_agent = ProxylessAgent(self.root, self.pilot, self.tls_port, "client", "127.0.0.2")
        self.started += [server_agent, client_agent]
        server = subprocess.Popen(
            [sys.executable, "-m", "tests.proxyless.xds_server", "details", str(self.port)],
            stdin=subprocess.PIPE,
            env=server_agent.wait(),
            cwd=REPO,
        )
        self.started.append(server)
        self.client = XdsClient(self.root, self.pilot.xds_port, client_agent.wait(), target=TARGET)
        self.started.append(self.client)
        return self

    def stop(self) -> None:
        for started in reversed(self.started):
            if isinstance(started, subprocess.Popen):
                assert started.stdin is not None
                started.stdin.close()
                try:
                    started.wait(10)
                except subprocess.TimeoutExpired:
                    started.kill()
                    started.wait(5)
            else:
                started.stop()
        self.pilot.stop()


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MtlsMesh]:
    built = MtlsMesh(tmp_path_factory.mktemp("mtls"))
    try:
        yield built.start()
    finally:
        built.stop()


@pytest.fixture
def client(mesh: MtlsMesh) -> XdsClient:
    assert mesh.client is not None
    return mesh.client


def peer(client: XdsClient, credentials: str, calls: int = 3) -> dict[str, int]:
    return dict(client.call(calls, method=PEER_METHOD, credentials=credentials).outcomes)


def until_mtls_calls(client: XdsClient, outcome: str, message: str, timeout: float = 15) -> None:
    """Batches of 3 calls with xDS credentials until all 3 end in ``outcome``."""
    client.wait_for(
        lambda r: r.outcomes == {outcome: 3},
        calls=3,
        method=PEER_METHOD,
        credentials="xds",
        timeout=timeout,
        message=message,
    )


def test_mtls_call_carries_the_clients_spiffe_id(mesh: MtlsMesh, client: XdsClient) -> None:
    until_mtls_calls(client, CLIENT_ID, "mTLS calls the server sees from the client's SPIFFE id", 30)
    assert peer(client, "xds") == {CLIENT_ID: 3}
    log = mesh.pilot.log_path.read_text(errors="replace")
    assert "NACK" not in log, mesh.pilot.log_tail(20)
    # Both applications' streams come through their agents to the secure port, authenticated as
    # their service accounts, and hold what they were sent.
    rows = mesh.pilot.debug_json("/debug/syncz")
    assert {row["identity"] for row in rows} == {"default/details", "default/client"}, rows
    for row in rows:
        for held in (row["lds"], row["cds"]):
            assert held["nonce_acked"] == held["nonce_sent"] and held["last_nack"] is None, row


def test_a_client_without_certificates_is_refused(mesh: MtlsMesh, client: XdsClient) -> None:
    """A channel without xDS credentials ignores the cluster's TLS and speaks plain text: the
    server's mTLS listener refuses it."""
    client.wait_for(
        lambda r: r.outcomes == {CLIENT_ID: 1}, calls=1, target=TARGET, method=PEER_METHOD, credentials="xds"
    )
    assert peer(client, "insecure") == {"UNAVAILABLE": 3}


def test_a_server_with_another_identity_is_refused(mesh: MtlsMesh, client: XdsClient) -> None:
    """The client checks the server's certificate against the destination's service accounts: an
    endpoint said to run as another account fails the handshake (fails closed), until it is fixed."""
    mesh.write("details.yaml", details(mesh.port, "someone-else"), ISTIO_MUTUAL)
    try:
        until_mtls_calls(client, "UNAVAILABLE", "the SAN check refusing the server")
    finally:
        mesh.write("details.yaml", details(mesh.port), ISTIO_MUTUAL)
    until_mtls_calls(client, CLIENT_ID, "mTLS calls again with the right service account")
