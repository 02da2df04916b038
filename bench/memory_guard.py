"""Stops a benchmark case before the machine runs out of memory.

A connect storm of N proxies holds N copies of the config in grpc buffers at once, in the server
and in the simulated proxies (N=5000 at K=1000 is 13 GB). A thread of the driver reads
``MemAvailable`` from /proc/meminfo every ``interval`` seconds while a case runs; when it falls
under ``floor_kib`` it sends SIGTERM to the processes the case registered (the server, the floor,
the proxies' workers), which frees their memory at once, and marks the guard tripped. The driver
then finds its next call failing, or calls :meth:`MemoryGuard.check`, records the case as
``aborted: memory`` and goes on with fresh workers.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterable

GIB_KIB = 1024 * 1024


class MemoryAbort(Exception):
    """The guard stopped the case: the machine ran short of memory."""


def mem_available_kib() -> int:
    """``MemAvailable`` of /proc/meminfo (KiB): what can be allocated without swapping."""
    with open("/proc/meminfo", "rb") as meminfo:
        for line in meminfo:
            if line.startswith(b"MemAvailable:"):
                return int(line.split()[1])
    raise RuntimeError("no MemAvailable in /proc/meminfo")


class MemoryGuard:
    """A polling thread that stops a case's processes under ``floor_kib`` of available memory."""

    def __init__(self, floor_kib: int = 3 * GIB_KIB, interval: float = 0.5) -> None:
        self.floor_kib = floor_kib
        self.interval = interval
        self.tripped_at_kib: int | None = None  # MemAvailable when it tripped, in the current case
        self.lowest_kib: int | None = None  # the least MemAvailable seen in the current case
        self._pids: set[int] = set()
        self._armed = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="memory-guard", daemon=True)
        self._thread.start()

    def arm(self, pids: Iterable[int]) -> None:
        """A case starts: watch memory, and stop ``pids`` (the workers) if it runs short."""
        with self._lock:
            self._pids = set(pids)
            self.tripped_at_kib = None
            self.lowest_kib = None
            self._armed = True

    def disarm(self) -> None:
        with self._lock:
            self._armed = False
            self._pids = set()

    def watch(self, pid: int | None) -> None:
        """Stop ``pid`` too if memory runs short (or now, if it already did)."""
        if pid is None:
            return
        with self._lock:
            self._pids.add(pid)
            tripped = self.tripped_at_kib is not None
        if tripped:
            self._terminate([pid])

    def unwatch(self, pid: int | None) -> None:
        """``pid`` ended: never signal it (its number may be reused)."""
        with self._lock:
            self._pids.discard(pid or 0)

    def check(self) -> None:
        """Raise :class:`MemoryAbort` if the guard tripped in this case."""
        if self.tripped_at_kib is not None:
            available, floor = self.tripped_at_kib // 1024, self.floor_kib // 1024
            raise MemoryAbort(f"MemAvailable {available} MiB < {floor} MiB")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _poll(self) -> None:
        while not self._stop.wait(self.interval):
            available = mem_available_kib()
            with self._lock:
                if not self._armed:
                    continue
                if self.lowest_kib is None or available < self.lowest_kib:
                    self.lowest_kib = available
                if available >= self.floor_kib or self.tripped_at_kib is not None:
                    continue
                self.tripped_at_kib = available
                pids = list(self._pids)
            self._terminate(pids)

    @staticmethod
    def _terminate(pids: Iterable[int]) -> None:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
