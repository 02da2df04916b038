"""The docker-compose demo (manifests/docker-compose/) as data, and the same topology without Docker.

compose.yaml is the one description of the topology. Its services say which container runs pilot
(the ``pilot`` service), which run demo backends (an entrypoint of ``python -m
pilot.demo.serve_backend``) and which run Envoys (a service with an ``io.pilot.node-id`` label:
its node id; its bootstrap is the file mounted at /etc/envoy/envoy.yaml, printed by ``pilot
bootstrap`` for that node id). A sidecar shares the network namespace of its app container
(``network_mode: service:APP``): the two make a *pod*. An ``io.pilot.labels`` label
(``"istio=ingressgateway"``, several separated by commas) gives an Envoy workload labels, sent as
node metadata ``LABELS`` (``pilot bootstrap --label``): a router's Gateway selectors match them.

Without Docker every container becomes a process on 127.0.0.1, where the pods' separate network
namespaces collapse into one. ``LocalTopology`` therefore gives every (pod, port) pair a port of its
own, and rewrites the config and the bootstraps to match: a ServiceEntry's port belongs to the pod
of the sidecar that sees it (that listens on it; a port no sidecar sees stays as written), an
endpoint ``127.0.0.1`` to the pod of the Envoy that sees it, an endpoint named after a compose
service to that service's pod; every such address becomes 127.0.0.1. A Gateway server's port
belongs to the pod of the router its selector picks, and the server binds 127.0.0.1. Everything
else is used as written.

    python -m pilot.demo.compose bootstraps [--check]    regenerate (or check) the bootstraps
    python -m pilot.demo.compose up [--free-ports]       run the topology on 127.0.0.1
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pilot.bootstrap import XDS_CLUSTER
from pilot.demo import serve_backend
from pilot.localmesh.backend import Backend
from pilot.localmesh.control_plane import PilotProcess
from pilot.localmesh.envoy import EnvoyProcess
from pilot.localmesh.loopback import LOOPBACK, free_port
from pilot.localmesh.process_group import sigterm_as_interrupt
from pilot.translate.proxy import NodeType, Proxy
from pilot.xds.names import WILDCARD_ADDRESS, listener_name

__all__ = [
    "COMPOSE_DIR",
    "BackendService",
    "ComposeDemo",
    "EnvoyService",
    "LocalTopology",
    "PortMap",
    "bootstrap_argv",
    "exported_to",
    "localize_bootstrap",
    "localize_config",
    "main",
    "parse_labels",
    "render_bootstrap",
    "strip_header",
]

COMPOSE_DIR = Path(__file__).resolve().parents[2] / "manifests" / "docker-compose"
COMPOSE_FILE = "compose.yaml"
PILOT_SERVICE = "pilot"
NODE_ID_LABEL = "io.pilot.node-id"
LABELS_LABEL = "io.pilot.labels"
BACKEND_MODULE = "pilot.demo.serve_backend"
ENVOY_CONFIG = "/etc/envoy/envoy.yaml"
PILOT_CONFIG = "/etc/pilot/config"
XDS_PORT = 15010
HTTP_PORT = 15014
ADMIN_PORT = 15000
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost"})
CONFIG_SUFFIXES = frozenset({".yaml", ".yml", ".json"})


# --- compose.yaml as data ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Mount:
    host: Path
    container: str
    read_only: bool


@dataclass(frozen=True, slots=True)
class EnvoyService:
    name: str
    pod: str
    node_id: str
    namespace: str
    bootstrap: Path  # on the host
    published: tuple[tuple[int, int], ...]  # (host port, container port)
    labels: tuple[tuple[str, str], ...] = ()  # as written in io.pilot.labels

    @property
    def metadata(self) -> dict[str, Any]:
        """The node metadata its bootstrap carries."""
        return {"LABELS": dict(self.labels)} if self.labels else {}

    @property
    def proxy(self) -> Proxy:
        return Proxy.from_node(self.node_id, self.metadata)

    @property
    def is_router(self) -> bool:
        return self.proxy.type is NodeType.ROUTER

    def selected_by(self, selector: Mapping[str, str]) -> bool:
        """Whether a Gateway ``selector`` picks this Envoy: a router whose labels include it."""
        labels = dict(self.labels)
        return self.is_router and all(labels.get(str(k)) == str(v) for k, v in selector.items())


@dataclass(frozen=True, slots=True)
class BackendService:
    name: str
    pod: str
    version: str
    host: str
    port: int


def parse_labels(text: str) -> tuple[tuple[str, str], ...]:
    """An ``io.pilot.labels`` value: ``"istio=ingressgateway,app=gw"`` → ``(("istio", "ingressgateway"),
    ("app", "gw"))``."""
    out: dict[str, str] = {}
    for item in str(text).split(","):
        key, sep, value = item.strip().partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{LABELS_LABEL} {text!r}: expected KEY=VALUE[,KEY=VALUE...]")
        out[key.strip()] = value.strip()
    return tuple(out.items())


def _parse_port(entry: Any) -> tuple[int, int]:
    """A short-syntax ``ports`` entry (``"8080:8080"``, ``"127.0.0.1:8080:8080"``) → (host, container)."""
    if isinstance(entry, dict):
        return int(entry["published"]), int(entry["target"])
    parts = str(entry).split("/")[0].split(":")
    if len(parts) < 2:
        raise ValueError(f"port {entry!r}: publish it as HOST:CONTAINER")
    return int(parts[-2]), int(parts[-1])


class ComposeDemo:
    """compose.yaml of ``directory``, read once."""

    def __init__(self, directory: Path = COMPOSE_DIR) -> None:
        self.directory = Path(directory)
        self.path = self.directory / COMPOSE_FILE
        self.data: dict[str, Any] = yaml.safe_load(self.path.read_text(encoding="utf-8"))
        self.services: dict[str, dict[str, Any]] = dict(self.data.get("services") or {})

    def pod(self, service: str) -> str:
        """The service whose network namespace ``service`` lives in (itself, unless it joined one)."""
        mode = str(self.services[service].get("network_mode", ""))
        return mode.removeprefix("service:") if mode.startswith("service:") else service

    def mounts(self, service: str) -> list[Mount]:
        out = []
        for entry in self.services[service].get("volumes", []):
            if isinstance(entry, dict):
                host, container = str(entry["source"]), str(entry["target"])
                read_only = bool(entry.get("read_only", False))
            else:
                host, container, *mode = str(entry).split(":")
                read_only = "ro" in mode[0].split(",") if mode else False
            out.append(Mount((self.directory / host).resolve(), container, read_only))
        return out

    def mount(self, service: str, container: str) -> Path:
        """The host path mounted at ``container`` in ``service``."""
        for mount in self.mounts(service):
            if mount.container == container:
                return mount.host
        raise ValueError(f"{service}: nothing is mounted at {container}")

    def published(self, service: str) -> tuple[tuple[int, int], ...]:
        return tuple(_parse_port(entry) for entry in self.services[service].get("ports", []))

    @property
    def config_dir(self) -> Path:
        """The folder of Istio YAML that pilot watches."""
        return self.mount(PILOT_SERVICE, PILOT_CONFIG)

    def envoys(self) -> list[EnvoyService]:
        out = []
        for name, service in self.services.items():
            labels = service.get("labels") or {}
            node_id = labels.get(NODE_ID_LABEL)
            if node_id is None:
                continue
            out.append(EnvoyService(
                name=name,
                pod=self.pod(name),
                node_id=str(node_id),
                namespace=Proxy.from_node(str(node_id)).namespace,
                bootstrap=self.mount(name, ENVOY_CONFIG),
                published=self.published(name),
                labels=parse_labels(labels[LABELS_LABEL]) if LABELS_LABEL in labels else (),
            ))
        return out

    def backends(self) -> list[BackendService]:
        out = []
        for name, service in self.services.items():
            if list(service.get("entrypoint") or [])[-2:] != ["-m", BACKEND_MODULE]:
                continue
            args = serve_backend.build_parser().parse_args([str(a) for a in service.get("command") or []])
            out.append(BackendService(name, self.pod(name), args.version, args.host, args.port))
        return out

    def service_pods(self) -> dict[str, str]:
        return {name: self.pod(name) for name in self.services}


# --- bootstraps --------------------------------------------------------------------------------


def bootstrap_argv(node_id: str, labels: Sequence[tuple[str, str]] = ()) -> list[str]:
    """The ``pilot bootstrap`` arguments of a demo Envoy: pilot by its compose name, admin on 15000,
    a ``--label`` per workload label."""
    argv = ["bootstrap", "--node-id", node_id, "--xds-address", f"{PILOT_SERVICE}:{XDS_PORT}",
            "--admin-port", str(ADMIN_PORT)]
    for key, value in labels:
        argv += ["--label", f"{key}={value}"]
    return [*argv, "--output", "yaml"]


def render_bootstrap(node_id: str, labels: Sequence[tuple[str, str]] = ()) -> str:
    """What ``pilot bootstrap`` prints for ``node_id`` (and ``labels``), under a comment saying how
    it was made."""
    from pilot import cli

    argv = bootstrap_argv(node_id, labels)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli.main(argv)
    if code != 0:
        raise RuntimeError(f"pilot {shlex.join(argv)} exited with {code}")
    return (
        "# Generated by `python -m pilot.demo.compose bootstraps` from compose.yaml; do not edit.\n"
        f"# {shlex.join(['pilot', *argv])}\n" + out.getvalue()
    )


def strip_header(text: str) -> str:
    """A bootstrap file without its leading comment lines: what ``pilot bootstrap`` printed."""
    lines = text.splitlines(keepends=True)
    while lines and lines[0].startswith("#"):
        lines.pop(0)
    return "".join(lines)


def write_bootstraps(demo: ComposeDemo, *, check: bool = False) -> list[Path]:
    """Write every Envoy's bootstrap (or, with ``check``, only list those that differ)."""
    stale = []
    for envoy in demo.envoys():
        text = render_bootstrap(envoy.node_id, envoy.labels)
        current = envoy.bootstrap.read_text(encoding="utf-8") if envoy.bootstrap.exists() else None
        if current != text:
            stale.append(envoy.bootstrap)
            if not check:
                envoy.bootstrap.parent.mkdir(parents=True, exist_ok=True)
                envoy.bootstrap.write_text(text, encoding="utf-8")
    return stale


