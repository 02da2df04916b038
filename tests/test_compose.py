"""The docker-compose demo (manifests/docker-compose/) holds together, checked without a Docker engine.

compose.yaml, the Dockerfile, the Envoy bootstraps and the Istio YAML pilot reads must agree with
each other: every mounted file exists, every bootstrap is what ``pilot bootstrap`` prints and what
the real Envoy binary accepts, every Envoy points at the pilot service, the front Envoy is a router
whose labels the ingress Gateway selects, every published port is a port something listens on,
every ServiceEntry endpoint is a compose service (or the pod's own loopback) on a port something
there listens on, and the commands the docs give name these files.
tests/e2e/test_compose_topology.py runs the same topology with real processes.
"""

from __future__ import annotations

import fnmatch
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml

from pilot.config.parse import parse_text
from pilot.config.store import ConfigStore
from pilot.demo import compose_file as compose
from pilot.demo.compose import build_parser
from pilot.demo.compose_file import (
    ADMIN_PORT,
    ENVOY_CONFIG,
    HTTP_PORT,
    LABELS_LABEL,
    NODE_ID_LABEL,
    PILOT_CONFIG,
    PILOT_SERVICE,
    XDS_PORT,
    ComposeDemo,
    EnvoyService,
    bootstrap_argv,
    packaged_dir,
    parse_labels,
    render_bootstrap,
    strip_header,
)
from pilot.demo.compose_localize import PortMap, exported_to, localize_bootstrap, localize_config
from pilot.settings import Settings
from pilot.translate.context import PushContext
from pilot.translate.proxy import NodeType, Proxy
from pilot.translate.snapshot import build_snapshot
from tests.support import find_envoy, free_port, get, wait_until

REPO = Path(__file__).resolve().parent.parent
DIR = REPO / "manifests" / "docker-compose"
DEMO = ComposeDemo(DIR)
ENVOYS = DEMO.envoys()
FRONT = next(envoy for envoy in ENVOYS if envoy.name == "front-envoy")
BACKENDS = DEMO.backends()
DOCKERFILE = DIR / "Dockerfile"
DOCS = (REPO / "README.md", REPO / "docs" / "docker-compose.md")
LISTENER_TYPE = "type.googleapis.com/envoy.config.listener.v3.Listener"
ROUTE_TYPE = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
CLUSTER_TYPE = "type.googleapis.com/envoy.config.cluster.v3.Cluster"


def envoy_ids(envoy: EnvoyService) -> str:
    return envoy.name


def config_docs() -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in sorted(DEMO.config_dir.rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict):
                yield path, doc


def of_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for _, doc in config_docs() if doc.get("kind") == kind]


def service_entries() -> list[dict[str, Any]]:
    return of_kind("ServiceEntry")


def namespace_of(doc: dict[str, Any]) -> str:
    return str(doc["metadata"].get("namespace", "default"))


def seen_from(doc: dict[str, Any], namespace: str) -> bool:
    return exported_to(doc["spec"].get("exportTo") or [], namespace_of(doc), namespace)


def selects(gateway: dict[str, Any], envoy: EnvoyService) -> bool:
    return envoy.selected_by(gateway["spec"].get("selector") or {})


def listener_ports(envoy: EnvoyService) -> set[int]:
    """The ports ``envoy`` listens on: a router those of the Gateways that select it, a sidecar the
    ports of the ServiceEntries it sees."""
    if envoy.is_router:
        return {
            int(server["port"]["number"])
            for gw in of_kind("Gateway")
            if selects(gw, envoy)
            for server in gw["spec"]["servers"]
        }
    return {
        int(port["number"])
        for se in service_entries()
        if seen_from(se, envoy.namespace)
        for port in se["spec"]["ports"]
    }


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
        "front-envoy": "front-envoy",
        "reviews-v1-sidecar": "reviews-v1",
        "reviews-v2-sidecar": "reviews-v2",
    }
    assert DEMO.published("front-envoy") == ((8080, 8080),)


