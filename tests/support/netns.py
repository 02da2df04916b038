"""A mesh of pods on one machine, without Docker: network namespaces on a bridge, as a Kubernetes
node wires its pods.

Layout (every name starts with ``pilot-t<PID>-<N>-``, PID being the test process)::

    OUTER netns  ── bridge br0 ──┬── veth ── POD netns "a": eth0 10.44.0.2/24, lo
                   10.44.0.1/24  └── veth ── POD netns "b": eth0 10.44.0.3/24, lo

Nothing here runs in, or changes, the host's own network namespace: the bridge and the bridge-side
veth ends are created inside OUTER (``ip -n OUTER``), the pod-side ends go straight into their pod's
namespace, and the pods' traffic stays on that bridge. Processes run in a pod through
``nsenter --net=/run/netns/POD``, optionally as another uid/gid (the proxy's 1337). ``Mesh.node`` is
OUTER itself, reachable from every pod at the bridge's address: the place for what a Kubernetes node
runs beside its pods (pilot, for one). ``Mesh.install_capture`` runs ``pilot iptables --apply`` in a pod.

Cleanup: ``Mesh.close`` kills every process it started and any other process still in its
namespaces, then deletes the pod namespaces (which destroys their veths) and OUTER (which destroys the
bridge). ``mesh()`` calls it on every exit path, and first sweeps namespaces left by test processes
that are gone (killed before their cleanup ran), recognised by the PID in their name, so a concurrent
run's namespaces are never touched.

Small programs for pods (an HTTP app, a plain HTTP client, a sidecar stand-in) are in
tests/support/pod_programs/; ``Mesh.http_get`` runs the client.

Needs root, ``ip`` (iproute2), ``nsenter`` (util-linux) and, to install capture rules,
``iptables-restore`` (iptables); ``unavailable()`` says which is missing.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

PREFIX = "pilot-t"
NAME = re.compile(rf"^{PREFIX}(\d+)-")
SUBNET = "10.44.0"  # pod addresses; only ever assigned inside namespaces this module made
PREFIX_LENGTH = 24
BRIDGE = "br0"
NODE_ADDRESS = f"{SUBNET}.1"  # the bridge's own address, in OUTER
POD_INTERFACE = "eth0"
NETNS_DIR = Path("/run/netns")
TOOLS = ("ip", "nsenter", "iptables-restore", "iptables-save")
COMMAND_TIMEOUT = 10.0
PROXY_UID = 1337  # Istio's sidecar uid, which capture never redirects
PROGRAMS = Path(__file__).parent / "pod_programs"

_serial = itertools.count(1)


class NetnsError(RuntimeError):
    """A command that builds or tears down the mesh failed."""


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=COMMAND_TIMEOUT)
    if check and result.returncode != 0:
        raise NetnsError(f"ip {' '.join(args)}: exit {result.returncode}: {result.stderr.strip()}")
    return result


def unavailable() -> str | None:
    """Why a mesh cannot be made here (a skip reason), or None when it can."""
    if os.geteuid() != 0:
        return f"network namespaces need root (the tests run as uid {os.geteuid()})"
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        return f"missing {', '.join(missing)} (Debian: apt-get install iproute2 iptables util-linux)"
    if python_for(PROXY_UID) is None:
        return f"no Python interpreter that uid {PROXY_UID} may run (this one is {sys.executable})"
    probe = f"{PREFIX}{os.getpid()}-probe"
    made = ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"cannot create a network namespace: {made.stderr.strip()}"
    ip("netns", "delete", probe, check=False)
    return None


def namespaces() -> list[str]:
    """Every named network namespace (``ip netns list`` prints ``NAME`` or ``NAME (id: N)``)."""
    return [line.split()[0] for line in ip("netns", "list").stdout.splitlines() if line.strip()]


def pids_in(netns: str) -> list[int]:
    return [int(pid) for pid in ip("netns", "pids", netns, check=False).stdout.split()]


def kill_all_in(netns: str) -> None:
    """SIGKILL every process whose network namespace is ``netns``, and wait (bounded) until none is."""
    deadline = time.monotonic() + COMMAND_TIMEOUT
    while (pids := pids_in(netns)) and time.monotonic() < deadline:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.02)


def delete(netns: str) -> None:
    kill_all_in(netns)
    ip("netns", "delete", netns, check=False)


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_leftovers() -> list[str]:
    """Delete the namespaces of test processes that no longer run; returns their names."""
    swept = []
    for name in namespaces():
        match = NAME.match(name)
        if match and not process_alive(int(match.group(1))):
            delete(name)
            swept.append(name)
    return swept


class LineLog:
    """The lines a process prints, collected by a thread, waited on with a deadline."""

    def __init__(self, stream: IO[str]) -> None:
        self.lines: list[str] = []
        self.closed = False
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self.closed = True
            self._changed.notify_all()

    def wait_for(self, predicate: Callable[[str], bool], timeout: float = 5.0) -> str:
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = next((line for line in self.lines if predicate(line)), None)
                if found is not None:
                    return found
                if self.closed:
                    raise NetnsError(f"the process ended without such a line; it printed {self.lines!r}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no such line within {timeout:g} s; got {self.lines!r}")
                self._changed.wait(left)

    def matching(self, predicate: Callable[[str], bool]) -> list[str]:
        with self._changed:
            return [line for line in self.lines if predicate(line)]


@dataclass
class PodProcess:
    """A process started in a pod; its stdout (and stderr) lines are in ``log``."""

    pod: Pod
    argv: tuple[str, ...]
    process: subprocess.Popen[str]
    log: LineLog


@dataclass(frozen=True)
class HttpAnswer:
    """What the client printed: the address it sent from, and the answer's status and body."""

    local: str
    status: int
    body: str

    def json(self) -> dict[str, str]:
        """The body of pod_programs/http_app.py: app, peer (as the app saw it) and reached."""
        decoded: dict[str, str] = json.loads(self.body)
        return decoded