# --- the same topology on 127.0.0.1 ------------------------------------------------------------


class PortMap:
    """A port on 127.0.0.1 for every (pod, container port): the pinned ones as given, others free."""

    def __init__(self, pinned: Mapping[tuple[str, int], int] | None = None,
                 allocate: Callable[[], int] = free_port) -> None:
        self._ports: dict[tuple[str, int], int] = dict(pinned or {})
        if len(set(self._ports.values())) != len(self._ports):
            raise ValueError(f"two pods pinned to one port: {self._ports}")
        self._allocate = allocate

    def __call__(self, pod: str, port: int) -> int:
        key = (pod, int(port))
        if key not in self._ports:
            taken = set(self._ports.values())
            found = self._allocate()
            while found in taken:
                found = self._allocate()
            self._ports[key] = found
        return self._ports[key]

    def items(self) -> list[tuple[tuple[str, int], int]]:
        return sorted(self._ports.items())


def exported_to(export_to: Sequence[str], namespace: str, target: str) -> bool:
    """Whether an object of ``namespace`` with ``exportTo: export_to`` is seen from ``target``
    (no exportTo: every namespace, the mesh's default)."""
    for entry in export_to or ["*"]:
        if entry == "*" or entry == target or (entry == "." and target == namespace):
            return True
    return False


