"""The network-namespace harness (tests.support.netns) leaves nothing behind, also after a failure."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.support import netns

PROGRAMS = netns.PROGRAMS


@pytest.fixture(autouse=True)
def needs_namespaces() -> None:
    reason = netns.unavailable()
    if reason is not None:
        pytest.skip(reason)


def gone(pid: int) -> bool:
    """Not running: no such process, or a zombie (this container's init may not reap orphans)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state == "Z"


def test_pods_reach_each_other_over_the_bridge_and_nothing_else():
    with netns.mesh("a", "b") as mesh:
        a, b = mesh.pods["a"], mesh.pods["b"]
        app = netns.python_program(PROGRAMS / "http_app.py")
        mesh.spawn(b, [*app, "b", "8080"]).log.wait_for(lambda line: line == "listening")
        answer = mesh.http_get(a, b.address, 8080).json()
        assert answer["app"] == "b"
        assert answer["peer"].startswith(f"{a.address}:")
        # One route, the bridge's subnet: no default route, no way to any other address.
        routes = mesh.run(a, ["ip", "-4", "route"]).stdout
        assert routes.strip() == f"{netns.SUBNET}.0/24 dev eth0 proto kernel scope link src {a.address}"


def test_a_process_on_the_node_is_reached_from_pods_at_the_bridge_address():
    with netns.mesh("a") as mesh:
        app = netns.python_program(PROGRAMS / "http_app.py")
        mesh.spawn(mesh.node, [*app, "node", "18080"]).log.wait_for(lambda line: line == "listening")
        answer = mesh.http_get(mesh.pods["a"], netns.NODE_ADDRESS, 18080).json()
        assert answer["app"] == "node"
        assert answer["peer"].startswith(f"{mesh.pods['a'].address}:")


def test_close_kills_started_and_stray_processes_and_deletes_every_namespace():
    before = set(netns.namespaces())
    with netns.mesh("a") as mesh:
        pod = mesh.pods["a"]
        started = mesh.spawn(pod, ["sleep", "30"], uid=netns.PROXY_UID)
        # A process the harness did not start: a backgrounded child, orphaned when its shell exits.
        stray = int(mesh.run(pod, ["sh", "-c", "sleep 30 >/dev/null 2>&1 & echo $!"]).stdout)
        made = set(netns.namespaces()) - before
        assert made == {mesh.outer, pod.netns}
        assert netns.pids_in(pod.netns)
    assert set(netns.namespaces()) == before
    assert started.process.returncode is not None
    assert gone(stray)


def test_a_mesh_that_fails_half_way_is_removed():
    before = set(netns.namespaces())
    with pytest.raises(netns.NetnsError, match="File exists"), netns.mesh("a", "a"):
        pass  # the second pod "a" cannot be created
    assert set(netns.namespaces()) == before


def test_the_sweep_deletes_namespaces_of_test_runs_that_are_gone_and_only_those():
    dead = subprocess.Popen(["true"])
    dead.wait()
    left_over = f"{netns.PREFIX}{dead.pid}-1-outer"
    ours = f"{netns.PREFIX}{os.getpid()}-999-outer"
    try:
        netns.ip("netns", "add", left_over)
        netns.ip("netns", "add", ours)
        stray = subprocess.Popen(["ip", "netns", "exec", left_over, "sleep", "30"])
        deadline = time.monotonic() + 5
        while not netns.pids_in(left_over) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert netns.pids_in(left_over) == [stray.pid]
        assert left_over in netns.sweep_leftovers()
        assert stray.wait(5) == -signal.SIGKILL
        names = netns.namespaces()
        assert left_over not in names
        assert ours in names
    finally:
        netns.delete(left_over)
        netns.delete(ours)


def test_without_root_the_reason_says_so(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert netns.unavailable() == "network namespaces need root (the tests run as uid 1000)"