def test_virtual_service_splits_80_20_on_the_gateway() -> None:
    (vs,) = of_kind("VirtualService")
    weights = {d["destination"]["subset"]: d["weight"] for d in vs["spec"]["http"][0]["route"]}
    assert weights == {"v1": 80, "v2": 20}
    assert (DEMO.config_dir / "reviews-virtualservice.yaml").exists()  # the file the docs say to edit
    # Bound to the ingress Gateway only (no sidecar routes by it), for every host: no Host header needed.
    assert vs["spec"]["gateways"] == ["istio-system/ingress"]
    assert vs["spec"]["hosts"] == ["*"]
    # The sidecars know their app as `reviews` only and route by Host (reviews-vN-pod.yaml).
    assert vs["spec"]["http"][0]["rewrite"] == {"authority": "reviews"}
    for se in service_entries():
        if namespace_of(se) != "default":
            assert se["spec"]["hosts"] == ["reviews"]


def test_front_envoy_is_a_router_the_ingress_gateway_selects() -> None:
    assert FRONT.node_id == "router~0.0.0.0~istio-ingressgateway.istio-system~istio-system.svc.cluster.local"
    assert DEMO.services["front-envoy"]["labels"][LABELS_LABEL] == "istio=ingressgateway"
    assert FRONT.is_router and FRONT.namespace == "istio-system"
    assert FRONT.proxy.labels == {"istio": "ingressgateway"}
    (gateway,) = of_kind("Gateway")
    assert (namespace_of(gateway), gateway["metadata"]["name"]) == ("istio-system", "ingress")
    assert gateway["spec"]["selector"] == {"istio": "ingressgateway"}
    assert [envoy.name for envoy in ENVOYS if selects(gateway, envoy)] == ["front-envoy"]
    (server,) = gateway["spec"]["servers"]
    assert (server["port"]["number"], server["port"]["protocol"], server["hosts"]) == (8080, "HTTP", ["*"])
    # The bootstrap carries the labels as node metadata: what pilot matches the selector against.
    bootstrap = yaml.safe_load(FRONT.bootstrap.read_text())
    assert bootstrap["node"]["metadata"] == {"LABELS": {"istio": "ingressgateway"}}
    node = bootstrap["node"]
    assert Proxy.from_node(node["id"], node["metadata"]).view() == FRONT.proxy.view()
    # The router sees what the VirtualService routes to: the reviews ServiceEntry and its subsets.
    for kind in ("ServiceEntry", "DestinationRule"):
        assert any(seen_from(doc, "istio-system") and namespace_of(doc) == "default" for doc in of_kind(kind))


def test_every_envoy_but_the_front_one_is_a_sidecar_without_labels() -> None:
    for envoy in ENVOYS:
        if envoy is not FRONT:
            assert envoy.proxy.type is NodeType.SIDECAR and envoy.labels == ()
            assert "metadata" not in yaml.safe_load(envoy.bootstrap.read_text())["node"]


def test_parse_labels() -> None:
    assert parse_labels("istio=ingressgateway") == (("istio", "ingressgateway"),)
    assert parse_labels(" istio=ingressgateway, app = gw ") == (("istio", "ingressgateway"), ("app", "gw"))
    for bad in ("", "istio", "=x", "a=b,"):
        with pytest.raises(ValueError, match=LABELS_LABEL):
            parse_labels(bad)


# --- bootstraps --------------------------------------------------------------------------------