def _one_pod(where: str, what: str, envoys: Sequence[EnvoyService]) -> str | None:
    """The pod of ``envoys`` (None if there are none); ValueError if they are in several pods."""
    pods = sorted({envoy.pod for envoy in envoys})
    if len(pods) > 1:
        raise ValueError(f"{where}: {what} in pods {', '.join(pods)}; on 127.0.0.1 they would share a port")
    return pods[0] if pods else None


def _localize_service_entry(
    doc: dict[str, Any], where: str, envoys: Sequence[EnvoyService], service_pods: Mapping[str, str],
    ports: Callable[[str, int], int], listeners: dict[str, set[tuple[str, int]]],
) -> None:
    metadata = doc.get("metadata") or {}
    spec = doc.get("spec") or {}
    if spec.get("workloadSelector"):
        raise ValueError(f"{where}: workloadSelector cannot be moved to 127.0.0.1")
    namespace = str(metadata.get("namespace") or "default")
    seen_by = [e for e in envoys if exported_to(list(spec.get("exportTo") or []), namespace, e.namespace)]
    sidecars = [e for e in seen_by if not e.is_router]  # routers listen on Gateway ports only
    listening_pod = _one_pod(where, "sidecars listen on its ports", sidecars)
    service_ports = list(spec.get("ports") or [])
    for port in service_ports:
        if "targetPort" in port:
            raise ValueError(f"{where}: targetPort cannot be moved to 127.0.0.1; give endpoint ports")
    for endpoint in spec.get("endpoints") or []:
        address = str(endpoint.get("address", ""))
        if address in LOOPBACK_NAMES:
            pod = _one_pod(where, f"Envoys that send to {address}", seen_by)
            if pod is None:
                raise ValueError(f"{where}: endpoint {address} belongs to no Envoy's pod: no Envoy sees it")
        else:
            pod = service_pods.get(address)
            if pod is None:
                raise ValueError(f"{where}: endpoint {address!r} is neither 127.0.0.1 nor a compose service")
        named = dict(endpoint.get("ports") or {})
        # An endpoint without a port for a service port is reached on the service port number.
        for port in service_ports:
            named.setdefault(str(port["name"]), int(port["number"]))
        endpoint["address"] = LOOPBACK
        endpoint["ports"] = {name: ports(pod, int(number)) for name, number in named.items()}
    if listening_pod is None:
        return  # nobody listens on its ports: they only name its clusters
    for port in service_ports:
        port["number"] = ports(listening_pod, int(port["number"]))
        for envoy in sidecars:
            listeners.setdefault(envoy.name, set()).add((WILDCARD_ADDRESS, port["number"]))


