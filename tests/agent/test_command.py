"""``pilot agent`` as a command: its flags, a CA refusal ending it before Envoy starts, the work
directory's limits, the bootstrap it writes, and renewal retries."""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from pilot.agent import command
from pilot.agent.envoy_process import envoy_command
from pilot.agent.options import AgentOptions
from pilot.agent.secret_cache import SecretCache, rotate_forever
from pilot.agent.workload_key import WorkloadSecret
from pilot.bootstrap import SDS_CLUSTER, XDS_CLUSTER, build_agent_bootstrap, istio_node_metadata
from pilot.ca.authority import now
from pilot.ca.identity import ServiceAccount
from pilot.cli import build_parser
from pilot.errors import ConfigError, PilotError
from tests.agent.fake_pilot import FakePilot, FakePilotThread
from tests.support import find_envoy, free_port, wait_until

SLEEP = ServiceAccount("default", "sleep")
REQUIRED = [
    "agent",
    "--xds-address=127.0.0.1:15012",
    "--root-cert=root.pem",
    "--token-file=token",
    "--namespace=default",
    "--service-account=sleep",
    "--envoy=/usr/bin/envoy",
]


def options_of(*flags: str) -> AgentOptions:
    args = build_parser().parse_args([*REQUIRED, *flags])
    options: AgentOptions = args.command_spec.options(args)
    return options


def test_flags_make_typed_options():
    options = options_of(
        "--label=app=sleep", "--label=version=v1", "--envoy-arg=--concurrency", "--envoy-arg=2"
    )
    assert options.labels == (("app", "sleep"), ("version", "v1"))
    assert envoy_command(options.envoy, Path("b.json"), options.proxy_log_level, options.envoy_args) == [
        "/usr/bin/envoy",
        "-c",
        "b.json",
        "--disable-hot-restart",
        "--drain-time-s",
        "45",
        "--drain-strategy",
        "immediate",
        "-l",
        "warning",
        "--concurrency",
        "2",
    ]
    assert (options.interception, options.admin_port, options.secret_ttl) == (
        "REDIRECT",
        15000,
        datetime.timedelta(hours=24),
    )
    assert (
        options.resolved_node_id("sleep-1") == "sidecar~127.0.0.1~sleep-1.default~default.svc.cluster.local"
    )
    assert (
        options_of("--node-id=router~1~gw.x~x.svc.cluster.local").resolved_node_id("h").startswith("router~")
    )
    assert options_of("--secret-ttl=90s").secret_ttl == datetime.timedelta(seconds=90)
    for bad in (["--xds-address=nope"], ["--grace-ratio=1.5"], ["--secret-ttl=0"]):
        with pytest.raises(ValueError):
            options_of(*bad)


def run_agent(tmp_path: Path, envoy_script: str, token: Callable[[FakePilot], str]) -> int:
    """``command.run`` against a fake pilot, with ``envoy_script`` (sh) standing in for Envoy."""
    envoy = tmp_path / "envoy.sh"
    envoy.write_text(f"#!/bin/sh\n{envoy_script}\n")
    envoy.chmod(0o755)
    pilot_thread = FakePilotThread(tmp_path / "ca")
    try:
        (tmp_path / "root.pem").write_bytes(pilot_thread.pilot.root_pem)
        (tmp_path / "token").write_text(token(pilot_thread.pilot))
        options = AgentOptions(
            xds_address=pilot_thread.pilot.address,
            root_cert=tmp_path / "root.pem",
            token_file=tmp_path / "token",
            namespace="default",
            service_account="sleep",
            envoy=envoy,
            workdir=tmp_path / "w",
        )
        return command.run(options)
    finally:
        pilot_thread.close()


def test_a_refusing_ca_ends_the_agent_before_envoy(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    marker = tmp_path / "envoy-ran"
    assert run_agent(tmp_path, f"touch {marker}", lambda pilot: "not-a-token") == 1
    err = capsys.readouterr().err
    assert "pilot agent: CreateCertificate: UNAUTHENTICATED: authentication failed: token is not a JWT" in err
    assert not marker.exists()
    assert not (tmp_path / "w/etc/certs/key.pem").exists()


def test_a_missing_root_or_a_long_socket_path_is_a_clear_error(tmp_path: Path, capsys):
    options = AgentOptions(
        xds_address="127.0.0.1:1",
        root_cert=tmp_path / "missing.pem",
        token_file=tmp_path / "token",
        namespace="default",
        service_account="sleep",
        envoy=Path("/bin/false"),
        workdir=tmp_path / "w",
    )
    assert command.run(options) == 1
    assert "cannot read the root certificate" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="choose a shorter --workdir"):
        command.WorkdirLayout(tmp_path / ("x" * 80)).check()


