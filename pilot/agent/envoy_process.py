"""Envoy as the agent's child (Istio's pkg/envoy/proxy.go and agent.go).

Envoy runs in its own session, so a Ctrl-C in a terminal reaches the agent alone and the agent
decides how Envoy stops: SIGTERM, then SIGKILL if Envoy has not exited within the grace time.
Envoy's output goes to the agent's, as a sidecar container's logs do.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger("pilot.agent")

STOP_GRACE = 10.0
# Istio's (pkg/envoy/proxy.go): a replaced listener's connections are told to close at once (HTTP/1
# ``Connection: close`` on the next response, an HTTP/2 GOAWAY), over mesh drainDuration's 45 s, so a
# listener update (an AuthorizationPolicy edit) reaches pooled connections after one more request
# rather than after Envoy's default 600 s of gradual draining.
DRAIN_ARGS = ("--drain-time-s", "45", "--drain-strategy", "immediate")


def envoy_command(envoy: Path, bootstrap: Path, log_level: str, extra: Sequence[str]) -> list[str]:
    """Envoy's arguments: the bootstrap, no hot restart and immediate draining (as Istio's), the log
    level, then ``extra``."""
    return [str(envoy), "-c", str(bootstrap), "--disable-hot-restart", *DRAIN_ARGS, "-l", log_level, *extra]


class EnvoyChild:
    """A started Envoy; ``wait()`` for its exit, ``stop()`` to end it."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self._process = process

    @classmethod
    async def start(cls, command: Sequence[str], cwd: Path) -> EnvoyChild:
        process = await asyncio.create_subprocess_exec(
            *command, cwd=cwd, stdin=asyncio.subprocess.DEVNULL, start_new_session=True
        )
        log.info("started envoy (pid %d): %s", process.pid, " ".join(command))
        return cls(process)

    @property
    def pid(self) -> int:
        return self._process.pid

    async def wait(self) -> int:
        return await self._process.wait()

    async def stop(self, grace: float = STOP_GRACE) -> int:
        """SIGTERM Envoy's group, SIGKILL it after ``grace``; its exit code."""
        if self._process.returncode is not None:
            return self._process.returncode
        self._signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(self._process.wait(), grace)
        except TimeoutError:
            log.warning("envoy (pid %d) did not stop within %.0fs: killing it", self.pid, grace)
            self._signal(signal.SIGKILL)
            return await self._process.wait()

    def _signal(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._process.pid, sig)