def _localize_gateway(
    doc: dict[str, Any], where: str, envoys: Sequence[EnvoyService],
    ports: Callable[[str, int], int], listeners: dict[str, set[tuple[str, int]]],
) -> None:
    spec = doc.get("spec") or {}
    routers = [e for e in envoys if e.selected_by(dict(spec.get("selector") or {}))]
    pod = _one_pod(where, "routers it selects are", routers)
    if pod is None:
        return  # it selects no router of compose.yaml: no listener anywhere
    for server in spec.get("servers") or []:
        bind = str(server.get("bind") or "")
        if bind not in ("", WILDCARD_ADDRESS, *LOOPBACK_NAMES):
            raise ValueError(f"{where}: a server bound to {bind!r} cannot be moved to 127.0.0.1")
        server["bind"] = LOOPBACK
        port = server["port"]
        port["number"] = ports(pod, int(port["number"]))
        for envoy in routers:
            listeners.setdefault(envoy.name, set()).add((LOOPBACK, port["number"]))


def localize_config(
    text: str,
    envoys: Sequence[EnvoyService],
    service_pods: Mapping[str, str],
    ports: Callable[[str, int], int],
    listeners: dict[str, set[tuple[str, int]]] | None = None,
) -> str | None:
    """The YAML ``text`` with its ServiceEntries and Gateways moved to 127.0.0.1 (see the module
    doc); None if it has neither. ``listeners`` collects, per Envoy (compose service name), the
    (address, local port) pairs it will listen on."""
    docs = list(yaml.safe_load_all(text))
    found: dict[str, set[tuple[str, int]]] = {} if listeners is None else listeners
    changed = False
    for doc in docs:
        if not isinstance(doc, dict) or doc.get("kind") not in ("ServiceEntry", "Gateway"):
            continue
        metadata = doc.get("metadata") or {}
        where = f"{doc['kind']} {metadata.get('namespace', 'default')}/{metadata.get('name')}"
        if doc["kind"] == "ServiceEntry":
            _localize_service_entry(doc, where, envoys, service_pods, ports, found)
        else:
            _localize_gateway(doc, where, envoys, ports, found)
        changed = True
    if not changed:
        return None
    return "---\n".join(yaml.safe_dump(doc, sort_keys=False) for doc in docs)