@pytest.mark.parametrize("envoy", ENVOYS, ids=envoy_ids)
def test_bootstrap_is_what_pilot_bootstrap_prints(envoy: EnvoyService) -> None:
    printed = subprocess.run(
        [sys.executable, "-m", "pilot", *bootstrap_argv(envoy.node_id, envoy.labels)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    committed = envoy.bootstrap.read_text()
    assert strip_header(committed) == printed, "stale: run python -m pilot.demo.compose bootstraps"
    assert committed == render_bootstrap(envoy.node_id, envoy.labels)


def test_no_bootstrap_is_stale() -> None:
    assert compose.write_bootstraps(DEMO, check=True) == []
    assert sorted(p.name for p in (DIR / "bootstraps").iterdir()) == sorted(e.bootstrap.name for e in ENVOYS)


@pytest.mark.parametrize("envoy", ENVOYS, ids=envoy_ids)
def test_bootstrap_validates_with_envoy(envoy: EnvoyService) -> None:
    result = subprocess.run(
        [
            str(find_envoy()),
            "--mode",
            "validate",
            "-c",
            str(envoy.bootstrap),
            "-l",
            "warning",
            "--disable-hot-restart",
        ],
        capture_output=True,
        text=True,
        timeout=60,
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


# --- the copy installed with pilot -------------------------------------------------------------


def package_data() -> set[Path]:
    """The files under pilot/ that the package-data patterns of pyproject.toml put in the wheel."""
    patterns = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    found = {path for pattern in patterns["pilot"] for path in (REPO / "pilot").glob(pattern)}
    return {path for path in found if path.is_file()}


def test_the_packaged_topology_is_the_checkouts() -> None:
    """compose.yaml and config/ ship with pilot, byte for byte those docker compose runs."""
    packaged = packaged_dir()
    copies = sorted(path.relative_to(packaged) for path in packaged.rglob("*") if path.is_file())
    checkout = [Path("compose.yaml"), *(path.relative_to(DIR) for path in (DIR / "config").glob("*.yaml"))]
    assert copies == sorted(checkout)
    for relative in copies:
        assert (packaged / relative).read_bytes() == (DIR / relative).read_bytes(), (
            f"copy manifests/docker-compose/{relative} to pilot/demo/docker-compose/{relative}"
        )


def test_package_data_holds_what_demo_and_compose_read() -> None:
    """Without a checkout, pilot demo and the compose runner find their files through
    importlib.resources; each must be one the wheel carries."""
    listed = package_data()
    demo = resources.files("pilot.demo")
    needed = [*packaged_dir().rglob("*.yaml"), *Path(str(demo.joinpath("config"))).glob("*.yaml")]
    assert len(needed) > len(list((DIR / "config").glob("*.yaml")))
    for path in needed:
        assert path in listed, f"{path.relative_to(REPO)}: add it to package-data in pyproject.toml"
        relative = path.relative_to(REPO / "pilot" / "demo").as_posix()
        assert demo.joinpath(relative).is_file(), relative
    # The runner reads the packaged copy unless told another folder; nothing leads into the checkout.
    assert ComposeDemo().path == packaged_dir() / "compose.yaml"
    assert ComposeDemo().config_dir == packaged_dir() / "config"
    assert packaged_dir().resolve() != DIR.resolve()


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
    version = subprocess.run(
        [str(find_envoy()), "--version"], capture_output=True, text=True, check=True, timeout=60
    ).stdout
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
        assert envoy.proxy.type is (NodeType.ROUTER if envoy is FRONT else NodeType.SIDECAR)


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
                assert container in listener_ports(envoy), f"{name}: nothing listens on {container}"


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


@pytest.mark.parametrize("doc", DOCS, ids=lambda path: path.name)
def test_the_docs_commands_name_these_files(doc: Path) -> None:
    """The commands the docs give run as written: the compose file, the subcommands of
    ``python -m pilot.demo.compose``, the config files to edit, the published ports to curl."""
    text = doc.read_text()
    if doc.name == "README.md":  # its "Docker Compose" section only
        text = text[text.index("\n## Docker Compose\n") :]
        end = text.find("\n## ", 1)
        text = text if end == -1 else text[:end]
    compose_files = re.findall(r"docker compose -f\s+([^\s`]+)", text)
    assert compose_files, f"{doc.name}: no `docker compose -f` command"
    for path in compose_files:
        assert (REPO / path).resolve() == DEMO.path, path
    commands = re.findall(r"python -m pilot\.demo\.compose ([a-z][\w -]*)", text)
    assert any(c.split()[0] == "up" for c in commands), f"{doc.name}: no `python -m pilot.demo.compose up`"
    for command in commands:
        build_parser().parse_args(command.split())
    for name in re.findall(r"config/([\w.-]+\.yaml)", text):
        assert (DEMO.config_dir / name).exists(), name
    published = {host for service in DEMO.services for host, _ in DEMO.published(service)}
    for port in re.findall(r"localhost:(\d+)", text):
        assert int(port) in published, port
    # The curl loop needs no Host header: the gateway's VirtualService takes every host.
    for line in text.splitlines():
        if "curl" in line and "localhost:8080" in line:
            assert "Host:" not in line, line


# --- Dockerfile --------------------------------------------------------------------------------


def test_dockerfile_runs_pilot_serve_on_istio_ports() -> None:
    assert instruction("FROM") == ["python:3.11-slim"]
    (expose,) = instruction("EXPOSE")
    settings = Settings()
    assert (
        {int(port) for port in expose.split()}
        == {settings.xds_port, settings.http_port}
        == {
            XDS_PORT,
            HTTP_PORT,
        }
    )
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
    backend_ports = {(b.pod, b.port) for b in BACKENDS}
    for se in service_entries():
        seen_by = [envoy for envoy in ENVOYS if seen_from(se, envoy.namespace)]
        assert seen_by, f"no Envoy sees ServiceEntry {se['metadata']['name']}"
        for endpoint in se["spec"]["endpoints"]:
            (port,) = endpoint["ports"].values()
            if endpoint["address"] == "127.0.0.1":
                # The app beside the sidecar, in the same network namespace.
                assert se["spec"]["resolution"] == "STATIC"
                (envoy,) = seen_by
                assert (envoy.pod, port) in backend_ports
            else:
                # Another pod, by its compose service name: the port its sidecar listens on.
                assert se["spec"]["resolution"] == "DNS"
                pod = DEMO.pod(endpoint["address"])
                envoy = envoy_in_pod(pod)
                assert envoy is not None, f"endpoint {endpoint['address']} has no sidecar"
                assert port in listener_ports(envoy)


def snapshot_of(envoy: EnvoyService) -> dict[str, list[str]]:
    store = ConfigStore()
    for path in sorted(DEMO.config_dir.rglob("*.yaml")):
        store.apply(parse_text(path.read_text(), str(path)))
    snap = build_snapshot(envoy.proxy.view(), PushContext.build(store.snapshot()))
    return {type_url: sorted(res.resources) for type_url, res in snap.by_type.items()}


@pytest.mark.parametrize("envoy", ENVOYS, ids=envoy_ids)
def test_each_envoy_gets_only_its_own_listeners(envoy: EnvoyService) -> None:
    """exportTo keeps each sidecar to its own app's service, so no two Envoys bind one port; the
    router listens on the Gateway's port and reaches the pods by the reviews ServiceEntry."""
    resources = snapshot_of(envoy)
    assert resources[LISTENER_TYPE] == [f"0.0.0.0_{port}" for port in sorted(listener_ports(envoy))]
    if envoy.is_router:
        assert resources[ROUTE_TYPE] == [f"http.{port}" for port in sorted(listener_ports(envoy))]
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
    listeners: dict[str, set[tuple[str, int]]] = {}
    services = DEMO.service_pods()

    def moved(name: str) -> list[dict[str, Any]]:
        text = localize_config((DEMO.config_dir / name).read_text(), ENVOYS, services, ports, listeners)
        assert text is not None, name
        return list(yaml.safe_load_all(text))

    # The router's ServiceEntry: no sidecar listens on its port, which only names its clusters. The
    # endpoints are the pods' sidecars, on their own local ports.
    se = next(doc for doc in moved("reviews.yaml") if doc["kind"] == "ServiceEntry")
    v1, v2 = ports("reviews-v1", 8080), ports("reviews-v2", 8080)
    assert se["spec"]["ports"][0]["number"] == 8080
    assert [(e["address"], e["ports"]["http"]) for e in se["spec"]["endpoints"]] == [
        ("127.0.0.1", v1),
        ("127.0.0.1", v2),
    ]
    assert listeners == {}
    # The Gateway's server: the router's pod's port, bound to 127.0.0.1.
    (gateway,) = moved("ingress-gateway.yaml")
    front = ports("front-envoy", 8080)
    assert gateway["spec"]["servers"][0]["port"]["number"] == front
    assert gateway["spec"]["servers"][0]["bind"] == "127.0.0.1"
    # A pod's ServiceEntry: its sidecar listens on the pod's 8080, and the app on the pod's 9080.
    (pod,) = moved("reviews-v1-pod.yaml")
    assert pod["spec"]["ports"][0]["number"] == v1
    app = ports("reviews-v1", 9080)
    assert pod["spec"]["endpoints"][0] == {"address": "127.0.0.1", "ports": {"http": app}}
    assert len({front, v1, v2, app}) == 4
    assert listeners == {"front-envoy": {("127.0.0.1", front)}, "reviews-v1-sidecar": {("0.0.0.0", v1)}}
    # A file with neither ServiceEntries nor Gateways is left as written (comments and all).
    virtual_service = (DEMO.config_dir / "reviews-virtualservice.yaml").read_text()
    assert localize_config(virtual_service, ENVOYS, services, ports) is None


SE_TEMPLATE = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: x, namespace: {namespace}}}
spec:
  hosts: [x.example.com]
  exportTo: {export_to}
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  resolution: {resolution}
  endpoints: [{{address: {address}}}]
"""

GATEWAY_TEMPLATE = """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: gw, namespace: istio-system}}
spec:
  selector: {selector}
  servers: [{{port: {{number: 80, name: http, protocol: HTTP}}, hosts: ["*"], bind: "{bind}"}}]
