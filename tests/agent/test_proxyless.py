"""``pilot agent --proxyless``: no Envoy; the certificate files, kept current, and the gRPC
bootstrap naming them and the agent's xDS socket (the e2e with real grpcio processes is
tests/proxyless/test_proxyless_mtls.py)."""

from __future__ import annotations

import json
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509

from pilot.agent.options import AgentOptions
from pilot.ca.identity import ServiceAccount
from tests.agent.fake_pilot import FakePilotThread
from tests.agent.test_command import options_of
from tests.support import wait_until

APP = ServiceAccount("default", "app")
LIFETIME_SECONDS = 3  # renewed at about half: one rotation within the test


def test_flags() -> None:
    options = options_of("--proxyless", "--workdir=w")
    assert options.proxyless and options.grpc_bootstrap is None
    assert options_of("--proxyless", "--grpc-bootstrap=b.json").grpc_bootstrap == Path("b.json")
    for bad in (["--proxyless"], ["--proxyless", "--workdir=w", "--delta"], ["--grpc-bootstrap=b.json"]):
        with pytest.raises(ValueError):
            options_of(*bad)
    with pytest.raises(ValueError, match="--envoy"):
        AgentOptions("127.0.0.1:1", Path("r"), Path("t"), "default", "app")


def serial(path: Path) -> int:
    return x509.load_pem_x509_certificate(path.read_bytes()).serial_number


def test_proxyless_agent_writes_the_grpc_bootstrap_and_rotates_the_files(tmp_path: Path) -> None:
    pilot = FakePilotThread(tmp_path / "ca")
    (tmp_path / "root.pem").write_bytes(pilot.pilot.root_pem)
    (tmp_path / "token").write_text(pilot.pilot.token(APP))
    workdir = tmp_path / "w"
    argv = [sys.executable, "-m", "pilot", "agent", "--proxyless", f"--workdir={workdir}"]
    argv += [f"--xds-address={pilot.pilot.address}", f"--root-cert={tmp_path / 'root.pem'}"]
    argv += [f"--token-file={tmp_path / 'token'}", "--namespace=default", "--service-account=app"]
    argv += [f"--secret-ttl={LIFETIME_SECONDS}s", "--label=security.istio.io/tlsMode=istio"]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    bootstrap_file = workdir / "etc/istio/proxy/grpc-bootstrap.json"
    certs = workdir / "etc/certs"
    try:
        wait_until(bootstrap_file.exists, 20, 0.05, "the gRPC bootstrap")
        bootstrap = json.loads(bootstrap_file.read_text())
        [server] = bootstrap["xds_servers"]
        assert server["server_uri"] == f"unix://{workdir / 'etc/istio/proxy/XDS'}"
        metadata = bootstrap["node"]["metadata"]
        assert metadata["GENERATOR"] == "grpc" and metadata["SERVICE_ACCOUNT"] == "app"
        assert metadata["LABELS"] == {"security.istio.io/tlsMode": "istio"}
        config = bootstrap["certificate_providers"]["default"]["config"]
        assert config["certificate_file"] == str(certs / "cert-chain.pem")
        # Everything the bootstrap names is there when it appears.
        assert (workdir / "etc/istio/proxy/XDS").is_socket()
        assert stat.S_IMODE((certs / "key.pem").stat().st_mode) == 0o600
        leaf = x509.load_pem_x509_certificate((certs / "cert-chain.pem").read_bytes())
        uris = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert uris.get_values_for_type(x509.UniformResourceIdentifier) == [
            "spiffe://cluster.local/ns/default/sa/app"
        ]
        first = serial(certs / "cert-chain.pem")
        wait_until(lambda: serial(certs / "cert-chain.pem") != first, LIFETIME_SECONDS * 2, 0.1, "a rotation")
        assert not (workdir / "etc/istio/proxy/envoy-rev.json").exists()
        assert not (workdir / "var/run/secrets/workload-spiffe-uds/socket").exists()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
        assert proc.returncode == 0, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        pilot.close()