def localize_bootstrap(bootstrap: Mapping[str, Any], xds_port: int) -> dict[str, Any]:
    """A demo bootstrap pointing at pilot on ``127.0.0.1:xds_port``, with its admin on a port of
    the kernel's choosing (port 0). Raises ValueError if it does not point at ``pilot:15010``."""
    out: dict[str, Any] = copy.deepcopy(dict(bootstrap))
    moved = 0
    for cluster in out.get("static_resources", {}).get("clusters", []):
        if cluster.get("name") != XDS_CLUSTER:
            continue
        for group in cluster["load_assignment"]["endpoints"]:
            for lb_endpoint in group["lb_endpoints"]:
                address = lb_endpoint["endpoint"]["address"]["socket_address"]
                if (address["address"], int(address["port_value"])) != (PILOT_SERVICE, XDS_PORT):
                    raise ValueError(f"the xDS cluster points at {address}, not {PILOT_SERVICE}:{XDS_PORT}")
                address["address"] = LOOPBACK
                address["port_value"] = xds_port
                moved += 1
    if moved == 0:
        raise ValueError(f"no {XDS_CLUSTER} cluster endpoint in the bootstrap")
    if "admin" in out:
        out["admin"]["address"]["socket_address"]["port_value"] = 0
    return out


class LocalTopology:
    """The compose demo as processes on 127.0.0.1: ``pilot serve``, the backends and the Envoys.

    ``keep_published`` keeps the host ports compose.yaml publishes (8080, 15014) so the documented
    curl commands work as written; otherwise every port is a free one. ``start()`` returns once
    every Envoy listens where its config says; ``stop()`` stops everything it started.
    """

    def __init__(self, workdir: Path, demo: ComposeDemo | None = None, *, keep_published: bool = False,
                 debounce_after: float = 0.1, envoy_log_level: str = "warning") -> None:
        self.demo = demo or ComposeDemo()
        self.workdir = Path(workdir)
        self.config_dir = self.workdir / "config"
        pinned: dict[tuple[str, int], int] = {}
        if keep_published:
            for name in self.demo.services:
                for host, container in self.demo.published(name):
                    pinned[(self.demo.pod(name), container)] = host
        self.ports = PortMap(pinned)
        pilot_pod = self.demo.pod(PILOT_SERVICE)
        self.pilot = PilotProcess(
            self.config_dir, self.workdir / "pilot.log",
            xds_port=self.ports(pilot_pod, XDS_PORT), http_port=self.ports(pilot_pod, HTTP_PORT),
            debounce_after=debounce_after,
        )
        self.backend_services = self.demo.backends()
        self.backends: dict[str, Backend] = {}
        self.envoy_services = {envoy.name: envoy for envoy in self.demo.envoys()}
        self.envoys: dict[str, EnvoyProcess] = {}
        for envoy in self.envoy_services.values():
            process = EnvoyProcess(envoy.node_id, self.pilot.xds_port, self.workdir, name=envoy.name,
                                   metadata=envoy.metadata, log_level=envoy_log_level)
            committed = yaml.safe_load(envoy.bootstrap.read_text(encoding="utf-8"))
            process.bootstrap = localize_bootstrap(committed, self.pilot.xds_port)
            self.envoys[envoy.name] = process
        # Per Envoy: the (address, local port) pairs its config makes it listen on.
        self.listeners: dict[str, set[tuple[str, int]]] = {}

    def port(self, service: str, container_port: int) -> int:
        """The local port standing for ``container_port`` of ``service`` (e.g. front-envoy 8080)."""
        return self.ports(self.demo.pod(service), container_port)

    def write_config(self) -> None:
        """Copy pilot's config folder into ``config_dir``, its ServiceEntries and Gateways moved to
        127.0.0.1."""
        source = self.demo.config_dir
        envoys, service_pods = list(self.envoy_services.values()), self.demo.service_pods()
        self.listeners.clear()
        for path in sorted(source.rglob("*")):
            if not path.is_file() or path.suffix not in CONFIG_SUFFIXES:
                continue
            target = self.config_dir / path.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            text = path.read_text(encoding="utf-8")
            moved = localize_config(text, envoys, service_pods, self.ports, self.listeners)
            if moved is not None:
                text = f"# {path.name} of the compose demo, moved to {LOOPBACK}\n" + moved
            target.write_text(text, encoding="utf-8")

    def start(self, timeout: float = 20.0) -> LocalTopology:
        try:
            self.workdir.mkdir(parents=True, exist_ok=True)
            self.write_config()
            for backend in self.backend_services:
                self.backends[backend.name] = Backend(backend.version, self.ports(backend.pod, backend.port))
                self.backends[backend.name].start()
            self.pilot.start()
            for process in self.envoys.values():
                process.start()
            for name, process in self.envoys.items():
                process.wait_configured(timeout)
                for address, port in sorted(self.listeners.get(name, ())):
                    process.wait_listener(listener_name(port, address), timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the Envoys, pilot and the backends; safe to call twice."""
        try:
            for process in reversed(self.envoys.values()):
                process.stop()
            self.pilot.stop()
        finally:
            for backend in self.backends.values():
                backend.stop()

    def __enter__(self) -> LocalTopology:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- command line ------------------------------------------------------------------------------




def _bootstraps(args: argparse.Namespace) -> int:
    demo = ComposeDemo(args.compose_dir)
    stale = write_bootstraps(demo, check=args.check)
    for path in stale:
        print(f"{'stale' if args.check else 'wrote'} {path}")
    if args.check and stale:
        print("run: python -m pilot.demo.compose bootstraps", file=sys.stderr)
        return 1
    return 0


def _describe(topology: LocalTopology) -> str:
    lines = [f"the docker-compose topology on {LOOPBACK}, without Docker (config: {topology.config_dir})",
             f"  {PILOT_SERVICE:<20} pid {topology.pilot.pid}  xDS {LOOPBACK}:{topology.pilot.xds_port}"
             f"  debug http://{LOOPBACK}:{topology.pilot.http_port}/debug/syncz"]
    for name, backend in topology.backends.items():
        lines.append(f"  {name:<20} backend {backend.version} on {LOOPBACK}:{backend.port}")
    for name, process in topology.envoys.items():
        envoy = topology.envoy_services[name]
        kind = "router" if envoy.is_router else "sidecar"
        ports = ", ".join(f"{address}:{port}" for address, port in sorted(topology.listeners.get(name, ())))
        lines.append(f"  {name:<20} envoy ({kind}) pid {process.pid}  listens on {ports or 'nothing'}"
                     f"  admin http://{LOOPBACK}:{process.admin_port}/")
    for envoy in topology.envoy_services.values():
        for _, container in envoy.published:
            port = topology.port(envoy.name, container)
            lines += [
                f"try ({envoy.name}, published {container} in compose.yaml):",
                f"  for i in $(seq 100); do curl -s http://{LOOPBACK}:{port}/ \\",
                "    | grep -o '\"version\": \"v[0-9]*\"'; done | sort | uniq -c",
            ]
    lines += [f"edit {topology.config_dir / 'reviews-virtualservice.yaml'} to shift the traffic;",
              "Ctrl-C stops everything."]
    return "\n".join(lines)


def _up(args: argparse.Namespace) -> int:
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="pilot-compose-"))
    topology = LocalTopology(workdir, ComposeDemo(args.compose_dir), keep_published=not args.free_ports,
                             envoy_log_level="info")
    try:
        with sigterm_as_interrupt():
            try:
                topology.start()
                print(_describe(topology), flush=True)
                deadline = None if args.duration is None else time.monotonic() + args.duration
                while deadline is None or time.monotonic() < deadline:
                    time.sleep(0.2)
                    if not topology.pilot.running():
                        print(f"pilot exited:\n{topology.pilot.log_tail(20)}", file=sys.stderr)
                        return 1
            except KeyboardInterrupt:
                print(file=sys.stderr)
            finally:
                topology.stop()
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pilot.demo.compose",
                                     description="The docker-compose demo: its bootstraps, or the same "
                                                 "topology on 127.0.0.1 without Docker.")
    parser.add_argument("--compose-dir", type=Path, default=COMPOSE_DIR,
                        help="folder of compose.yaml (default: manifests/docker-compose)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    boot = commands.add_parser("bootstraps", help="write every Envoy bootstrap with `pilot bootstrap`")
    boot.add_argument("--check", action="store_true", help="only report stale bootstraps (exit 1)")
    boot.set_defaults(handler=_bootstraps)
    up = commands.add_parser("up", help="run the topology on 127.0.0.1 until Ctrl-C")
    up.add_argument("--free-ports", action="store_true",
                    help="use free ports instead of the published ones (8080, 15014)")
    up.add_argument("--duration", type=float, default=None, metavar="SECONDS", help="stop after this long")
    up.add_argument("--workdir", default=None, help="keep config and logs here (default: a temporary folder)")
    up.set_defaults(handler=_up)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    return handler(args)


if __name__ == "__main__":
    raise SystemExit(main())