def test_a_work_directory_in_use_is_refused_and_a_stale_socket_is_not(tmp_path: Path):
    layout = command.WorkdirLayout(tmp_path)
    layout.check()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as other_agent:
        other_agent.bind(str(layout.sds_socket))
        other_agent.listen()
        with pytest.raises(ConfigError, match="served by another process"):
            layout.check()
    layout.check()  # the file is left behind, nobody answers: the agent replaces it


def test_envoy_exiting_ends_the_agent_with_its_code(tmp_path: Path):
    assert run_agent(tmp_path, "exit 3", lambda pilot: pilot.token(SLEEP)) == 3
    layout = command.WorkdirLayout(tmp_path / "w")
    assert json.loads(layout.bootstrap.read_text())["node"]["metadata"]["SERVICE_ACCOUNT"] == "sleep"
    assert (layout.credentials / "key.pem").exists()
    assert not command._answers(layout.sds_socket) and not command._answers(layout.xds_socket)


def test_agent_bootstrap_is_valid_for_envoy(tmp_path: Path):
    metadata = istio_node_metadata(
        namespace="default",
        service_account="sleep",
        labels={"app": "sleep"},
        interception="REDIRECT",
        instance_ips=("10.0.0.2",),
    )
    assert metadata == {
        "NAMESPACE": "default",
        "SERVICE_ACCOUNT": "sleep",
        "LABELS": {"app": "sleep"},
        "INTERCEPTION_MODE": "REDIRECT",
        "INSTANCE_IPS": "10.0.0.2",
    }
    boot = build_agent_bootstrap(
        "sidecar~10.0.0.2~s.default~default.svc.cluster.local", "/w/XDS", "/w/sds", metadata=metadata
    )
    clusters = {c["name"]: c for c in boot["static_resources"]["clusters"]}
    assert set(clusters) == {XDS_CLUSTER, SDS_CLUSTER}
    for name, path in ((XDS_CLUSTER, "/w/XDS"), (SDS_CLUSTER, "/w/sds")):
        (endpoint,) = clusters[name]["load_assignment"]["endpoints"][0]["lb_endpoints"]
        assert endpoint["endpoint"]["address"] == {"pipe": {"path": path}}
    # SDS: pilot sends this proxy mTLS (pilot.translate.proxy SDS_METADATA).
    assert boot["node"]["metadata"] == {**metadata, "SDS": "true"}
    (tmp_path / "b.json").write_text(json.dumps(boot))
    result = subprocess.run(
        [str(find_envoy()), "--mode", "validate", "-c", str(tmp_path / "b.json"), "--disable-hot-restart"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]


def secret(serial: int, lifetime: float) -> WorkloadSecret:
    created = now()
    return WorkloadSecret(b"k", b"c", b"r", serial, created + datetime.timedelta(seconds=lifetime), created)


async def test_renewal_failures_are_retried_with_backoff_then_stored():
    cache = SecretCache(secret(1, 100))
    sleeps: list[float] = []
    attempts = iter([PilotError("CA down"), PilotError("CA down"), secret(2, 100)])

    async def fetch() -> WorkloadSecret:
        outcome = next(attempts)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 4:
            raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await rotate_forever(cache, fetch, 0.5, 0.0, sleep)
    assert cache.secret.serial == 2 and cache.generation == 1
    assert 49 < sleeps[0] <= 50  # half of the 100 s lifetime
    assert sleeps[1:3] == [1.0, 2.0]  # the retries' backoff
    assert 49 < sleeps[3] <= 50  # then the new certificate's own renewal time


def test_sigterm_while_waiting_for_the_ca_stops_cleanly(tmp_path: Path):
    """An unreachable pilot is retried; SIGTERM then ends the agent at once, exit 0, and the
    temporary work directory it made is gone."""
    # A short TMPDIR of its own: pytest's tmp_path is too deep for the agent's socket paths.
    holder = tempfile.TemporaryDirectory(prefix="ag", dir="/tmp")
    temporary = Path(holder.name)
    (tmp_path / "root.pem").write_bytes(FakePilotThread.root_only(tmp_path / "ca"))
    (tmp_path / "token").write_text("token")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pilot",
            "agent",
            f"--xds-address=127.0.0.1:{free_port()}",
            f"--root-cert={tmp_path / 'root.pem'}",
            f"--token-file={tmp_path / 'token'}",
            "--namespace=default",
            "--service-account=sleep",
            "--envoy=/bin/false",
        ],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "TMPDIR": str(temporary)},
    )
    try:
        wait_until(lambda: any(temporary.iterdir()), 20, 0.05, "the agent's work directory")
        time.sleep(0.5)  # into the first retry's backoff
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
        assert proc.returncode == 0, err
        assert "UNAVAILABLE" in err and "retrying" in err
        assert list(temporary.iterdir()) == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        holder.cleanup()
