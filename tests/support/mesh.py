"""A small mesh on 127.0.0.1: ``pilot serve`` watching a folder, one Envoy sidecar, backends.

Tests write Istio YAML into ``mesh.config_dir`` and send requests through Envoy; every process
started here is stopped by ``stop()`` (the fixtures call it even when a test fails).
"""

from __future__ import annotations

import http.client
import time
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pilot.localmesh.backend import Backend
from pilot.localmesh.config_files import write_atomically
from pilot.localmesh.control_plane import PilotProcess
from pilot.localmesh.envoy import EnvoyProcess
from pilot.localmesh.loopback import HttpClient, Reply, free_port
from pilot.localmesh.polling import Timeout
from tests.support import failure_logs
from tests.support.istio import Doc, Service, destination_rule, dump, service_entry

SIDECAR_NODE = "sidecar~127.0.0.1~{name}.default~default.svc.cluster.local"


def start_backends(versions: tuple[str, ...] = ("v1", "v2", "v3")) -> dict[str, Backend]:
    backends: dict[str, Backend] = {}
    try:
        for version in versions:
            backends[version] = Backend(version).start()
    except BaseException:
        stop_backends(backends)
        raise
    return backends


def stop_backends(backends: Mapping[str, Backend]) -> None:
    for backend in backends.values():
        backend.stop()


class Mesh:
    """pilot + Envoy sharing ``root``; backends are passed in (they outlive a pilot restart)."""

    def __init__(
        self,
        root: Path,
        backends: Mapping[str, Backend],
        *,
        delta: bool = False,
        debounce_after: float = 0.1,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        self.root = Path(root)
        self.config_dir = self.root / "config"
        self.backends = backends
        self.pilot = PilotProcess(self.config_dir, self.root / "pilot.log", debounce_after=debounce_after)
        self.envoys: list[EnvoyProcess] = []
        self.envoy = self.new_envoy("sidecar", delta=delta, metadata=metadata)

    def new_envoy(
        self, name: str, *, delta: bool = False, metadata: Mapping[str, Any] | None = None
    ) -> EnvoyProcess:
        """Another sidecar of the same pilot (started by ``start()``, or by hand after it)."""
        envoy = EnvoyProcess(
            SIDECAR_NODE.format(name=name),
            self.pilot.xds_port,
            self.root,
            delta=delta,
            name=f"envoy-{name}",
            metadata=metadata,
        )
        self.envoys.append(envoy)
        return envoy

    def start(self) -> Mesh:
        self.config_dir.mkdir(parents=True, exist_ok=True)
        try:
            failure_logs.watch(self.pilot)
            self.pilot.start()
            for envoy in self.envoys:
                failure_logs.watch(envoy)
                envoy.start()
            for envoy in self.envoys:
                envoy.wait_configured(timeout=15.0)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        try:
            for envoy in self.envoys:
                envoy.stop()
            self.pilot.stop()
        finally:
            failure_logs.unwatch(self.pilot)
            for envoy in self.envoys:
                failure_logs.unwatch(envoy)

    # --- config ------------------------------------------------------------------------------

    def write(self, filename: str, *docs: Doc | str) -> Path:
        """Replace ``config_dir/filename`` atomically with these documents (dicts or raw text)."""
        text = "---\n".join(doc if isinstance(doc, str) else dump(doc) for doc in docs)
        path = self.config_dir / filename
        write_atomically(path, text)
        return path

    def add_service(
        self, name: str, versions: tuple[str, ...] = ("v1", "v2"), *, envoy: EnvoyProcess | None = None
    ) -> Service:
        """ServiceEntry + DestinationRule for ``name`` on a fresh port; waits for Envoy's listener."""
        service = Service(name, free_port())
        ports = {v: self.backends[v].port for v in versions}
        self.write(f"{name}-service.yaml", service_entry(service, ports), destination_rule(service, versions))
        (envoy or self.envoy).wait_listener(service.listener, timeout=20.0)
        return service

    def assert_config_accepted(self) -> None:
        """No running Envoy NACKed anything pilot sent it (every ``*.update_rejected`` stat is 0)."""
        for envoy in self.envoys:
            if envoy.running():
                assert envoy.rejected_updates() == {}, envoy.log_tail(30)

    def client(self, service: Service, timeout: float = 5.0) -> HttpClient:
        return HttpClient(service.port, authority=service.name, timeout=timeout)

    def route_config(self, service: Service, envoy: EnvoyProcess | None = None) -> dict[str, Any] | None:
        """The route configuration Envoy holds for the service's port (RDS name ``N``), if any."""
        dump_ = (envoy or self.envoy).config_dump("dynamic_route_configs")
        return _find_route_config(dump_, str(service.port))


def _find_route_config(node: Any, name: str) -> dict[str, Any] | None:
    if isinstance(node, dict):
        if node.get("name") == name and "virtual_hosts" in node:
            return node
        children: Any = node.values()
    elif isinstance(node, list):
        children = node
    else:
        return None
    for child in children:
        found = _find_route_config(child, name)
        if found is not None:
            return found
    return None


def outcome(reply: Reply) -> str:
    """``v1``/``v2``... for a backend's 200, else ``status 503`` and the like."""
    version = reply.version
    return version if reply.status == 200 and version else f"status {reply.status}"


def tally(
    client: HttpClient, count: int, path: str = "/", headers: Mapping[str, str] | None = None
) -> Counter[str]:
    """Send ``count`` requests one after another; count the outcomes."""
    return Counter(outcome(client.get(path, headers)) for _ in range(count))


def wait_routed(
    client: HttpClient,
    accept: Callable[[Reply], bool],
    *,
    timeout: float = 15.0,
    consecutive: int = 20,
    path: str = "/",
    headers: Mapping[str, str] | None = None,
    since: float | None = None,
    message: str = "",
) -> float:
    """Send requests until ``consecutive`` replies in a row satisfy ``accept``.

    Returns the seconds from ``since`` (a ``time.monotonic()`` value; default: the call) until the
    first request of that run was sent: how long the route took to look like this. Timeout (an
    AssertionError) with the recent outcomes otherwise.
    """
    started = time.monotonic() if since is None else since
    deadline = time.monotonic() + timeout
    run_started: float | None = None
    run = 0
    recent: list[str] = []
    while run < consecutive:
        if time.monotonic() > deadline:
            what = message or "routing"
            raise Timeout(f"{what} not seen within {timeout:.0f}s; last replies: {recent[-10:]}")
        sent_at = time.monotonic()
        try:
            reply = client.get(path, headers)
        except (OSError, http.client.HTTPException) as err:
            recent.append(type(err).__name__)
            run, run_started = 0, None
            time.sleep(0.05)  # pacing retries of a refused connection, not a wait for a state
            continue
        recent.append(outcome(reply))
        if accept(reply):
            if run == 0:
                run_started = sent_at
            run += 1
        else:
            run, run_started = 0, None
    assert run_started is not None
    return run_started - started
