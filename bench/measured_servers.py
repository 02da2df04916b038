"""The servers a case measures, as subprocesses: ``pilot serve`` and the floor server, and what
their HTTP ports report."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc

from bench.paths import ROOT
from pilot.localmesh.control_plane import PilotProcess


class BenchPilot(PilotProcess):
    """``pilot serve`` started by the benchmark; on uvloop through bench/pilot_uvloop.py if asked."""

    def __init__(self, *args: Any, uvloop: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.uvloop = uvloop

    @property
    def command(self) -> list[str]:
        command = super().command
        if self.uvloop:
            command[1:3] = ["-m", "bench.pilot_uvloop"]
        # The simulated proxies connect all at once; a refused stream would be retried after
        # Envoy's backoff: admit them all (the benchmark measures serving, not the admission rate).
        return [*command, "--max-requests-per-second", "0"]


class FloorProcess:
    """bench/floor_server.py as a subprocess: one server process, or ``processes`` of them on one
    SO_REUSEPORT port (``pin``: the CPU of each), under a parent that encoded their responses."""

    def __init__(
        self,
        config_dir: Path,
        weights: Sequence[int],
        log_path: Path,
        uvloop: bool,
        rds: str = "changed",
        processes: int = 1,
        pin: Sequence[int] = (),
    ) -> None:
        command = [
            sys.executable,
            "-m",
            "bench.floor_server",
            "--config-dir",
            str(config_dir),
            "--weights",
            ",".join(str(w) for w in weights),
            "--rds",
            rds,
        ]
        if uvloop:
            command.append("--uvloop")
        if processes > 1:
            command += ["--processes", str(processes)]
        if pin:
            command += ["--pin", ",".join(str(c) for c in pin)]
        self._log = open(log_path, "ab")  # noqa: SIM115 -- closed in stop()
        self.proc = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=self._log, cwd=ROOT, start_new_session=True
        )
        assert self.proc.stdout is not None
        fields = self.proc.stdout.readline().decode().split()  # READY <port> <controls> <pids>
        if not fields or fields[0] != "READY":
            self.stop()
            raise RuntimeError(f"floor server did not start (see {log_path})")
        self.port = int(fields[1])
        self.pids = [int(pid) for pid in fields[3].split(",")]
        self.channels = [grpc.insecure_channel(f"127.0.0.1:{port}") for port in fields[2].split(",")]
        self._push = [
            channel.unary_unary("/bench.Floor/Push", request_serializer=None, response_deserializer=None)
            for channel in self.channels
        ]
        self._streams = [
            channel.unary_unary("/bench.Floor/Streams", request_serializer=None, response_deserializer=None)
            for channel in self.channels
        ]

    @property
    def pid(self) -> int:
        """The server process (the first one of a group)."""
        return self.pids[0]

    def push(self, weight: int) -> None:
        """Every server process makes the RDS response of ``weight`` current and queues it."""
        calls = [push.future(str(weight).encode(), timeout=10) for push in self._push]
        for call in calls:
            call.result()

    def streams(self) -> list[int]:
        """How many ADS streams each server process holds."""
        return [int(streams(b"", timeout=10).decode()) for streams in self._streams]

    def stop(self) -> None:
        for channel in getattr(self, "channels", []):
            channel.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def debug_json(port: int, path: str) -> Any:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as reply:
        return json.loads(reply.read())


def pushed_bytes(port: int) -> float:
    """Every response byte pilot has written (``pilot_xds_push_bytes_total``, all types)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    return sum(float(v) for v in re.findall(r"^pilot_xds_push_bytes_total\{[^}]*\} (\S+)$", text, re.M))
