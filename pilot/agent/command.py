"""``pilot agent``: get the certificate, serve SDS and the xDS proxy, write the bootstrap, run Envoy.

Order, as Istio's agent (pkg/istio-agent/agent.go Run): the first certificate comes before
anything else (a refusal ends the agent with exit code 1 and the CA's reason, before Envoy
starts); then the SDS and xDS sockets; then the bootstrap and Envoy. The agent stops Envoy and
exits 0 on SIGTERM or SIGINT; when Envoy exits by itself, the agent exits with Envoy's code.
With ``--proxyless`` there is no Envoy and no SDS: after the certificate files and the xDS socket,
the agent writes the gRPC bootstrap (pilot.agent.proxyless) and runs until it is stopped.

Work directory layout (Istio's paths, under ``--workdir``)::

    var/run/secrets/workload-spiffe-uds/socket   SDS (cluster sds-grpc)
    etc/istio/proxy/XDS                          the xDS proxy (cluster xds-grpc)
    etc/istio/proxy/envoy-rev.json               Envoy's bootstrap
    etc/istio/proxy/grpc-bootstrap.json          the gRPC bootstrap (--proxyless)
    etc/certs/{key.pem,cert-chain.pem,root-cert.pem}  the current credentials (key 0600)
"""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from pilot.agent.ca_client import CaClient, CaUnavailableError
from pilot.agent.control_plane import secure_channel
from pilot.agent.envoy_process import EnvoyChild, envoy_command
from pilot.agent.file_secrets import FileSecrets
from pilot.agent.options import MAX_SOCKET_PATH, AgentOptions
from pilot.agent.proxyless import write_grpc_bootstrap
from pilot.agent.sds import SecretDiscoveryServer
from pilot.agent.secret_cache import RETRY_FIRST, RETRY_MAX, SecretCache, rotate_forever
from pilot.agent.workload_key import PUBLIC, WorkloadSecret, write_credentials, write_file
from pilot.agent.xds_proxy import XdsProxy
from pilot.bootstrap import build_agent_bootstrap, istio_node_metadata
from pilot.ca.identity import ServiceAccount
from pilot.errors import ConfigError, PilotError

log = logging.getLogger("pilot.agent")

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# How long the agent waits for a pilot it cannot reach before giving up on the first certificate.
FIRST_CERTIFICATE_TIMEOUT = datetime.timedelta(seconds=60)


@dataclass(frozen=True, slots=True)
class WorkdirLayout:
    """Where the agent's files and sockets are, under one work directory."""

    root: Path

    @property
    def sds_socket(self) -> Path:
        return self.root / "var/run/secrets/workload-spiffe-uds/socket"

    @property
    def xds_socket(self) -> Path:
        return self.root / "etc/istio/proxy/XDS"

    @property
    def bootstrap(self) -> Path:
        return self.root / "etc/istio/proxy/envoy-rev.json"

    @property
    def grpc_bootstrap(self) -> Path:
        return self.root / "etc/istio/proxy/grpc-bootstrap.json"

    @property
    def credentials(self) -> Path:
        return self.root / "etc/certs"

    def check(self) -> None:
        for path in (self.sds_socket, self.xds_socket):
            if len(str(path).encode()) > MAX_SOCKET_PATH:
                raise ConfigError(
                    f"socket path {path} is longer than the {MAX_SOCKET_PATH} bytes a Unix socket "
                    "allows: choose a shorter --workdir"
                )
        for path in (self.sds_socket, self.xds_socket, self.bootstrap, self.credentials / "key.pem"):
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        for path in (self.sds_socket, self.xds_socket):
            if _answers(path):
                # Istio's agent leaves a workload socket it did not make to its owner (SPIRE); two
                # agents on one work directory would take each other's Envoy.
                raise ConfigError(f"{path} is served by another process: is another agent using {self.root}?")


def _answers(path: Path) -> bool:
    """Whether something accepts connections on the Unix socket ``path`` (a stale file does not)."""
    if not path.is_socket():
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


def run(options: AgentOptions) -> int:
    """Run the agent until it is stopped or Envoy exits; the exit code."""
    try:
        return asyncio.run(_run(options))
    except asyncio.CancelledError:
        return 0  # stopped by a signal before Envoy ran; everything started has been stopped
    except PilotError as err:
        print(f"pilot agent: {err}", file=sys.stderr)
        return 1


