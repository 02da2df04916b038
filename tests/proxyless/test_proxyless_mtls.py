"""mTLS between proxyless gRPC applications with no Envoy: certificates from pilot's CA through
``pilot agent --proxyless``, TLS settings from pilot through xDS credentials (gRFC A29).

One pilot with its CA and secure port; two agents in proxyless mode, each writing its workload's
certificate files and gRPC bootstrap (``certificate_providers`` over those files, xDS through the
agent's socket to the secure port with the workload's token): ``details`` (service account
``details``, labelled ``security.istio.io/tlsMode: istio``, so its server listener requires mTLS
as Istio's grpcgen builds it) and ``client`` (service account ``client``). The DestinationRule
says ISTIO_MUTUAL. The server answers ``/pilot.test.Echo/Peer`` with the caller's certificate URI
SANs. gRPC's xDS client speaks state of the world only, so this runs over SotW.

AuthorizationPolicy on the same server (gRFC A41, RBAC on xDS-enabled servers): a third workload,
``other`` (service account ``other``), dials it too; policies select the server by its principal
and method, and the calls they refuse end in PERMISSION_DENIED. grpcio 1.85 enforces the RBAC
filter with no environment flag (``GRPC_XDS_EXPERIMENTAL_RBAC`` is gone; none is set here).
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
from pilot.localmesh.polling import Timeout, wait_until
from tests.proxyless.conftest import REPO, XdsClient, meta
from tests.proxyless.echo import METHOD, PEER_METHOD

pytestmark = pytest.mark.e2e

DETAILS = "details.default.svc.cluster.local"
TARGET = f"{DETAILS}:9080"
CLIENT_ID = "spiffe://cluster.local/ns/default/sa/client"
OTHER_ID = "spiffe://cluster.local/ns/default/sa/other"
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


# -- AuthorizationPolicy --------------------------------------------------------------------------


def authorization_policy(name: str, action: str, *rules: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "security.istio.io/v1",
        "kind": "AuthorizationPolicy",
        "metadata": meta(name),
        "spec": {"selector": {"matchLabels": {TLS_MODE: "istio"}}, "action": action, "rules": list(rules)},
    }


def allow_from(account: str) -> dict[str, Any]:
    return authorization_policy(
        "allow-one",
        "ALLOW",
        {"from": [{"source": {"principals": [f"cluster.local/ns/default/sa/{account}"]}}]},
    )


DENIED = "PERMISSION_DENIED"
# ``/pilot.test.Echo/Who`` as a path template: gRPC takes the expression Envoy compiles it to.
DENY_WHO = authorization_policy("deny-who", "DENY", {"to": [{"operation": {"paths": ["/{*}/Who"]}}]})


@pytest.fixture(scope="module")
def other(mesh: MtlsMesh) -> Iterator[XdsClient]:
    """A second client workload, ``other``, started only for the authorization tests."""
    agent = mesh.agent("other", "127.0.0.3")
    mesh.started.append(agent)
    env = agent.wait()
    started = XdsClient(agent.workdir, mesh.pilot.xds_port, env, target=TARGET)
    mesh.started.append(started)
    return started


Seen = dict[tuple[str, str], str]


def outcomes(clients: dict[str, XdsClient], methods: tuple[str, ...] = (PEER_METHOD, METHOD)) -> Seen:
    """For every named client and method, the one outcome of 3 mTLS calls (``mixed`` if they differ)."""
    seen: Seen = {}
    for name, each in clients.items():
        for method in methods:
            got = each.call(3, method=method, credentials="xds").outcomes
            seen[name, method] = next(iter(got)) if len(got) == 1 else f"mixed {dict(got)}"
    return seen


def until_seen(clients: dict[str, XdsClient], expected: Seen, message: str) -> None:
    """Poll every client and method until all end as ``expected`` at once: a policy edit reaches
    the server's listener some time after the file is written, and the state before it may answer
    some of the calls the same way."""
    last: list[Seen] = []

    def matches() -> bool:
        last[:] = [outcomes(clients)]
        return last[0] == expected

    try:
        wait_until(matches, 20, 0.1, message)
    except Timeout as err:
        raise AssertionError(f"{message}: last seen {last}") from err


ALL_ALLOWED: Seen = {
    ("client", PEER_METHOD): CLIENT_ID,
    ("client", METHOD): "details",
    ("other", PEER_METHOD): OTHER_ID,
    ("other", METHOD): "details",
}


@pytest.fixture
def both(mesh: MtlsMesh, client: XdsClient, other: XdsClient) -> Iterator[dict[str, XdsClient]]:
    """Both clients, every call allowed before and after; the test's ``authz.yaml`` is removed
    afterwards, also on failure."""
    assert "GRPC_XDS_EXPERIMENTAL_RBAC" not in os.environ  # grpcio 1.85 enforces RBAC without it
    clients = {"client": client, "other": other}
    until_seen(clients, ALL_ALLOWED, "every call allowed without policies")
    try:
        yield clients
    finally:
        (mesh.root / "config" / "authz.yaml").unlink(missing_ok=True)
    until_seen(clients, ALL_ALLOWED, "every call allowed once the policies are removed")


def test_an_allow_for_one_principal_denies_the_other(mesh: MtlsMesh, both: dict[str, XdsClient]) -> None:
    mesh.write("authz.yaml", allow_from("client"))
    only_client = {**ALL_ALLOWED, ("other", PEER_METHOD): DENIED, ("other", METHOD): DENIED}
    until_seen(both, only_client, "the ALLOW for the client refusing the other workload")
    # The edit takes effect: now only the other workload is allowed.
    mesh.write("authz.yaml", allow_from("other"))
    only_other = {**ALL_ALLOWED, ("client", PEER_METHOD): DENIED, ("client", METHOD): DENIED}
    until_seen(both, only_other, "the ALLOW moved to the other workload refusing the client")


def test_a_deny_on_a_method_wins_over_the_allow(mesh: MtlsMesh, both: dict[str, XdsClient]) -> None:
    mesh.write("authz.yaml", allow_from("client"), DENY_WHO)
    expected = {
        ("client", PEER_METHOD): CLIENT_ID,
        ("client", METHOD): DENIED,  # allowed as the client, denied as the method
        ("other", PEER_METHOD): DENIED,
        ("other", METHOD): DENIED,
    }
    until_seen(both, expected, "the DENY on Who refusing the allowed client")
    log = mesh.pilot.log_path.read_text(errors="replace")
    assert "NACK" not in log, mesh.pilot.log_tail(20)
