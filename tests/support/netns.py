"""The network-namespace mesh for tests: pilot.localmesh.netns (the harness ``pilot demo --mesh`` runs
too), plus the one check only tests need, a Python interpreter the proxy's uid may run (their sidecar
stand-ins in pilot/localmesh/pod_programs/ run as uid 1337)."""

from __future__ import annotations

import sys

import pytest

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
from pilot.localmesh.pod_sidecar import proxy_envoy


def unavailable() -> str | None:
    """Why the tests cannot make a mesh here (their skip reason), or None when they can."""
    reason = _netns.unavailable()
    if reason is None and python_for(PROXY_UID) is None:
        return f"no Python interpreter that uid {PROXY_UID} may run (this one is {sys.executable})"
    return reason


def proxy_envoy_or_skip() -> str:
    """The envoy binary a sidecar (uid 1337) runs; skips the test, saying why, where no mesh can run."""
    reason = unavailable()
    if reason is not None:
        pytest.skip(reason)
    envoy = proxy_envoy()
    if envoy is None:
        pytest.skip(f"no envoy binary that uid {PROXY_UID} may run")
    return envoy


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
    "proxy_envoy_or_skip",
    "python_for",
    "python_program",
    "runnable_by_anyone",
    "sweep_leftovers",
    "unavailable",
]
