"""Bookinfo's ``reviews`` as a real mesh on one machine: pods in network namespaces, capture rules,
Envoy sidecars as uid 1337, all configured by ``pilot serve`` over ADS. ``pilot demo --mesh`` runs it
for a user; tests/capture/test_netns_mesh_routing.py runs it as a module fixture.

Pods (pilot.localmesh.netns): clients ``productpage-v1`` and ``productpage-v2``, servers
``reviews-v1`` and ``reviews-v2`` whose app answers on 9080. Every pod gets ``pilot iptables``'
rules (an injected sidecar's) and a sidecar with its labels. ``pilot serve`` runs in the node (the
outer namespace) and watches a folder holding a ServiceEntry for reviews.default.svc.cluster.local at
address 10.96.0.10 whose endpoints are the two reviews pods, a DestinationRule with subsets v1 and
v2, and a VirtualService: ``sourceLabels`` app=productpage,version=v2 to v2, everyone else 50/50.
The reviews pods' sidecars get their inbound chain ``0.0.0.0_9080`` and cluster ``inbound|9080||``
because their addresses are the ServiceEntry's endpoints (pilot's service targets). The clients'
/etc/hosts (``Mesh.add_hosts``) resolves the service name to its address, which nothing in the mesh
has: only capture gets a connection there.

With ``mtls`` the mesh has identities: ``pilot serve --ca-dir`` opens the secure port 15012, each pod's
service account is its name, its token comes from ``pilot token``, and its sidecar is ``pilot agent``
running Envoy (pod_sidecar.py ``AgentIdentity``). The ServiceEntry's endpoints then name their service
accounts and carry ``security.istio.io/tlsMode: istio`` (they run sidecars), so the clients' clusters
upgrade to ISTIO_MUTUAL (auto mTLS) and the reviews pods' ``virtualInbound`` is PERMISSIVE.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pilot.localmesh import netns
from pilot.localmesh.pod_sidecar import AgentIdentity, PodSidecar
from pilot.localmesh.polling import wait_until

__all__ = [
    "CLIENTS",
    "HOST",
    "PORT",
    "SERVERS",
    "VIP",
    "Reply",
    "ReviewsMesh",
    "Trace",
    "config_yaml",
    "reviews_mesh",
]

HOST = "reviews.default.svc.cluster.local"
VIP = "10.96.0.10"  # the ServiceEntry's address, as a ClusterIP: no pod has it
PORT = 9080  # the service's and the app's, as in Bookinfo
XDS_PORT = 15010  # pilot's, in the node's namespace
XDS_TLS_PORT = 15012  # pilot's secure port (the CA and authenticated ADS), with ``mtls``
TLS_MODE_LABEL = "security.istio.io/tlsMode"  # what Istio's injector puts on a pod with a sidecar
HTTP_PORT = 15014
CLIENTS: dict[str, dict[str, str]] = {
    "productpage-v1": {"app": "productpage", "version": "v1"},
    "productpage-v2": {"app": "productpage", "version": "v2"},
}
SERVERS: dict[str, dict[str, str]] = {
    "reviews-v1": {"app": "reviews", "version": "v1"},
    "reviews-v2": {"app": "reviews", "version": "v2"},
}
# The client whose labels the VirtualService's first route matches (sourceLabels).
CANARY_LABELS = CLIENTS["productpage-v2"]
START_TIMEOUT = 30.0
APP_TIMEOUT = 5.0

Progress = Callable[[str], None]


def specs(endpoints: Mapping[str, str], mtls: bool = False) -> list[tuple[str, str, dict[str, Any]]]:
    """(kind, name, spec) of the mesh's config; ``endpoints`` maps version to pod address. With
    ``mtls`` the endpoints name their service account (``reviews-VERSION``) and their sidecar."""
    sidecar = {TLS_MODE_LABEL: "istio"} if mtls else {}

    def identity(version: str) -> dict[str, str]:
        return {"serviceAccount": f"reviews-{version}"} if mtls else {}

    service = {
        "hosts": [HOST],
        "addresses": [VIP],
        "location": "MESH_INTERNAL",
        "resolution": "STATIC",
        "ports": [{"number": PORT, "name": "http", "protocol": "HTTP"}],
        "endpoints": [
            {
                "address": address,
                "labels": {"app": "reviews", "version": version, **sidecar},
                **identity(version),
            }
            for version, address in sorted(endpoints.items())
        ],
    }
    subsets = [{"name": v, "labels": {"version": v}} for v in sorted(endpoints)]
    route = {
        "hosts": ["reviews"],
        "http": [
            {
                "match": [{"sourceLabels": dict(CANARY_LABELS)}],
                "route": [{"destination": {"host": "reviews", "subset": "v2"}}],
            },
            {
                "route": [
                    {"destination": {"host": "reviews", "subset": "v1"}, "weight": 50},
                    {"destination": {"host": "reviews", "subset": "v2"}, "weight": 50},
                ]
            },
        ],
    }
    return [
        ("ServiceEntry", "reviews", service),
        ("DestinationRule", "reviews", {"host": "reviews", "subsets": subsets}),
        ("VirtualService", "reviews", route),
    ]


def config_yaml(endpoints: Mapping[str, str], mtls: bool = False) -> str:
    """The config as one file of Istio YAML for ``pilot serve --config-dir``."""
    documents = [
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": kind,
            "metadata": {"name": name, "namespace": "default"},
            "spec": spec,
        }
        for kind, name, spec in specs(endpoints, mtls)
    ]
    return yaml.safe_dump_all(documents, sort_keys=False)


@dataclass(frozen=True)
class Reply:
    """One request's answer: HTTP status, the app that answered, the peer it saw and the address it
    was reached at (pilot/localmesh/pod_programs/http_app.py)."""

    status: int
    app: str
    peer: str
    reached: str
    client_cert: str = ""  # x-forwarded-client-cert as the server's sidecar set it

    @property
    def version(self) -> str:
        return self.app.rpartition("-")[2]


@dataclass(frozen=True)
class Trace:
    """One request and the counters it moved in the client's and the server's sidecar."""

    client: str
    reply: Reply
    client_counters: dict[str, int]
    server: str
    server_counters: dict[str, int]
    # Connections each pod's REDIRECT rules turned, by chain (ISTIO_REDIRECT, ISTIO_IN_REDIRECT).
    client_captured: dict[str, int]
    server_captured: dict[str, int]


@dataclass
class ReviewsMesh:
    mesh: netns.Mesh
    sidecars: dict[str, PodSidecar]
    pilot_log: Path
    config_dir: Path
    ca_dir: Path | None = None  # with mtls: pilot's CA directory (root-cert.pem, the token key)

    def pod(self, name: str) -> netns.Pod:
        return self.mesh.pods[name]

    def get(self, client: str, count: int = 1) -> list[Reply]:
        """``count`` plain GETs of http://reviews.default.svc.cluster.local:9080/ from ``client``'s app."""
        answers = self.mesh.http_gets(self.pod(client), HOST, PORT, count)
        return [_reply(answer) for answer in answers]

    def pilot_debug(self, path: str) -> Any:
        """The JSON of pilot's debug endpoint ``path`` (``/debug/syncz``), fetched in the node."""
        fetch = f"import urllib.request as u; print(u.urlopen('http://127.0.0.1:{HTTP_PORT}{path}').read().decode())"
        done = self.mesh.run(self.mesh.node, [sys.executable, "-c", fetch])
        if done.returncode != 0:
            raise netns.NetnsError(f"pilot {path}: {done.stderr.strip()}")
        return json.loads(done.stdout)

    def captured(self, name: str) -> dict[str, int]:
        """Packets that the REDIRECT rules of pod ``name`` turned, by chain (``iptables-save -c``: a nat
        rule sees the first packet of each connection only)."""
        saved = self.mesh.run(self.pod(name), ["iptables-save", "-c", "-t", "nat"])
        if saved.returncode != 0:
            raise netns.NetnsError(f"iptables-save in {name}: {saved.stderr.strip()}")
        counts: dict[str, int] = {}
        for line in saved.stdout.splitlines():
            packets, _, rule = line.partition("] -A ")
            chain = rule.partition(" ")[0]
            if packets.startswith("[") and "-j REDIRECT" in rule:
                counts[chain] = counts.get(chain, 0) + int(packets[1:].partition(":")[0])
        return counts

    def trace(self, client: str) -> Trace:
        """One request from ``client``, with the counters that moved in both sidecars and both pods'
        capture rules."""
        stats = {name: sidecar.stats() for name, sidecar in self.sidecars.items()}
        captured = {name: self.captured(name) for name in self.sidecars}
        reply = self.get(client)[0]
        server = next(name for name in SERVERS if reply.app == name) if reply.status == 200 else ""
        return Trace(
            client=client,
            reply=reply,
            client_counters=_moved(stats[client], self.sidecars[client].stats()),
            server=server,
            server_counters=_moved(stats[server], self.sidecars[server].stats()) if server else {},
            client_captured=_moved(captured[client], self.captured(client)),
            server_captured=_moved(captured[server], self.captured(server)) if server else {},
        )