"""


def test_localize_config_refuses_what_it_cannot_place() -> None:
    ports = PortMap()
    services = DEMO.service_pods()

    def localize(text: str) -> str | None:
        return localize_config(text, ENVOYS, services, ports)

    def entry(
        export_to: str = '["."]',
        address: str = "reviews-v1",
        namespace: str = "reviews-v1",
        resolution: str = "DNS",
    ) -> str:
        return SE_TEMPLATE.format(
            namespace=namespace, export_to=export_to, address=address, resolution=resolution
        )

    with pytest.raises(ValueError, match="neither 127.0.0.1 nor a compose service"):
        localize(entry(address="db.example.com"))
    # Both sidecars would listen on its port, and on one host they cannot.
    with pytest.raises(ValueError, match="sidecars listen on its ports in pods reviews-v1, reviews-v2"):
        localize(entry(export_to='["*"]'))
    # 127.0.0.1 is the pod of the Envoy that sends there: there must be exactly one.
    with pytest.raises(ValueError, match="no Envoy sees it"):
        localize(entry(export_to='["~"]', address="127.0.0.1", resolution="STATIC"))
    with pytest.raises(ValueError, match="Envoys that send to 127.0.0.1 in pods"):
        localize(entry(export_to="[reviews-v1, istio-system]", address="127.0.0.1", resolution="STATIC"))
    with pytest.raises(ValueError, match="cannot be moved to 127.0.0.1"):
        localize(GATEWAY_TEMPLATE.format(selector="{istio: ingressgateway}", bind="10.0.0.1"))
    # A Gateway that selects no router of compose.yaml is left as written: nothing listens for it.
    other = localize(GATEWAY_TEMPLATE.format(selector="{istio: other}", bind=""))
    assert other is not None and yaml.safe_load(other)["spec"]["servers"][0]["port"]["number"] == 80
    # Sidecars never serve Gateways, whatever their labels.
    sidecar = EnvoyService(
        "s",
        "s",
        "sidecar~0.0.0.0~s.ns~ns.svc.cluster.local",
        "ns",
        Path("s.yaml"),
        (),
        (("istio", "ingressgateway"),),
    )
    assert not sidecar.is_router and not sidecar.selected_by({"istio": "ingressgateway"})
    assert FRONT.selected_by({}) and FRONT.selected_by({"istio": "ingressgateway"})
    assert not FRONT.selected_by({"istio": "ingressgateway", "app": "x"})


def test_exported_to() -> None:
    assert exported_to([], "a", "b") and exported_to(["*"], "a", "b")
    assert exported_to(["."], "a", "a") and not exported_to(["."], "a", "b")
    assert exported_to([".", "b"], "a", "b") and not exported_to(["~"], "a", "a")


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


def test_node_id_labels_are_istio_node_ids() -> None:
    for envoy in ENVOYS:
        node_id = DEMO.services[envoy.name]["labels"][NODE_ID_LABEL]
        proxy = Proxy.from_node(node_id)
        assert node_id.split("~")[0] == proxy.type and len(node_id.split("~")) == 4
        assert proxy.namespace == envoy.namespace
        assert envoy.node_id.endswith(f"~{envoy.namespace}.svc.cluster.local")


def test_serve_backend_cli_answers_with_its_version(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "pilot.demo.serve_backend", "--version", "v9", "--port", str(port)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
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
