"""A mesh of pods on one machine, without Docker: network namespaces on a bridge, as a Kubernetes
node wires its pods. ``pilot demo --mesh`` and the capture tests build theirs with it.

Layout (every name starts with ``pilot-KIND<PID>-<N>-``, KIND ``t`` for tests and ``demo`` for the
demo, PID being the process that made it)::

    OUTER netns  ── bridge br0 ──┬── veth ── POD netns "a": eth0 10.44.0.2/24, lo
                   10.44.0.1/24  └── veth ── POD netns "b": eth0 10.44.0.3/24, lo

Nothing here runs in, or changes, the host's own network namespace: the bridge and the bridge-side
veth ends are created inside OUTER (``ip -n OUTER``), the pod-side ends go straight into their pod's
namespace, and the pods' traffic stays on that bridge. Processes run in a pod through ``ip netns
exec POD``, which also binds the files of /etc/netns/POD/ over /etc/ (the iproute2 convention for a
namespace's own config): ``Mesh.add_hosts`` writes a pod's /etc/hosts there, so a plain
``curl http://reviews.default.svc.cluster.local:9080/`` in the pod resolves a service's address.
A process runs as another uid/gid (the proxy's 1337) through ``setpriv``. ``Mesh.node`` is OUTER
itself, reachable from every pod at the bridge's address: the place for what a Kubernetes node runs
beside its pods (pilot, for one). ``Mesh.install_capture`` runs ``pilot iptables --apply`` in a pod.

Cleanup: ``Mesh.close`` kills every process it started and any other process still in its
namespaces, then deletes the pod namespaces (which destroys their veths), OUTER (which destroys the
bridge) and their /etc/netns/ folders. ``mesh()`` calls it on every exit path, and first sweeps
namespaces left by processes that are gone (killed before their cleanup ran), recognised by the PID
in their name, so a concurrent run's namespaces are never touched.

Small programs for pods (an HTTP app, a plain HTTP client, a sidecar stand-in) are in
pilot/localmesh/pod_programs/; ``Mesh.http_get`` runs the client.

Needs root, ``ip`` (iproute2), ``setpriv`` (util-linux) and, to install capture rules,
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

from pilot.errors import PilotError
from pilot.localmesh.process_group import interrupts_ignored

PREFIX = "pilot-t"  # the tests' namespaces; the demo's start with DEMO_PREFIX
DEMO_PREFIX = "pilot-demo"
NAME = re.compile(r"^pilot-[a-z]+(\d+)-")
SUBNET = "10.44.0"  # pod addresses; only ever assigned inside namespaces this module made
PREFIX_LENGTH = 24
BRIDGE = "br0"
NODE_ADDRESS = f"{SUBNET}.1"  # the bridge's own address, in OUTER
POD_INTERFACE = "eth0"
NETNS_DIR = Path("/run/netns")
NETNS_ETC = Path("/etc/netns")  # ip netns exec binds /etc/netns/NAME/FILE over /etc/FILE
TOOLS = ("ip", "setpriv", "iptables-restore", "iptables-save")
COMMAND_TIMEOUT = 10.0
PROXY_UID = 1337  # Istio's sidecar uid, which capture never redirects
PROGRAMS = Path(__file__).parent / "pod_programs"
SERVICE_STOP_TIMEOUT = 5.0

_serial = itertools.count(1)


class NetnsError(PilotError):
    """A command that builds or tears down the mesh failed."""


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=COMMAND_TIMEOUT)
    if check and result.returncode != 0:
        raise NetnsError(f"ip {' '.join(args)}: exit {result.returncode}: {result.stderr.strip()}")
    return result


def unavailable(runner: str = "the tests") -> str | None:
    """Why a mesh cannot be made here (a skip reason, or the demo's message), or None when it can.
    ``runner`` names who asks, in the message about root."""
    if os.geteuid() != 0:
        return f"network namespaces need root ({runner} run as uid {os.geteuid()})"
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        return f"missing {', '.join(missing)} (Debian: apt-get install iproute2 iptables util-linux)"
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
    shutil.rmtree(NETNS_ETC / netns, ignore_errors=True)


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_leftovers() -> list[str]:
    """Delete the namespaces of processes (tests, demos) that no longer run; returns their names."""
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
        """``argv`` run in this pod's network namespace (with its /etc/netns/ files), as ``uid`` (and
        gid ``uid``, no other groups)."""
        enter = ["ip", "netns", "exec", self.netns]
        if uid is not None:
            enter += ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--"]
        return [*enter, *argv]


@dataclass
class Mesh:
    """Pods on one bridge inside one outer namespace; ``close()`` removes all of it."""

    prefix: str = PREFIX
    tag: str = ""
    pods: dict[str, Pod] = field(default_factory=dict)
    processes: list[PodProcess] = field(default_factory=list)
    services: list[subprocess.Popen[bytes]] = field(default_factory=list)
    created: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.tag:
            self.tag = f"{self.prefix}{os.getpid()}-{next(_serial)}"

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

    def add_hosts(self, pod: Pod, names: dict[str, str]) -> None:
        """Give ``pod`` an /etc/hosts resolving each name to its address (and localhost)."""
        folder = NETNS_ETC / pod.netns
        folder.mkdir(parents=True, exist_ok=True)
        lines = ["127.0.0.1 localhost", *(f"{address} {name}" for name, address in names.items())]
        (folder / "hosts").write_text("\n".join(lines) + "\n")

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

    def start_service(self, pod: Pod, argv: Sequence[str], log: Path) -> subprocess.Popen[bytes]:
        """A long-running process in ``pod`` with its output in ``log``, in a session of its own so that
        ``close`` ends it with its children (``pilot serve``'s workers would keep a pipe open)."""
        with log.open("ab") as out:
            process = subprocess.Popen(
                pod.command(argv),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.services.append(process)
        return process

    def run(
        self, pod: Pod, argv: Sequence[str], uid: int | None = None, timeout: float = COMMAND_TIMEOUT
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            pod.command(argv, uid), capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
        )

    def http_get(self, pod: Pod, host: str, port: int, uid: int | None = None) -> HttpAnswer:
        """One plain HTTP GET from ``pod`` (pod_programs/http_client.py), as ``uid``."""
        return self.http_gets(pod, host, port, 1, uid)[0]

    def http_gets(
        self, pod: Pod, host: str, port: int, count: int, uid: int | None = None
    ) -> list[HttpAnswer]:
        """``count`` plain HTTP GETs from ``pod``, each on a connection of its own, by one client."""
        client = python_program(PROGRAMS / "http_client.py", uid)
        done = self.run(pod, [*client, host, str(port), str(count)], uid, timeout=COMMAND_TIMEOUT + count)
        if done.returncode != 0:
            raise NetnsError(f"GET http://{host}:{port}/ from {pod.name}: {done.stderr.strip()}")
        answers = [json.loads(line) for line in done.stdout.splitlines()]
        return [HttpAnswer(local=a["local"], status=a["status"], body=a["body"]) for a in answers]

    def install_capture(self, pod: Pod, *flags: str) -> None:
        """``pilot iptables --apply FLAGS`` in ``pod`` (no flags: the rules of an injected sidecar)."""
        done = self.run(pod, [sys.executable, "-m", "pilot", "iptables", "--apply", *flags])
        if done.returncode != 0:
            raise NetnsError(f"pilot iptables in {pod.name}: exit {done.returncode}: {done.stderr.strip()}")

    def close(self) -> None:
        """Stop every process, then delete the pods' namespaces and the outer one; never raises. A
        Ctrl-C (or SIGTERM) while it runs is ignored: it is what the first one started."""
        with interrupts_ignored():
            self._close()

    def _close(self) -> None:
        for service in self.services:
            if service.poll() is None:
                try:
                    os.killpg(service.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            try:
                service.wait(SERVICE_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                pass
        for started in self.processes:
            if started.process.poll() is None:
                started.process.kill()
        # Their children too (``pilot agent``'s Envoy runs in a session of its own and holds the pipe).
        for name in self.created:
            kill_all_in(name)
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
def mesh(*pod_names: str, prefix: str = PREFIX) -> Iterator[Mesh]:
    """A started mesh with these pods, removed on exit (also when building it fails half-way)."""
    sweep_leftovers()
    built = Mesh(prefix=prefix)
    try:
        built.start()
        for name in pod_names:
            built.add_pod(name)
        yield built
    finally:
        built.close()


__all__ = [
    "DEMO_PREFIX",
    "NODE_ADDRESS",
    "PREFIX",
    "PROGRAMS",
    "PROXY_UID",
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