@dataclass(frozen=True)
class Pod:
    name: str
    netns: str
    address: str

    def command(self, argv: Sequence[str], uid: int | None = None) -> list[str]:
        """``argv`` run in this pod's network namespace, as ``uid`` (and gid ``uid``, no other groups)."""
        enter = ["nsenter", f"--net={NETNS_DIR / self.netns}"]
        if uid is not None:
            enter += [f"--setgid={uid}", f"--setuid={uid}"]
        return [*enter, "--", *argv]


@dataclass
class Mesh:
    """Pods on one bridge inside one outer namespace; ``close()`` removes all of it."""

    tag: str = field(default_factory=lambda: f"{PREFIX}{os.getpid()}-{next(_serial)}")
    pods: dict[str, Pod] = field(default_factory=dict)
    processes: list[PodProcess] = field(default_factory=list)
    created: list[str] = field(default_factory=list)

    @property
    def outer(self) -> str:
        return f"{self.tag}-outer"

    @property
    def node(self) -> Pod:
        """OUTER as a place to run processes; pods reach it at NODE_ADDRESS."""
        return Pod(name="node", netns=self.outer, address=NODE_ADDRESS)

    def start(self) -> Mesh:
        self._add_netns(self.outer)
        ip("-n", self.outer, "link", "set", "lo", "up")
        ip("-n", self.outer, "link", "add", BRIDGE, "type", "bridge")
        ip("-n", self.outer, "addr", "add", f"{NODE_ADDRESS}/{PREFIX_LENGTH}", "dev", BRIDGE)
        ip("-n", self.outer, "link", "set", BRIDGE, "up")
        return self

    def add_pod(self, name: str) -> Pod:
        index = len(self.pods) + 2  # .1 is left for a gateway
        pod = Pod(name=name, netns=f"{self.tag}-{name}", address=f"{SUBNET}.{index}")
        self._add_netns(pod.netns)
        bridge_side = f"veth{index}"
        ip(
            "-n",
            self.outer,
            "link",
            "add",
            bridge_side,
            "type",
            "veth",
            "peer",
            "name",
            POD_INTERFACE,
            "netns",
            pod.netns,
        )
        ip("-n", self.outer, "link", "set", bridge_side, "master", BRIDGE, "up")
        ip("-n", pod.netns, "link", "set", "lo", "up")
        ip("-n", pod.netns, "addr", "add", f"{pod.address}/{PREFIX_LENGTH}", "dev", POD_INTERFACE)
        ip("-n", pod.netns, "link", "set", POD_INTERFACE, "up")
        self.pods[name] = pod
        return pod

    def _add_netns(self, name: str) -> None:
        ip("netns", "add", name)
        self.created.append(name)

    def spawn(self, pod: Pod, argv: Sequence[str], uid: int | None = None) -> PodProcess:
        process = subprocess.Popen(
            pod.command(argv, uid),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        assert process.stdout is not None
        started = PodProcess(pod, tuple(argv), process, LineLog(process.stdout))
        self.processes.append(started)
        return started

    def run(
        self, pod: Pod, argv: Sequence[str], uid: int | None = None, timeout: float = COMMAND_TIMEOUT
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            pod.command(argv, uid), capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
        )

    def http_get(self, pod: Pod, host: str, port: int, uid: int | None = None) -> HttpAnswer:
        """One plain HTTP GET from ``pod`` (pod_programs/http_client.py), as ``uid``."""
        client = python_program(PROGRAMS / "http_client.py", uid)
        done = self.run(pod, [*client, host, str(port)], uid)
        if done.returncode != 0:
            raise NetnsError(f"GET http://{host}:{port}/ from {pod.name}: {done.stderr.strip()}")
        printed = json.loads(done.stdout)
        return HttpAnswer(local=printed["local"], status=printed["status"], body=printed["body"])

    def install_capture(self, pod: Pod, *flags: str) -> None:
        """``pilot iptables --apply FLAGS`` in ``pod`` (no flags: the rules of an injected sidecar)."""
        done = self.run(pod, [sys.executable, "-m", "pilot", "iptables", "--apply", *flags])
        if done.returncode != 0:
            raise NetnsError(f"pilot iptables in {pod.name}: exit {done.returncode}: {done.stderr.strip()}")

    def close(self) -> None:
        """Stop every process, then delete the pods' namespaces and the outer one; never raises."""
        for started in self.processes:
            if started.process.poll() is None:
                started.process.kill()
        for started in self.processes:
            try:
                started.process.wait(COMMAND_TIMEOUT)
            except subprocess.TimeoutExpired:
                pass
            if started.process.stdout is not None:
                started.process.stdout.close()
        for name in reversed(self.created):
            delete(name)
        self.created.clear()


def runnable_by_anyone(path: str) -> bool:
    """Whether every folder on the way to ``path`` and the file itself are executable by others."""
    real = Path(os.path.realpath(path))
    return real.is_file() and all(part.stat().st_mode & stat.S_IXOTH for part in (real, *real.parents))


def python_for(uid: int | None) -> str | None:
    """A Python interpreter that ``uid`` may run: this one (it may live under /root), else the system's."""
    if uid is None:
        return sys.executable
    candidates = (sys.executable, "/usr/bin/python3", shutil.which("python3") or "")
    return next((path for path in candidates if path and runnable_by_anyone(path)), None)


def python_program(path: Path, uid: int | None = None) -> list[str]:
    """``python3 -I -c SOURCE``: the program's text on the command line, so ``uid`` needs no access to
    this checkout, only to an interpreter (``unavailable`` checks there is one)."""
    interpreter = python_for(uid)
    if interpreter is None:
        raise NetnsError(f"no Python interpreter that uid {uid} may run")
    return [interpreter, "-I", "-c", path.read_text()]


@contextmanager
def mesh(*pod_names: str) -> Iterator[Mesh]:
    """A started mesh with these pods, removed on exit (also when building it fails half-way)."""
    sweep_leftovers()
    built = Mesh()
    try:
        built.start()
        for name in pod_names:
            built.add_pod(name)
        yield built
    finally:
        built.close()


__all__ = [
    "NODE_ADDRESS",
    "PROGRAMS",
    "HttpAnswer",
    "Mesh",
    "NetnsError",
    "Pod",
    "PodProcess",
    "mesh",
    "namespaces",
    "python_for",
    "python_program",
    "sweep_leftovers",
    "unavailable",
]
