"""The network-namespace mesh for tests: pilot.localmesh.netns (the harness ``pilot demo --mesh`` runs
too), plus the one check only tests need, a Python interpreter the proxy's uid may run (their sidecar
stand-ins in pilot/localmesh/pod_programs/ run as uid 1337)."""

from __future__ import annotations

import sys

from pilot.localmesh import netns as _netns
from pilot.localmesh.netns import (
    NODE_ADDRESS,
    PREFIX,
    PROGRAMS,
    PROXY_UID,
    SUBNET,
    HttpAnswer,
    Mesh,
    NetnsError,
    Pod,
    PodProcess,
    delete,
    ip,
    mesh,
    namespaces,
    pids_in,
    python_for,
    python_program,
    runnable_by_anyone,
    sweep_leftovers,
)


def unavailable() -> str | None:
    """Why the tests cannot make a mesh here (their skip reason), or None when they can."""
    reason = _netns.unavailable()
    if reason is None and python_for(PROXY_UID) is None:
        return f"no Python interpreter that uid {PROXY_UID} may run (this one is {sys.executable})"
    return reason


__all__ = [
    "NODE_ADDRESS",
    "PREFIX",
    "PROGRAMS",
    "PROXY_UID",
    "SUBNET",
    "HttpAnswer",
    "Mesh",
    "NetnsError",
    "Pod",
    "PodProcess",
    "delete",
    "ip",
    "mesh",
    "namespaces",
    "pids_in",
    "python_for",
    "python_program",
    "runnable_by_anyone",
    "sweep_leftovers",
    "unavailable",
]