def _reply(answer: netns.HttpAnswer) -> Reply:
    if answer.status != 200:
        return Reply(answer.status, "", "", "")
    body = answer.json()
    return Reply(answer.status, body["app"], body["peer"], body["reached"], body.get("client_cert", ""))


def _moved(before: Mapping[str, int], after: Mapping[str, int]) -> dict[str, int]:
    """Counters that went up, by how much (gauges that moved too: the caller picks what it shows)."""
    return {name: value - before.get(name, 0) for name, value in after.items() if value > before.get(name, 0)}


@contextmanager
def reviews_mesh(
    workdir: Path,
    envoy: str,
    *,
    prefix: str = netns.PREFIX,
    progress: Progress | None = None,
    mtls: bool = False,
    secret_ttl: str = "24h",
    extra_pods: tuple[str, ...] = (),
) -> Iterator[ReviewsMesh]:
    """The mesh, started and configured (every sidecar has its routes and endpoints); removed on exit.

    ``workdir`` (root's, existing) gets the config folder, pilot's log and the sidecars' admin sockets.
    ``mtls``: sidecars under ``pilot agent`` with certificates of ``secret_ttl``; ``extra_pods`` are
    more pods, with neither capture nor sidecar.
    """
    say = progress or (lambda text: None)
    with netns.mesh(*CLIENTS, *SERVERS, *extra_pods, prefix=prefix) as mesh:
        say(f"namespaces: {mesh.outer} (node {netns.NODE_ADDRESS}, bridge {netns.BRIDGE}) and one per pod")
        workdir.chmod(0o711)  # the sidecars (uid 1337) reach their own folders in it
        config_dir = workdir / "config"
        config_dir.mkdir()
        endpoints = {labels["version"]: mesh.pods[name].address for name, labels in SERVERS.items()}
        (config_dir / "reviews.yaml").write_text(config_yaml(endpoints, mtls))
        # pilot first: its start-up overlaps the pods' (the sidecars retry until it answers).
        pilot_log = workdir / "pilot.log"
        serve = [sys.executable, "-m", "pilot", "serve", "--config-dir", str(config_dir)]
        serve += ["--xds-host", netns.NODE_ADDRESS, "--xds-port", str(XDS_PORT)]
        serve += ["--http-host", "127.0.0.1", "--http-port", str(HTTP_PORT), "--debounce-after", "0.05"]
        ca_dir = workdir / "ca" if mtls else None
        if ca_dir is not None:
            serve += ["--ca-dir", str(ca_dir), "--xds-tls-port", str(XDS_TLS_PORT)]
        pilot = mesh.start_service(mesh.node, serve, pilot_log)
        say(f"pilot serve in the node, pid {pilot.pid}: xDS {netns.NODE_ADDRESS}:{XDS_PORT}")
        labels = {**CLIENTS, **SERVERS}
        pods = [mesh.pods[name] for name in labels]
        with ThreadPoolExecutor(len(pods)) as installing:  # each is a `pilot iptables` process
            list(installing.map(mesh.install_capture, pods))
        for pod in pods:
            say(f"pod {pod.name:<15} {pod.address}  labels {_labels(labels[pod.name])}")
        for name in CLIENTS:
            mesh.add_hosts(mesh.pods[name], {HOST: VIP})
            # The service address is routed out of the pod, as a pod's default route would route it;
            # capture turns the connection to 15001 before it leaves.
            netns.ip("-n", mesh.pods[name].netns, "route", "add", "default", "via", netns.NODE_ADDRESS)
        app = netns.python_program(netns.PROGRAMS / "http_app.py")
        apps = [mesh.spawn(mesh.pods[name], [*app, name, str(PORT)]) for name in SERVERS]
        for started in apps:
            started.log.wait_for(lambda line: line == "listening", APP_TIMEOUT)
        agents: dict[str, AgentIdentity] = {}
        if ca_dir is not None:
            agents = identities(mesh, ca_dir, workdir, labels, secret_ttl, pilot)
        sidecars = {
            name: PodSidecar(
                mesh,
                mesh.pods[name],
                labels[name],
                workdir / name,
                xds_host=netns.NODE_ADDRESS,
                xds_port=XDS_PORT,
                envoy=envoy,
                agent=agents.get(name),
            ).start()
            for name in labels
        }
        say(f"sidecars: Envoy as uid {netns.PROXY_UID} in every pod, configured by pilot over ADS")
        built = ReviewsMesh(mesh, sidecars, pilot_log, config_dir, ca_dir)
        wait_until(
            lambda: _configured(built, pilot.poll()),
            START_TIMEOUT,
            0.1,
            "every sidecar configured by pilot",
            ignore=(OSError, ValueError),
        )
        yield built