async def first_certificate(
    fetch: Callable[[], Awaitable[WorkloadSecret]],
    timeout: datetime.timedelta = FIRST_CERTIFICATE_TIMEOUT,
) -> WorkloadSecret:
    """The first certificate; retries while pilot is unreachable, raises a refusal at once."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout.total_seconds()
    backoff = RETRY_FIRST
    while True:
        try:
            return await fetch()
        except CaUnavailableError as err:
            if loop.time() + backoff > deadline:
                raise CaUnavailableError(
                    f"no certificate within {timeout.total_seconds():.0f}s: {err}"
                ) from err
            log.warning("%s; retrying in %.0fs", err, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, RETRY_MAX)


def _read_root(path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ConfigError(f"cannot read the root certificate {path}: {err.strerror or err}") from err
    if b"-----BEGIN CERTIFICATE-----" not in data:
        raise ConfigError(f"{path} holds no PEM certificate")
    return data


async def _unix_server(path: Path, register: Callable[[grpc.aio.Server], None]) -> grpc.aio.Server:
    path.unlink(missing_ok=True)
    server = grpc.aio.server()
    register(server)
    server.add_insecure_port(f"unix:{path}")
    await server.start()
    path.chmod(0o600)  # only the agent's user (and so Envoy, which runs as it) may connect
    return server


async def _run(options: AgentOptions) -> int:
    # SIGTERM and SIGINT cancel the agent wherever it is (fetching the first certificate, running
    # Envoy): the finally blocks stop Envoy, close the sockets and remove a temporary work directory.
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    assert main is not None
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, main.cancel)
    created = options.workdir is None
    root = Path(tempfile.mkdtemp(prefix="pilot-agent-")) if options.workdir is None else options.workdir
    layout = WorkdirLayout(root.absolute())
    try:
        layout.check()
        return await _serve(options, layout)
    finally:
        for sig in STOP_SIGNALS:
            loop.remove_signal_handler(sig)
        if created:
            shutil.rmtree(root, ignore_errors=True)


async def _serve(options: AgentOptions, layout: WorkdirLayout) -> int:
    account = ServiceAccount(options.namespace, options.service_account)
    channel = secure_channel(options.xds_address, _read_root(options.root_cert), options.server_name)
    servers: list[grpc.aio.Server] = []
    tasks: list[asyncio.Task[object]] = []
    envoy: EnvoyChild | None = None
    try:
        client = CaClient(channel, options.token_file, account, options.trust_domain, options.secret_ttl)

        async def fetch() -> WorkloadSecret:
            secret = await client.fetch()
            write_credentials(layout.credentials, secret)
            return secret

        cache = SecretCache(await first_certificate(fetch))
        tasks.append(
            asyncio.create_task(rotate_forever(cache, fetch, options.grace_ratio, options.grace_jitter))
        )
        servers.append(await _unix_server(layout.xds_socket, XdsProxy(channel, options.token_file).add_to))
        node_id = options.resolved_node_id(socket.gethostname())
        metadata = istio_node_metadata(
            namespace=options.namespace,
            service_account=options.service_account,
            labels=dict(options.labels),
            interception=options.interception,
            instance_ips=(options.ip,),
        )
        if options.proxyless:
            path = options.grpc_bootstrap or layout.grpc_bootstrap
            write_grpc_bootstrap(path, node_id, layout.xds_socket, layout.credentials, metadata)
            log.info("proxyless: wrote the gRPC bootstrap %s", path)
            return await _until_stopped(None, tasks)
        assert options.envoy is not None  # AgentOptions checks it
        files = FileSecrets()
        tasks.append(asyncio.create_task(files.poll_forever()))
        servers.append(await _unix_server(layout.sds_socket, SecretDiscoveryServer(cache, files).add_to))
        bootstrap = build_agent_bootstrap(
            node_id,
            str(layout.xds_socket),
            str(layout.sds_socket),
            delta=options.delta,
            admin_port=options.admin_port,
            metadata=metadata,
        )
        write_file(layout.bootstrap, json.dumps(bootstrap, indent=2).encode(), PUBLIC)
        envoy = await EnvoyChild.start(
            envoy_command(options.envoy, layout.bootstrap, options.proxy_log_level, options.envoy_args),
            layout.root,
        )
        return await _until_stopped(envoy, tasks)
    finally:
        if envoy is not None:
            await envoy.stop()
        for task in tasks:
            task.cancel()
        for server in servers:
            await server.stop(grace=1.0)
        await channel.close(grace=None)


async def _until_stopped(envoy: EnvoyChild | None, tasks: list[asyncio.Task[object]]) -> int:
    """Envoy's exit code when it exits by itself; 0 when a signal stops the agent (the only way a
    proxyless agent stops, its renewal loop running for ever)."""
    exited = asyncio.ensure_future(envoy.wait()) if envoy is not None else None
    waiting: set[asyncio.Future[Any]] = {*tasks} if exited is None else {exited, *tasks}
    try:
        done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        log.info("stopping: a signal asked for it")
        current = asyncio.current_task()
        if current is not None:
            current.uncancel()  # handled: the stops that follow may await
        return 0
    finally:
        if exited is not None:
            exited.cancel()
    for task in tasks:
        if task in done:
            task.result()  # a rotation loop does not end: re-raise what ended it
    assert exited is not None
    code = exited.result()
    log.error("envoy exited with code %d", code)
    return code if code > 0 else 1 if code < 0 else 0
