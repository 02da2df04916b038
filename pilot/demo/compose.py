"""The docker-compose demo without Docker: its topology as processes on 127.0.0.1, and its bootstraps.

``LocalTopology`` runs what compose.yaml describes (pilot.demo.compose_file) with real processes on
127.0.0.1 (pilot.localmesh), the config and bootstraps moved there (pilot.demo.compose_localize).
It reads the compose.yaml and config/ packaged with pilot unless told another folder, so it runs
from an installed wheel as from a checkout.

    python -m pilot.demo.compose up [--free-ports]       run the topology on 127.0.0.1
    python -m pilot.demo.compose bootstraps [--check]    regenerate (or check) the checkout's bootstraps
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pilot.demo.compose_file import (
    HTTP_PORT,
    PILOT_SERVICE,
    XDS_PORT,
    ComposeDemo,
    demo_bootstrap,
    write_bootstraps,
)
from pilot.demo.compose_localize import PortMap, localize_bootstrap, localize_config
from pilot.localmesh.backend import Backend
from pilot.localmesh.control_plane import PilotProcess
from pilot.localmesh.envoy import EnvoyProcess
from pilot.localmesh.loopback import LOOPBACK
from pilot.localmesh.process_group import sigterm_as_interrupt
from pilot.xds.names import listener_name

__all__ = ["BootstrapsOptions", "LocalTopology", "UpOptions", "build_parser", "main"]

CONFIG_SUFFIXES = frozenset({".yaml", ".yml", ".json"})
# The checkout's copy, the one `docker compose` runs; `bootstraps` is run from the repository root.
CHECKOUT_DIR = Path("manifests/docker-compose")


class LocalTopology:
    """The compose demo as processes on 127.0.0.1: ``pilot serve``, the backends and the Envoys.

    ``keep_published`` keeps the host ports compose.yaml publishes (8080, 15014) so the documented
    curl commands work as written; otherwise every port is a free one. ``start()`` returns once
    every Envoy listens where its config says; ``stop()`` stops everything it started.
    """

    def __init__(
        self,
        workdir: Path,
        demo: ComposeDemo | None = None,
        *,
        keep_published: bool = False,
        debounce_after: float = 0.1,
        envoy_log_level: str = "warning",
    ) -> None:
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
            self.config_dir,
            self.workdir / "pilot.log",
            xds_port=self.ports(pilot_pod, XDS_PORT),
            http_port=self.ports(pilot_pod, HTTP_PORT),
            debounce_after=debounce_after,
        )
        self.backend_services = self.demo.backends()
        self.backends: dict[str, Backend] = {}
        self.envoy_services = {envoy.name: envoy for envoy in self.demo.envoys()}
        self.envoys: dict[str, EnvoyProcess] = {}
        for envoy in self.envoy_services.values():
            process = EnvoyProcess(
                envoy.node_id,
                self.pilot.xds_port,
                self.workdir,
                name=envoy.name,
                metadata=envoy.metadata,
                log_level=envoy_log_level,
            )
            # The bootstrap the container gets (the checkout's bootstraps/ hold the same), moved here.
            process.bootstrap = localize_bootstrap(
                demo_bootstrap(envoy.node_id, envoy.labels), self.pilot.xds_port
            )
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


@dataclass(frozen=True, slots=True)
class BootstrapsOptions:
    compose_dir: Path = CHECKOUT_DIR
    check: bool = False  # only report stale bootstraps


@dataclass(frozen=True, slots=True)
class UpOptions:
    compose_dir: Path | None = None  # None: the packaged copy
    free_ports: bool = False  # instead of the ports compose.yaml publishes
    duration: float | None = None  # None: until Ctrl-C
    workdir: Path | None = None  # None: a temporary folder, removed on the way out


def bootstraps(options: BootstrapsOptions) -> int:
    stale = write_bootstraps(ComposeDemo(options.compose_dir), check=options.check)
    for path in stale:
        print(f"{'stale' if options.check else 'wrote'} {path}")
    if options.check and stale:
        print("run: python -m pilot.demo.compose bootstraps", file=sys.stderr)
        return 1
    return 0


def describe(topology: LocalTopology) -> str:
    lines = [
        f"the docker-compose topology on {LOOPBACK}, without Docker (config: {topology.config_dir})",
        f"  {PILOT_SERVICE:<20} pid {topology.pilot.pid}  xDS {LOOPBACK}:{topology.pilot.xds_port}"
        f"  debug http://{LOOPBACK}:{topology.pilot.http_port}/debug/syncz",
    ]
    for name, backend in topology.backends.items():
        lines.append(f"  {name:<20} backend {backend.version} on {LOOPBACK}:{backend.port}")
    for name, process in topology.envoys.items():
        envoy = topology.envoy_services[name]
        kind = "router" if envoy.is_router else "sidecar"
        ports = ", ".join(f"{address}:{port}" for address, port in sorted(topology.listeners.get(name, ())))
        lines.append(
            f"  {name:<20} envoy ({kind}) pid {process.pid}  listens on {ports or 'nothing'}"
            f"  admin http://{LOOPBACK}:{process.admin_port}/"
        )
    for envoy in topology.envoy_services.values():
        for _, container in envoy.published:
            port = topology.port(envoy.name, container)
            lines += [
                f"try ({envoy.name}, published {container} in compose.yaml):",
                f"  for i in $(seq 100); do curl -s http://{LOOPBACK}:{port}/ \\",
                '    | grep -o \'"version": "v[0-9]*"\'; done | sort | uniq -c',
            ]
    lines += [
        f"edit {topology.config_dir / 'reviews-virtualservice.yaml'} to shift the traffic;",
        "Ctrl-C stops everything.",
    ]
    return "\n".join(lines)


def up(options: UpOptions) -> int:
    workdir = options.workdir or Path(tempfile.mkdtemp(prefix="pilot-compose-"))
    topology = LocalTopology(
        workdir,
        ComposeDemo(options.compose_dir),
        keep_published=not options.free_ports,
        envoy_log_level="info",
    )
    try:
        with sigterm_as_interrupt():
            try:
                topology.start()
                print(describe(topology), flush=True)
                deadline = None if options.duration is None else time.monotonic() + options.duration
                while deadline is None or time.monotonic() < deadline:
                    time.sleep(0.2)  # watching pilot, and the clock
                    if not topology.pilot.running():
                        print(f"pilot exited:\n{topology.pilot.log_tail(20)}", file=sys.stderr)
                        return 1
            except KeyboardInterrupt:
                print(file=sys.stderr)
            finally:
                topology.stop()
    finally:
        if options.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pilot.demo.compose",
        description="The docker-compose demo: the same topology on 127.0.0.1 "
        "without Docker, or its bootstraps.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    run = commands.add_parser("up", help="run the topology on 127.0.0.1 until Ctrl-C")
    run.add_argument(
        "--compose-dir",
        type=Path,
        default=None,
        help="folder of compose.yaml and config/ (default: the copy installed with pilot)",
    )
    run.add_argument(
        "--free-ports", action="store_true", help="use free ports instead of the published ones (8080, 15014)"
    )
    run.add_argument("--duration", type=float, default=None, metavar="SECONDS", help="stop after this long")
    run.add_argument(
        "--workdir", type=Path, default=None, help="keep config and logs here (default: a temporary folder)"
    )
    boot = commands.add_parser(
        "bootstraps", help="write every Envoy bootstrap, as `pilot bootstrap` prints it"
    )
    boot.add_argument(
        "--compose-dir",
        type=Path,
        default=CHECKOUT_DIR,
        help="folder of compose.yaml and bootstraps/ (run from the repository root)",
    )
    boot.add_argument("--check", action="store_true", help="only report stale bootstraps (exit 1)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "bootstraps":
        return bootstraps(BootstrapsOptions(compose_dir=args.compose_dir, check=args.check))
    return up(
        UpOptions(
            compose_dir=args.compose_dir,
            free_ports=args.free_ports,
            duration=args.duration,
            workdir=args.workdir,
        )
    )


if __name__ == "__main__":
    raise SystemExit(main())
