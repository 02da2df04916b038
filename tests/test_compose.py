"""The docker-compose demo (manifests/docker-compose/) holds together, checked without a Docker engine.

compose.yaml, the Dockerfile, the Envoy bootstraps and the Istio YAML pilot reads must agree with
each other: every mounted file exists, every bootstrap is what ``pilot bootstrap`` prints and what
the real Envoy binary accepts, every Envoy points at the pilot service, every published port is a
port something listens on, and every ServiceEntry endpoint is a compose service (or the pod's own
loopback) on a port something there listens on. tests/e2e/test_compose_topology.py runs the same
topology with real processes.
"""

from __future__ import annotations

import fnmatch
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from pilot.config.parse import parse_text
from pilot.config.store import ConfigStore
from pilot.demo import compose
from pilot.demo.compose import (
    ADMIN_PORT,
    ENVOY_CONFIG,
    HTTP_PORT,
    NODE_ID_LABEL,
    PILOT_CONFIG,
    PILOT_SERVICE,
    XDS_PORT,
    ComposeDemo,
    EnvoyService,
    PortMap,
    bootstrap_argv,
    localize_bootstrap,
    localize_config,
    render_bootstrap,
    strip_header,
)
from pilot.settings import Settings
from pilot.translate.context import PushContext
from pilot.translate.proxy import Proxy
from pilot.translate.snapshot import build_snapshot
from tests.support import find_envoy, free_port, get, wait_until

REPO = Path(__file__).resolve().parent.parent
DIR = REPO / "manifests" / "docker-compose"
DEMO = ComposeDemo(DIR)
ENVOYS = DEMO.envoys()
BACKENDS = DEMO.backends()
DOCKERFILE = DIR / "Dockerfile"
LISTENER_TYPE = "type.googleapis.com/envoy.config.listener.v3.Listener"
CLUSTER_TYPE = "type.googleapis.com/envoy.config.cluster.v3.Cluster"


def envoy_ids(envoy: EnvoyService) -> str:
    return envoy.name


def config_docs() -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in sorted(DEMO.config_dir.rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict):
                yield path, doc


def service_entries() -> list[dict[str, Any]]:
    return [doc for _, doc in config_docs() if doc.get("kind") == "ServiceEntry"]


def listener_ports(namespace: str) -> set[int]:
    """The ports an Envoy in ``namespace`` listens on: its namespace's ServiceEntry ports."""
    return {int(port["number"]) for se in service_entries()
            if se["metadata"].get("namespace", "default") == namespace for port in se["spec"]["ports"]}


def envoy_in_pod(pod: str) -> EnvoyService | None:
    return next((envoy for envoy in ENVOYS if envoy.pod == pod), None)


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def instruction(name: str) -> list[str]:
    return [rest for word, rest in dockerfile_instructions() if word == name]


# --- the topology has what the docs promise ----------------------------------------------------


def test_topology_has_pilot_two_sidecars_and_a_front_envoy() -> None:
    assert PILOT_SERVICE in DEMO.services
    assert {envoy.name for envoy in ENVOYS} == {"front-envoy", "reviews-v1-sidecar", "reviews-v2-sidecar"}
    assert {(b.name, b.version) for b in BACKENDS} == {("reviews-v1", "v1"), ("reviews-v2", "v2")}
    # Each sidecar lives in its app's pod; the front envoy in a pod of its own.
    assert {envoy.name: envoy.pod for envoy in ENVOYS} == {
        "front-envoy": "front-envoy", "reviews-v1-sidecar": "reviews-v1", "reviews-v2-sidecar": "reviews-v2",
    }
    assert DEMO.published("front-envoy") == ((8080, 8080),)


def test_virtual_service_splits_80_20() -> None:
    (vs,) = [doc for path, doc in config_docs() if doc.get("kind") == "VirtualService"]
    weights = {d["destination"]["subset"]: d["weight"] for d in vs["spec"]["http"][0]["route"]}
    assert weights == {"v1": 80, "v2": 20}
    assert (DEMO.config_dir / "reviews-virtualservice.yaml").exists()  # the file the docs say to edit


# --- bootstraps --------------------------------------------------------------------------------


