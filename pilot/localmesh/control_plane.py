"""``pilot serve`` as a subprocess: the demo and the end-to-end tests run the real command line.

Running it out of process keeps them honest (they see what an operator sees: flags, /ready, logs)
and lets a test SIGKILL the control plane while Envoy keeps serving.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from pilot.localmesh import process_group
from pilot.localmesh.loopback import LOOPBACK, Reply, free_port, get
from pilot.localmesh.polling import wait_until

__all__ = ["PilotProcess"]


class PilotProcess:
    """``python -m pilot serve`` on 127.0.0.1, watching ``config_dir``; logs go to ``log_path``.

    Ports default to free ones picked at construction and stay fixed across ``restart()``, so a
    proxy configured with ``xds_port`` reconnects to the new process.
    """

    def __init__(
        self,
        config_dir: Path,
        log_path: Path,
        *,
        xds_port: int = 0,
        http_port: int = 0,
        debounce_after: float = 0.1,
        extra_args: tuple[str, ...] = (),
        name: str = "pilot",
    ) -> None:
        self.config_dir = Path(config_dir)
        self.log_path = Path(log_path)
        self.xds_port = xds_port or free_port()
        self.http_port = http_port or free_port()
        self.debounce_after = debounce_after
        self.extra_args = extra_args
        self.name = name
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "pilot",
            "serve",
            "--config-dir",
            str(self.config_dir),
            "--xds-host",
            LOOPBACK,
            "--xds-port",
            str(self.xds_port),
            "--http-host",
            LOOPBACK,
            "--http-port",
            str(self.http_port),
            "--debounce-after",
            str(self.debounce_after),
            *self.extra_args,
        ]

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 30.0) -> PilotProcess:
        """Start and wait for ``/ready`` to answer 200 (config loaded, xDS port open)."""
        if self.running():
            raise RuntimeError(f"{self.name} is already running (pid {self.pid})")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 -- closed in stop()/kill()
        self._log.write(f"--- {' '.join(self.command)}\n".encode())
        self._log.flush()
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self._proc = subprocess.Popen(
            self.command,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        try:
            wait_until(self._ready, timeout, 0.1, f"{self.name} /ready")
        except BaseException:
            self.stop()
            raise
        return self

    def _ready(self) -> bool:
        if self._proc is None or self._proc.poll() is not None:
            code = self._proc.returncode if self._proc is not None else None
            raise RuntimeError(f"{self.name} exited early (code {code}):\n{self.log_tail()}")
        return self.http_get("/ready", timeout=2.0).status == 200

    def http_get(self, path: str, timeout: float = 5.0) -> Reply:
        """GET on pilot's HTTP port (/ready, /metrics, /debug/...)."""
        return get(self.http_port, path, timeout=timeout)

    def debug_json(self, path: str) -> Any:
        reply = self.http_get(path)
        if reply.status != 200:
            raise RuntimeError(f"{path}: HTTP {reply.status}: {reply.text[:300]}")
        return reply.json()

    def log_tail(self, lines: int = 80) -> str:
        if self._log is not None:
            self._log.flush()
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (graceful stop), SIGKILL after ``timeout``. Safe to call twice."""
        self._end(lambda proc: process_group.terminate(proc, timeout))

    def kill(self) -> None:
        """SIGKILL: the control plane vanishes without closing its streams."""
        self._end(process_group.kill)

    def restart(self, timeout: float = 30.0) -> PilotProcess:
        """Stop if running, then start again on the same ports."""
        self.stop()
        return self.start(timeout)

    def _end(self, how: Callable[[subprocess.Popen[bytes]], None]) -> None:
        proc, self._proc = self._proc, None
        try:
            if proc is not None:
                how(proc)
        finally:
            if self._log is not None:
                self._log.close()
                self._log = None

    def __enter__(self) -> PilotProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
