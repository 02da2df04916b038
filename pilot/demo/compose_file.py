"""The docker-compose demo's compose.yaml as data: which container runs pilot, the backends, the Envoys.

compose.yaml is the one description of the topology. Its services say which container runs pilot
(the ``pilot`` service), which run demo backends (an entrypoint of ``python -m
pilot.demo.serve_backend``) and which run Envoys (a service with an ``io.pilot.node-id`` label:
its node id; its bootstrap is the file mounted at /etc/envoy/envoy.yaml, what ``pilot bootstrap``
prints for that node id). A sidecar shares the network namespace of its app container
(``network_mode: service:APP``): the two make a *pod*. An ``io.pilot.labels`` label
(``"istio=ingressgateway"``, several separated by commas) gives an Envoy workload labels, sent as
node metadata ``LABELS`` (``pilot bootstrap --label``): a router's Gateway selectors match them.

The checkout's manifests/docker-compose/ is what ``docker compose`` runs; compose.yaml and config/
are also package data of pilot (``PACKAGED``), so the topology runs from an installed wheel
(tests/test_compose.py keeps the two copies equal).
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from pilot.bootstrap import build_bootstrap
from pilot.demo import serve_backend
from pilot.translate.proxy import NodeType, Proxy

__all__ = [
    "ADMIN_PORT",
    "ENVOY_CONFIG",
    "HTTP_PORT",
    "LABELS_LABEL",
    "NODE_ID_LABEL",
    "PILOT_CONFIG",
    "PILOT_SERVICE",
    "XDS_PORT",
    "BackendService",
    "ComposeDemo",
    "EnvoyService",
    "bootstrap_argv",
    "demo_bootstrap",
    "packaged_dir",
    "parse_labels",
    "render_bootstrap",
    "strip_header",
    "write_bootstraps",
]

# The folder of pilot.demo that holds compose.yaml and config/ (package data).
PACKAGED = "docker-compose"
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


def packaged_dir() -> Path:
    """The compose.yaml and config/ installed with pilot, found through importlib.resources."""
    found = resources.files("pilot.demo").joinpath(PACKAGED)
    if not isinstance(found, Path):
        # pilot is installed as files (a wheel, an editable checkout), never imported from a zip.
        raise RuntimeError(f"pilot.demo/{PACKAGED} is not a folder on disk: {found}")
    return found


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
    """compose.yaml of ``directory`` (None: the packaged copy), read once."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = Path(directory) if directory is not None else packaged_dir()
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
            out.append(
                EnvoyService(
                    name=name,
                    pod=self.pod(name),
                    node_id=str(node_id),
                    namespace=Proxy.from_node(str(node_id)).namespace,
                    bootstrap=self.mount(name, ENVOY_CONFIG),
                    published=self.published(name),
                    labels=parse_labels(labels[LABELS_LABEL]) if LABELS_LABEL in labels else (),
                )
            )
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
    """The ``pilot bootstrap`` arguments that print a demo Envoy's bootstrap (``demo_bootstrap``)."""
    argv = [
        "bootstrap",
        "--node-id",
        node_id,
        "--xds-address",
        f"{PILOT_SERVICE}:{XDS_PORT}",
        "--admin-port",
        str(ADMIN_PORT),
    ]
    for key, value in labels:
        argv += ["--label", f"{key}={value}"]
    return [*argv, "--output", "yaml"]


def demo_bootstrap(node_id: str, labels: Sequence[tuple[str, str]] = ()) -> dict[str, Any]:
    """A demo Envoy's bootstrap: pilot by its compose name, admin on 15000, ``labels`` as node
    metadata LABELS."""
    return build_bootstrap(
        node_id,
        PILOT_SERVICE,
        XDS_PORT,
        admin_port=ADMIN_PORT,
        metadata={"LABELS": dict(labels)} if labels else None,
    )


def render_bootstrap(node_id: str, labels: Sequence[tuple[str, str]] = ()) -> str:
    """The bootstrap file of ``node_id``: what ``pilot bootstrap`` prints for it, under a comment
    saying how it was made."""
    return (
        "# Generated by `python -m pilot.demo.compose bootstraps` from compose.yaml; do not edit.\n"
        f"# {shlex.join(['pilot', *bootstrap_argv(node_id, labels)])}\n"
        + yaml.safe_dump(demo_bootstrap(node_id, labels), sort_keys=False)
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
