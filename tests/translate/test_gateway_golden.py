"""Golden tests for routers: Gateways (and their VirtualServices) translated for an ingress gateway
must equal testdata/golden/gateway-*.json, and a real Envoy must accept the result.

Regenerate after an intended change with::

    PILOT_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/translate/test_gateway_golden.py -q

The inputs name certificate files (``/etc/certs/...``) as operators write them; for ``envoy --mode
validate`` they are pointed at certificates made for the test, since Envoy reads them.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format

from pilot.translate.context import PushContext
from pilot.translate.proxy import NodeType, ProxyView
from pilot.translate.snapshot import build_snapshot, generate_messages
from tests import factories
from tests.support.certs import Certificates, make_certificates, openssl_available
from tests.translate.golden import ENVOY, GOLDEN, INPUTS, dumps, static_bootstrap, to_json

UPDATE = os.environ.get("PILOT_UPDATE_GOLDEN") == "1"


def router(namespace: str, **labels: str) -> ProxyView:
    return ProxyView(NodeType.ROUTER, namespace, labels=tuple(sorted(labels.items())))


@dataclass(frozen=True)
class GatewayScenario:
    name: str
    inputs: tuple[str, ...]
    view: ProxyView

    def context(self) -> PushContext:
        return factories.context_from_yaml(*(INPUTS / name for name in self.inputs))

    @property
    def golden_path(self) -> Path:
        return GOLDEN / f"{self.name}.json"


SCENARIOS = (
    GatewayScenario(
        "gateway-bookinfo",
        ("bookinfo.yaml", "gateway-bookinfo.yaml"),
        router("istio-system", istio="ingressgateway"),
    ),
    GatewayScenario(
        "gateway-multi", ("gateway-multi.yaml",), router("some-config-namespace", app="my-gateway-controller")
    ),
    GatewayScenario("gateway-tls", ("gateway-tls.yaml",), router("istio-system", istio="ingressgateway")),
    # The Kubernetes Gateway API, converted (pilot.config.gateway_api) and translated as Istio's.
    GatewayScenario(
        "gateway-api",
        ("bookinfo.yaml", "gateway-api.yaml"),
        router("default", **{"gateway.networking.k8s.io/gateway-name": "bookinfo-gateway"}),
    ),
)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_golden(scenario: GatewayScenario) -> None:
    actual = dumps(to_json(generate_messages(scenario.view, scenario.context())))
    if UPDATE:
        scenario.golden_path.write_text(actual)
    assert scenario.golden_path.exists(), f"no {scenario.golden_path}: run with PILOT_UPDATE_GOLDEN=1"
    assert actual == scenario.golden_path.read_text(), (
        f"{scenario.name}: translation changed (see module doc)"
    )


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_snapshot_is_consistent(scenario: GatewayScenario) -> None:
    context = scenario.context()
    assert build_snapshot(scenario.view, context).inconsistencies() == []


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    if not openssl_available():
        pytest.skip("no openssl command")
    return make_certificates(tmp_path_factory.mktemp("certs"), ["uk.bookinfo.com", "eu.bookinfo.com"])


def _point_at(node: Any, certs: Certificates) -> None:
    """Every certificate/key/CA file the config names → the test's files."""
    files = {"certificateChain": certs.cert, "privateKey": certs.key, "trustedCa": certs.ca}
    if isinstance(node, dict):
        for key, value in node.items():
            if key in files and isinstance(value, dict) and "filename" in value:
                value["filename"] = str(files[key])
            else:
                _point_at(value, certs)
    elif isinstance(node, list):
        for child in node:
            _point_at(child, certs)


@pytest.mark.skipif(not ENVOY.exists(), reason="no envoy binary in .venv")
@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_envoy_accepts(scenario: GatewayScenario, certificates: Certificates, tmp_path: Path) -> None:
    bootstrap = json_format.MessageToDict(
        static_bootstrap(generate_messages(scenario.view, scenario.context()))
    )
    _point_at(bootstrap, certificates)
    config = tmp_path / "envoy.json"
    config.write_text(json.dumps(bootstrap))
    result = subprocess.run(
        [str(ENVOY), "--mode", "validate", "-c", str(config), "-l", "warning", "--concurrency", "1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, f"envoy rejected {scenario.name}:\n{result.stdout}\n{result.stderr}"
