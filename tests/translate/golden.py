"""Helpers of the golden and Envoy-acceptance tests: scenarios, golden JSON, static bootstraps."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from envoy.config.bootstrap.v3 import bootstrap_pb2
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from google.protobuf import json_format

from pilot.config.objects import ConfigKey
from pilot.translate.proxy import InterceptionMode, NodeType, ProxyView
from pilot.translate.snapshot import Messages
from pilot.translate.targets import ServiceTarget
from pilot.xds import types
from pilot.xds.listeners import http_connection_managers
from tests import factories

ROOT = Path(__file__).resolve().parents[2]
INPUTS = ROOT / "testdata" / "translate"
GOLDEN = ROOT / "testdata" / "golden"
ENVOY = ROOT / ".venv" / "bin" / "envoy"
TEST_CERT = ROOT / "testdata" / "certs" / "test-cert.pem"
TEST_KEY = ROOT / "testdata" / "certs" / "test-key.pem"


@dataclass(frozen=True)
class Scenario:
    """One input file translated for one view; the golden file is named after both."""

    name: str
    input: str
    view: ProxyView

    @property
    def input_path(self) -> Path:
        return INPUTS / self.input

    @property
    def golden_path(self) -> Path:
        return GOLDEN / f"{self.name}.json"


# The sidecar of redirect-inbound.yaml, given its ServiceTargets.
REDIRECT_INBOUND_VIEW = ProxyView(
    NodeType.SIDECAR,
    "default",
    InterceptionMode.REDIRECT,
    targets=(
        ServiceTarget("mysql.default.svc.cluster.local", 3306, 3306, "TCP"),
        ServiceTarget("reviews.default.svc.cluster.local", 9080, 8080, "HTTP"),
    ),
)

# The sidecars of sidecar.yaml: one under the namespace's default Sidecar (REDIRECT), one that the
# ratings Sidecar selects (NONE: its ingress binds listeners of its own).
SIDECAR_DEFAULT_VIEW = ProxyView(
    NodeType.SIDECAR, "default", InterceptionMode.REDIRECT, sidecar=ConfigKey("Sidecar", "default", "default")
)
SIDECAR_RATINGS_VIEW = ProxyView(
    NodeType.SIDECAR, "default", InterceptionMode.NONE, sidecar=ConfigKey("Sidecar", "default", "ratings")
)

SCENARIOS = (
    Scenario("bookinfo", "bookinfo.yaml", factories.sidecar("default")),
    Scenario("bookinfo-other-namespace", "bookinfo.yaml", factories.sidecar("other")),
    Scenario("bookinfo-redirect", "bookinfo.yaml", factories.sidecar("default", InterceptionMode.REDIRECT)),
    Scenario("routing", "routing.yaml", factories.sidecar("default")),
    Scenario("dns-external", "dns-external.yaml", factories.sidecar("default")),
    Scenario("tcp", "tcp.yaml", factories.sidecar("default")),
    Scenario("registry-only", "registry-only.yaml", factories.sidecar("default", InterceptionMode.TPROXY)),
    Scenario("routing-surface", "routing-surface.yaml", factories.sidecar("default")),
    Scenario("tcp-tls", "tcp-tls.yaml", factories.sidecar("default")),
    Scenario("tcp-tls-redirect", "tcp-tls.yaml", factories.sidecar("default", InterceptionMode.REDIRECT)),
    Scenario("redirect-inbound", "redirect-inbound.yaml", REDIRECT_INBOUND_VIEW),
    Scenario("sidecar-namespace-redirect", "sidecar.yaml", SIDECAR_DEFAULT_VIEW),
    Scenario("sidecar-ingress-none", "sidecar.yaml", SIDECAR_RATINGS_VIEW),
)


def to_json(messages: Messages) -> dict[str, Any]:
    """{cds|eds|lds|rds: {name: message as proto3 JSON}} (camelCase names, as Envoy's config dump)."""
    return {
        types.short_name(type_url): {
            name: json_format.MessageToDict(message, preserving_proto_field_name=False)
            for name, message in sorted(items, key=lambda item: item[0])
        }
        for type_url, items in sorted(messages.items(), key=lambda item: types.short_name(item[0]))
    }


def dumps(document: Any) -> str:
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def static_bootstrap(messages: Messages) -> bootstrap_pb2.Bootstrap:
    """Everything inlined, so Envoy needs no xDS server: routes into their listeners, endpoints into
    their clusters (EDS clusters become STATIC)."""
    routes: dict[str, Any] = {name: msg for name, msg in messages[types.ROUTE]}
    assignments: dict[str, Any] = {name: msg for name, msg in messages[types.ENDPOINT]}
    bootstrap = bootstrap_pb2.Bootstrap()
    bootstrap.node.id = "sidecar~10.0.0.1~test.default~default.svc.cluster.local"
    bootstrap.node.cluster = "test"
    for _, message in messages[types.CLUSTER]:
        cluster = cluster_pb2.Cluster()
        cluster.CopyFrom(message)
        if cluster.type == cluster_pb2.Cluster.EDS:
            cluster.type = cluster_pb2.Cluster.STATIC
            cluster.ClearField("eds_cluster_config")
            assignment = endpoint_pb2.ClusterLoadAssignment()
            assignment.CopyFrom(assignments[cluster.name])
            cluster.load_assignment.CopyFrom(assignment)
        bootstrap.static_resources.clusters.append(cluster)
    for _, message in messages[types.LISTENER]:
        listener = listener_pb2.Listener()
        listener.CopyFrom(message)
        for network_filter, manager in http_connection_managers(listener):
            if not manager.HasField("rds"):
                continue  # inline routes (virtualInbound)
            route_config = route_pb2.RouteConfiguration()
            route_config.CopyFrom(routes[manager.rds.route_config_name])
            manager.route_config.CopyFrom(route_config)
            network_filter.typed_config.Pack(manager)
        bootstrap.static_resources.listeners.append(listener)
    return bootstrap


# DataSource fields naming certificate files (proto3 JSON names) → the test file Envoy reads instead.
_TEST_FILES = {"certificateChain": TEST_CERT, "privateKey": TEST_KEY, "trustedCa": TEST_CERT}


def with_test_certificates(node: Any) -> Any:
    """A copy of a config document (proto3 JSON) whose certificate files are the test certificate and
    key, and without CRL files: Envoy reads these files when it loads the config, and the paths a
    config names (``/etc/certs/...``) do not exist here."""
    if isinstance(node, list):
        return [with_test_certificates(child) for child in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key == "crl" and isinstance(value, dict) and "filename" in value:
            continue
        if key in _TEST_FILES and isinstance(value, dict) and "filename" in value:
            value = {**value, "filename": str(_TEST_FILES[key])}
        out[key] = with_test_certificates(value)
    return out


def envoy_validate(bootstrap: bootstrap_pb2.Bootstrap, workdir: Path) -> subprocess.CompletedProcess[str]:
    """``envoy --mode validate`` on ``bootstrap`` (with test certificates): returncode 0 = accepted."""
    config = workdir / "envoy.json"
    document = json_format.MessageToDict(bootstrap)
    config.write_text(json.dumps(with_test_certificates(document)))
    return subprocess.run(
        [str(ENVOY), "--mode", "validate", "-c", str(config), "-l", "warning", "--concurrency", "1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
