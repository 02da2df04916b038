"""The simulated-proxy worker processes (bench/proxies.py), commanded over pipes by the driver."""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Sequence
from multiprocessing.connection import Connection
from typing import Any

from bench import procstat
from bench.memory_guard import MemoryGuard
from bench.proxies import worker_main


class Workers:
    """The simulated-proxy processes (spawned once, reused by every case)."""

    def __init__(self, count: int, guard: MemoryGuard | None = None) -> None:
        self.guard = guard
        ctx = multiprocessing.get_context("spawn")
        self.pipes: list[Connection] = []
        self.procs: list[Any] = []
        for _ in range(count):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=worker_main, args=(child,), daemon=True)
            proc.start()
            child.close()
            self.pipes.append(parent)
            self.procs.append(proc)

    def pids(self) -> list[int]:
        return [proc.pid for proc in self.procs]

    def cpu_seconds(self) -> float:
        """CPU seconds of every worker so far: what the simulated fleet costs the machine."""
        return sum(procstat.cpu_seconds(pid) for pid in self.pids())

    def call_all(self, commands: Sequence[tuple[Any, ...]], timeout: float) -> list[Any]:
        if self.guard is not None:
            self.guard.check()
        for pipe, command in zip(self.pipes, commands, strict=True):
            pipe.send(command)
        replies = []
        deadline = time.monotonic() + timeout
        for pipe in self.pipes:
            if not pipe.poll(max(0.0, deadline - time.monotonic())):
                raise TimeoutError(f"worker did not answer {commands[0][0]!r} within {timeout:.0f}s")
            try:
                reply = pipe.recv()
            except EOFError:  # the worker died (the memory guard stops workers so)
                if self.guard is not None:
                    self.guard.check()
                raise
            if isinstance(reply, dict) and "error" in reply:
                raise RuntimeError(f"worker: {reply['error']}")
            replies.append(reply)
        return replies

    def broadcast(self, command: tuple[Any, ...], timeout: float) -> list[Any]:
        return self.call_all([command] * len(self.pipes), timeout)

    def connect(
        self,
        target: str,
        indices: Sequence[int],
        timeout: float,
        protocol: str = "sotw",
        phase: str = "storm",
    ) -> tuple[float, dict[int, float], dict[str, int]]:
        """Open proxies ``indices`` (split over the workers) at once, speaking ``protocol``
        (``sotw``, ``delta``, or ``vhds``: delta with virtual hosts over VHDS); the streams that
        end from now on count as retries of ``phase``.

        Returns (start time, index → time it had full config, how streams ended since the last
        close)."""
        slices = [list(indices[w :: len(self.pipes)]) for w in range(len(self.pipes))]
        started = time.monotonic()
        commands = [("connect", target, s, timeout, protocol, phase) for s in slices]
        replies = self.call_all(commands, timeout + 30)
        full: dict[int, float] = {}
        errors: dict[str, int] = {}
        for reply in replies:
            full.update(reply["full"])
            for key, count in reply["errors"].items():
                errors[key] = errors.get(key, 0) + count
        return started, full, errors

    def close_proxies(self) -> dict[str, Any]:
        replies = self.broadcast(("close",), 60)
        errors: dict[str, int] = {}
        retries: dict[str, dict[str, int]] = {}
        for reply in replies:
            for key, count in reply["errors"].items():
                errors[key] = errors.get(key, 0) + count
            for phase, ends in reply["retries"].items():
                merged = retries.setdefault(phase, {})
                for key, count in ends.items():
                    merged[key] = merged.get(key, 0) + count
        return {
            "closed": sum(r["closed"] for r in replies),
            "errors": errors,
            "retries": retries,
            "responses": sum(r["responses"] for r in replies),
        }

    def stop(self) -> None:
        if self.guard is not None:
            for pid in self.pids():
                self.guard.unwatch(pid)
        for pipe in self.pipes:
            try:
                pipe.send(("exit",))
            except (OSError, BrokenPipeError):
                pass
        for proc in self.procs:
            proc.join(10)
            if proc.is_alive():
                proc.terminate()
                proc.join(5)