def token(ca_dir: Path, namespace: str, service_account: str, path: Path) -> Path:
    """``pilot token`` for ``namespace/service_account`` written to ``path``, readable by the sidecar."""
    argv = [sys.executable, "-m", "pilot", "token", "--ca-dir", str(ca_dir)]
    argv += ["--namespace", namespace, "--service-account", service_account]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise netns.NetnsError(f"pilot token: {done.stderr.strip()}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(done.stdout.strip() + "\n")
    path.chmod(0o644)
    return path


def identities(
    mesh: netns.Mesh,
    ca_dir: Path,
    workdir: Path,
    labels: Mapping[str, Mapping[str, str]],
    secret_ttl: str,
    pilot: subprocess.Popen[bytes],
) -> dict[str, AgentIdentity]:
    """Each pod's agent settings, once pilot has made its CA (root and token-signing key): the pod's
    service account is its name."""
    root = ca_dir / "root-cert.pem"
    wait_until(
        lambda: pilot.poll() is None and root.exists() and (ca_dir / "token-signing-key.pem").exists(),
        START_TIMEOUT,
        0.1,
        "pilot's CA directory",
    )
    ca_dir.chmod(0o755)
    root.chmod(0o644)
    address = f"{netns.NODE_ADDRESS}:{XDS_TLS_PORT}"
    return {
        name: AgentIdentity(
            address, root, name, token(ca_dir, "default", name, workdir / "tokens" / name), secret_ttl
        )
        for name in labels
    }


def _labels(labels: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in labels.items())


def _configured(built: ReviewsMesh, pilot_exit: int | None) -> bool:
    """Clients have both subsets' endpoints, servers their inbound chain for 9080; raises if pilot or
    an Envoy exited."""
    if pilot_exit is not None:
        tail = "\n".join(built.pilot_log.read_text(errors="replace").splitlines()[-20:])
        raise netns.NetnsError(f"pilot serve exited ({pilot_exit}):\n{tail}")
    for name, sidecar in built.sidecars.items():
        printed = sidecar.exited()
        if printed is not None:
            raise netns.NetnsError(f"the sidecar of {name} exited:\n{printed}")
    for name in CLIENTS:
        stats = built.sidecars[name].stats()
        for version in ("v1", "v2"):
            if stats.get(f"cluster.outbound|{PORT}|{version}|{HOST}.membership_healthy", 0) < 1:
                return False
    return all(f"0.0.0.0_{PORT}" in built.sidecars[name].inbound_chains() for name in SERVERS)
