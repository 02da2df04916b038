"""Config edits reaching a running Envoy, and bad config never reaching it.

An edit must propagate within seconds; a YAML syntax error or an invalid object must leave the
last good config in force (traffic unchanged) and show up in /debug/configz. Each test runs
against Envoy over both SotW and delta ADS (the module's mesh is parametrised).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from pilot.localmesh.backend import Backend
from tests.support import wait_until
from tests.support.istio import split
from tests.support.mesh import Mesh, tally, wait_routed

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module", params=["sotw", "delta"])
def mesh(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    mesh_backends: dict[str, Backend],
) -> Iterator[Mesh]:
    delta = request.param == "delta"
    started = Mesh(tmp_path_factory.mktemp(f"mesh-{request.param}"), mesh_backends, delta=delta)
    try:
        yield started.start()
    finally:
        started.stop()


def config_errors_for(mesh: Mesh, filename: str) -> list[dict[str, Any]]:
    configz = mesh.pilot.debug_json("/debug/configz")
    return [e for e in configz.get("errors", []) if str(e.get("origin", "")).endswith(filename)]


def ads_protocol(mesh: Mesh) -> str:
    """ "delta" or "sotw": what the mesh's Envoy speaks (its bootstrap's ADS api_type)."""
    api_type = mesh.envoy.bootstrap["dynamic_resources"]["ads_config"]["api_type"]
    return "delta" if api_type == "DELTA_GRPC" else "sotw"


def test_edit_propagates(mesh: Mesh, capsys: pytest.CaptureFixture[str]) -> None:
    protocol = ads_protocol(mesh)
    svc = mesh.add_service("canary")
    mesh.write("canary-vs.yaml", split(svc, {"v1": 100, "v2": 0}))
    with mesh.client(svc) as client:
        wait_routed(client, lambda r: r.version == "v1", consecutive=30, message="all on v1")
        written = time.monotonic()
        mesh.write("canary-vs.yaml", split(svc, {"v1": 0, "v2": 100}))
        seconds = wait_routed(
            client, lambda r: r.version == "v2", consecutive=30, since=written, message="all on v2"
        )
    with capsys.disabled():
        print(f"\n[e2e] edit propagation ({protocol}): all on v2 {seconds:.3f}s after the file write")
    assert seconds < 5.0
    mesh.assert_config_accepted()


BROKEN_YAML = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: sturdy, namespace: default
spec:
  hosts: [sturdy
  http: - route
"""


def test_yaml_syntax_error_keeps_last_good_config(mesh: Mesh) -> None:
    svc = mesh.add_service("sturdy")
    mesh.write("sturdy-vs.yaml", split(svc, {"v1": 100}))
    with mesh.client(svc) as client:
        wait_routed(client, lambda r: r.version == "v1", consecutive=30, message="all on v1")
        mesh.write("sturdy-vs.yaml", BROKEN_YAML)
        errors = wait_until(
            lambda: config_errors_for(mesh, "sturdy-vs.yaml"), 15.0, 0.1, "the syntax error in /debug/configz"
        )
        assert errors[0]["severity"] == "error"
        # Without the VirtualService, Envoy would spread requests over v1 and v2.
        assert tally(client, 60) == {"v1": 60}
    assert mesh.pilot.http_get("/ready").status == 200
    mesh.assert_config_accepted()


def test_invalid_object_keeps_last_good_config(mesh: Mesh) -> None:
    svc = mesh.add_service("guarded")
    mesh.write("guarded-vs.yaml", split(svc, {"v1": 100}))
    with mesh.client(svc) as client:
        wait_routed(client, lambda r: r.version == "v1", consecutive=30, message="all on v1")
        mesh.write("guarded-vs.yaml", split(svc, {"v1": -5, "v2": 105}))
        errors = wait_until(
            lambda: config_errors_for(mesh, "guarded-vs.yaml"),
            15.0,
            0.1,
            "the invalid weight in /debug/configz",
        )
        assert any("weight" in f"{e.get('path')} {e.get('message')}" for e in errors), errors
        assert tally(client, 60) == {"v1": 60}
        # A fix replaces the error and takes effect.
        mesh.write("guarded-vs.yaml", split(svc, {"v2": 100}))
        wait_routed(client, lambda r: r.version == "v2", consecutive=30, message="all on v2 after the fix")
    wait_until(lambda: not config_errors_for(mesh, "guarded-vs.yaml"), 15.0, 0.1, "error cleared")
    mesh.assert_config_accepted()