@pytest.mark.parametrize("envoy", ENVOYS, ids=envoy_ids)
def test_bootstrap_is_what_pilot_bootstrap_prints(envoy: EnvoyService) -> None:
    printed = subprocess.run(
        [sys.executable, "-m", "pilot", *bootstrap_argv(envoy.node_id)],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout
    committed = envoy.bootstrap.read_text()
    assert strip_header(committed) == printed, "stale: run python -m pilot.demo.compose bootstraps"
    assert committed == render_bootstrap(envoy.node_id)


def test_no_bootstrap_is_stale() -> None:
    assert compose.write_bootstraps(DEMO, check=True) == []
    assert sorted(p.name for p in (DIR / "bootstraps").iterdir()) == sorted(e.bootstrap.name for e in ENVOYS)


@pytest.mark.parametrize("envoy", ENVOYS, ids=envoy_ids)
def test_bootstrap_validates_with_envoy(envoy: EnvoyService) -> None:
    result = subprocess.run(
        [str(find_envoy()), "--mode", "validate", "-c", str(envoy.bootstrap), "-l", "warning",
         "--disable-hot-restart"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("envoy", ENVOYS, ids=envoy_ids)
def test_bootstrap_points_at_pilot(envoy: EnvoyService) -> None:
    bootstrap = yaml.safe_load(envoy.bootstrap.read_text())
    assert bootstrap["node"]["id"] == envoy.node_id
    (xds,) = bootstrap["static_resources"]["clusters"]
    (group,) = xds["load_assignment"]["endpoints"]
    (lb_endpoint,) = group["lb_endpoints"]
    address = lb_endpoint["endpoint"]["address"]["socket_address"]
    # pilot by its compose service name (resolved by Docker's DNS), on the port pilot serves xDS.
    assert (address["address"], address["port_value"]) == (PILOT_SERVICE, XDS_PORT)
    assert xds["type"] == "STRICT_DNS"
    assert Settings().xds_port == XDS_PORT
    # The admin API stays on the container's loopback: never published (it could not be).
    admin = bootstrap["admin"]["address"]["socket_address"]
    assert (admin["address"], admin["port_value"]) == ("127.0.0.1", ADMIN_PORT)
    assert ADMIN_PORT not in {container for _, container in DEMO.published(envoy.pod)}


# --- compose.yaml ------------------------------------------------------------------------------


def test_every_mounted_path_exists() -> None:
    for name in DEMO.services:
        for mount in DEMO.mounts(name):
            assert mount.host.exists(), f"{name}: {mount.host} (mounted at {mount.container}) is missing"
            assert mount.read_only, f"{name}: mount {mount.container} should be read-only"
    assert DEMO.config_dir == DIR / "config"


def test_depends_on_names_services_and_health_checked_ones_have_a_check() -> None:
    for name, service in DEMO.services.items():
        for target, condition in (service.get("depends_on") or {}).items():
            assert target in DEMO.services, f"{name} depends on unknown {target}"
            assert condition["condition"] in {"service_started", "service_healthy"}
            if condition["condition"] == "service_healthy":
                own = DEMO.services[target].get("healthcheck")
                # Without its own check a service built from the Dockerfile has the image's HEALTHCHECK.
                assert own or "build" in DEMO.services[target], f"{target} has no health check"
        mode = service.get("network_mode")
        if mode is not None:
            pod = str(mode).removeprefix("service:")
            assert pod in DEMO.services and "network_mode" not in DEMO.services[pod]
            assert "ports" not in service, f"{name} is in {pod}'s network namespace: {pod} publishes"
            assert pod in (service.get("depends_on") or {}), f"{name} should wait for {pod}"


def test_envoy_services() -> None:
    version = subprocess.run([str(find_envoy()), "--version"], capture_output=True, text=True,
                             check=True, timeout=60).stdout
    tested = re.search(r"/(\d+\.\d+)\.\d+/", version)
    assert tested is not None, version
    for envoy in ENVOYS:
        service = DEMO.services[envoy.name]
        image = re.fullmatch(r"envoyproxy/envoy:v(\d+\.\d+)\.\d+", service["image"])
        assert image is not None, service["image"]
        assert image.group(1) == tested.group(1), f"{envoy.name}: Envoy {image.group(1)}, tested: {version}"
        assert service["command"] == ["-c", ENVOY_CONFIG]
        assert envoy.bootstrap.parent == DIR / "bootstraps" and envoy.bootstrap.name == f"{envoy.name}.yaml"
        assert service["depends_on"][PILOT_SERVICE] == {"condition": "service_healthy"}
        assert Proxy.from_node(envoy.node_id).type == "sidecar"


def test_published_ports_are_listened_on() -> None:
    for name in DEMO.services:
        published = DEMO.published(name)
        hosts = [host for host, _ in published]
        assert len(hosts) == len(set(hosts))
        for _, container in published:
            envoy = envoy_in_pod(DEMO.pod(name))
            if name == PILOT_SERVICE:
                assert container in {XDS_PORT, HTTP_PORT}
            else:
                assert envoy is not None, f"{name} publishes {container}, but no Envoy listens there"
                assert container in listener_ports(envoy.namespace), f"{name}: nothing listens on {container}"


def test_pilot_and_backend_services_use_the_pilot_image() -> None:
    pilot = DEMO.services[PILOT_SERVICE]
    build = pilot["build"]
    assert (DIR / build["context"]).resolve() == REPO
    assert (REPO / build["dockerfile"]).resolve() == DOCKERFILE
    assert "command" not in pilot and "entrypoint" not in pilot  # the image's: serve --config-dir ...
    for backend in BACKENDS:
        service = DEMO.services[backend.name]
        assert (service["image"], service["build"]) == (pilot["image"], build)
        assert backend.host == "127.0.0.1", "the app is reached through its sidecar only"


# --- Dockerfile --------------------------------------------------------------------------------


def test_dockerfile_runs_pilot_serve_on_istio_ports() -> None:
    assert instruction("FROM") == ["python:3.11-slim"]
    (expose,) = instruction("EXPOSE")
    settings = Settings()
    assert {int(port) for port in expose.split()} == {settings.xds_port, settings.http_port} == {
        XDS_PORT, HTTP_PORT,
    }
    assert yaml.safe_load(instruction("ENTRYPOINT")[0]) == ["pilot"]
    assert yaml.safe_load(instruction("CMD")[0]) == ["serve", "--config-dir", PILOT_CONFIG]
    (user,) = instruction("USER")
    assert user not in {"root", "0"}
    assert any("pip install ." in run for run in instruction("RUN"))
    (health,) = instruction("HEALTHCHECK")
    assert f"{HTTP_PORT}" in health and "/ready" in health


def test_dockerignore_lets_in_what_the_dockerfile_copies() -> None:
    lines = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()]
    patterns = [line for line in lines if line and not line.startswith("#")]

    def sent(path: str) -> bool:
        included = True
        for pattern in patterns:
            negated = pattern.startswith("!")
            body = pattern.removeprefix("!").rstrip("/")
            if fnmatch.fnmatch(path, body) or path.startswith(body + "/"):
                included = negated
        return included

    for copy in instruction("COPY"):
        for source in copy.split()[:-1]:
            assert sent(source), f"COPY {source}: excluded by .dockerignore"
            assert (REPO / source).exists()
    assert not sent(".venv") and not sent("tests") and not sent(".git")


# --- the Istio YAML ----------------------------------------------------------------------------


def test_config_parses_without_errors() -> None:
    for path in sorted(DEMO.config_dir.rglob("*.yaml")):
        result = parse_text(path.read_text(), str(path))
        assert not result.fatal and not result.errors, (path, result.errors)
        assert result.objects, path


def test_service_entry_endpoints_are_compose_services_or_the_pods_loopback() -> None:
    namespace_pods = DEMO.namespace_pods()
    backend_ports = {(b.pod, b.port) for b in BACKENDS}
    for se in service_entries():
        namespace = se["metadata"].get("namespace", "default")
        assert namespace in namespace_pods, f"no Envoy reads ServiceEntries of namespace {namespace}"
        for endpoint in se["spec"]["endpoints"]:
            (port,) = endpoint["ports"].values()
            if endpoint["address"] == "127.0.0.1":
                # The app beside the sidecar, in the same network namespace.
                assert se["spec"]["resolution"] == "STATIC"
                assert (namespace_pods[namespace], port) in backend_ports
            else:
                # Another pod, by its compose service name: the port its sidecar listens on.
                assert se["spec"]["resolution"] == "DNS"
                pod = DEMO.pod(endpoint["address"])
                envoy = envoy_in_pod(pod)
                assert envoy is not None, f"endpoint {endpoint['address']} has no sidecar"
                assert port in listener_ports(envoy.namespace)


def snapshot_of(envoy: EnvoyService) -> dict[str, list[str]]:
    store = ConfigStore()
    for path in sorted(DEMO.config_dir.rglob("*.yaml")):
        store.apply(parse_text(path.read_text(), str(path)))
    snap = build_snapshot(Proxy.from_node(envoy.node_id).view(), PushContext.build(store.snapshot()))
    return {type_url: sorted(res.resources) for type_url, res in snap.by_type.items()}


@pytest.mark.parametrize("envoy", ENVOYS, ids=envoy_ids)
def test_each_envoy_gets_only_its_own_listeners(envoy: EnvoyService) -> None:
    """exportTo "." keeps each namespace's services to its own Envoy: no two bind one port."""
    resources = snapshot_of(envoy)
    assert resources[LISTENER_TYPE] == [f"0.0.0.0_{port}" for port in sorted(listener_ports(envoy.namespace))]
    outbound = [name for name in resources[CLUSTER_TYPE] if name.startswith("outbound|")]
    if envoy.name == "front-envoy":
        assert outbound == [
            "outbound|8080|v1|reviews.default.svc.cluster.local",
            "outbound|8080|v2|reviews.default.svc.cluster.local",
            "outbound|8080||reviews.default.svc.cluster.local",
        ]
    else:
        assert outbound == [f"outbound|8080||reviews.{envoy.namespace}.svc.cluster.local"]


# --- the pieces that move the topology to 127.0.0.1 --------------------------------------------


def test_localize_config_moves_ports_per_pod() -> None:
    ports = PortMap(allocate=iter(range(20000, 20100)).__next__)
    listeners: dict[str, set[int]] = {}
    text = (DEMO.config_dir / "reviews.yaml").read_text()
    moved = localize_config(text, DEMO.namespace_pods(), DEMO.service_pods(), ports, listeners)
    assert moved is not None
    se = next(doc for doc in yaml.safe_load_all(moved) if doc["kind"] == "ServiceEntry")
    front, v1, v2 = ports("front-envoy", 8080), ports("reviews-v1", 8080), ports("reviews-v2", 8080)
    assert len({front, v1, v2}) == 3
    assert se["spec"]["ports"][0]["number"] == front
    assert [(e["address"], e["ports"]["http"]) for e in se["spec"]["endpoints"]] == [
        ("127.0.0.1", v1), ("127.0.0.1", v2),
    ]
    assert listeners == {"default": {front}}
    pod = localize_config((DEMO.config_dir / "reviews-v1-pod.yaml").read_text(), DEMO.namespace_pods(),
                          DEMO.service_pods(), ports)
    assert pod is not None
    endpoint = yaml.safe_load(pod)["spec"]["endpoints"][0]
    assert endpoint == {"address": "127.0.0.1", "ports": {"http": ports("reviews-v1", 9080)}}
    # A file without ServiceEntries is left as written (comments and all).
    virtual_service = (DEMO.config_dir / "reviews-virtualservice.yaml").read_text()
    assert localize_config(virtual_service, {}, {}, ports) is None


def test_localize_config_refuses_what_it_cannot_place() -> None:
    ports = PortMap()
    unknown_host = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: x, namespace: default}
spec:
  hosts: [x.example.com]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: DNS
  endpoints: [{address: db.example.com}]
"""
    with pytest.raises(ValueError, match="neither 127.0.0.1 nor a compose service"):
        localize_config(unknown_host, {"default": "front-envoy"}, {}, ports)
    with pytest.raises(ValueError, match="no Envoy of compose.yaml is in namespace default"):
        localize_config(unknown_host, {}, {}, ports)


def test_localize_bootstrap_points_at_local_pilot() -> None:
    bootstrap = yaml.safe_load(ENVOYS[0].bootstrap.read_text())
    local = localize_bootstrap(bootstrap, 43210)
    address = local["static_resources"]["clusters"][0]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]
    assert address["endpoint"]["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 43210}
    assert local["admin"]["address"]["socket_address"]["port_value"] == 0
    assert bootstrap["admin"]["address"]["socket_address"]["port_value"] == ADMIN_PORT  # not changed in place
    with pytest.raises(ValueError, match="not pilot:15010"):
        localize_bootstrap(local, 1)


def test_port_map_pins_and_never_repeats() -> None:
    numbers = iter([8080, 8080, 30001, 30001, 30002])
    ports = PortMap({("front-envoy", 8080): 8080}, allocate=lambda: next(numbers))
    assert ports("front-envoy", 8080) == 8080
    assert ports("reviews-v1", 8080) == 30001
    assert ports("reviews-v2", 8080) == 30002
    assert ports("reviews-v1", 8080) == 30001
    with pytest.raises(ValueError):
        PortMap({("a", 1): 5, ("b", 1): 5})


def test_node_id_labels_are_istio_sidecar_ids() -> None:
    for envoy in ENVOYS:
        proxy = Proxy.from_node(DEMO.services[envoy.name]["labels"][NODE_ID_LABEL])
        assert proxy.namespace == envoy.namespace
        assert envoy.node_id.endswith(f"~{envoy.namespace}.svc.cluster.local")


def test_serve_backend_cli_answers_with_its_version(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "pilot.demo.serve_backend", "--version", "v9", "--port", str(port)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        reply = wait_until(lambda: get(port, "/healthz", timeout=2.0), 20.0, 0.1, "serve_backend answering")
        assert (reply.status, reply.version) == (200, "v9")
    finally:
        proc.terminate()
        try:
            assert proc.wait(10) == 0  # SIGTERM (docker stop) is a clean exit
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
