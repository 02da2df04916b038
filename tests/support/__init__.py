"""Shared test harness: real processes on 127.0.0.1, always stopped.

The process and HTTP pieces are the ones ``pilot demo`` runs (pilot.localmesh), re-exported here
so tests and the demo exercise the same code.
"""

from pilot.localmesh.backend import Backend
from pilot.localmesh.control_plane import PilotProcess
from pilot.localmesh.envoy import EnvoyProcess, find_envoy
from pilot.localmesh.loopback import HttpClient, Reply, free_port, get
from pilot.localmesh.polling import Timeout, wait_until, wait_until_async
from tests.support import failure_logs

__all__ = [
    "Backend",
    "EnvoyProcess",
    "HttpClient",
    "PilotProcess",
    "Reply",
    "Timeout",
    "find_envoy",
    "failure_logs",
    "free_port",
    "get",
    "wait_until",
    "wait_until_async",
]
