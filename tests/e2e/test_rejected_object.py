"""A config object Envoy rejects holds back only itself (issue 11, finding 7).

Two VirtualServices share one route configuration (their services listen on the same port). One
is edited into something this Envoy rejects although pilot's validation lets it through: a regex
of 45 RE2 instructions, under the 100 Envoy accepts by default (pilot predicts that limit) but over
the 20 this Envoy's runtime allows (``re2.max_program_size.error_level``). Envoy rejects the whole
route configuration; pilot traces it to that VirtualService, holds it back at the version Envoy
accepted, and an edit of the other VirtualService still reaches Envoy. Editing the rejected one
again tries its new version.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from pilot.localmesh.backend import Backend
from pilot.localmesh.loopback import HttpClient, free_port
from tests.support import wait_until
from tests.support.istio import (
    Service,
    destination,
    destination_rule,
    dump,
    service_entry,
    split,
    virtual_service,
)
from tests.support.mesh import Mesh, tally, wait_routed

pytestmark = pytest.mark.e2e

MAX_PROGRAM_SIZE = 20  # this Envoy's re2.max_program_size.error_level (Envoy's default: 100)
BIG_REGEX = "/(ab|cd|ef){5}"  # 45 RE2 instructions: pilot's validation accepts it


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory, mesh_backends: dict[str, Backend]) -> Iterator[Mesh]:
    started = Mesh(tmp_path_factory.mktemp("mesh-strict-regex"), mesh_backends)
    started.envoy.bootstrap["layered_runtime"] = {
        "layers": [
            {"name": "static", "static_layer": {"re2.max_program_size.error_level": MAX_PROGRAM_SIZE}},
            {"name": "admin", "admin_layer": {}},
        ]
    }
    try:
        yield started.start()
    finally:
        started.stop()


def rejections_of(mesh: Mesh, name: str) -> list[dict[str, Any]]:
    configz = mesh.pilot.debug_json("/debug/configz")
    found = [o for o in configz["objects"] if o["kind"] == "VirtualService" and o["name"] == name]
    return found[0].get("rejected", []) if found else []


def rejected_objects_metric(mesh: Mesh) -> float:
    text = mesh.pilot.http_get("/metrics").body.decode()
    line = next(line for line in text.splitlines() if line.startswith("pilot_config_rejected_objects "))
    return float(line.split()[1])


def test_a_rejected_virtual_service_does_not_hold_back_its_neighbour(
    mesh: Mesh, capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()
    alpha, beta = Service("alpha", port), Service("beta", port)  # one route configuration: "port"
    backends = {v: mesh.backends[v].port for v in ("v1", "v2")}
    for svc in (alpha, beta):
        mesh.write(
            f"{svc.name}-service.yaml", service_entry(svc, backends), destination_rule(svc, ("v1", "v2"))
        )
        mesh.write(f"{svc.name}-vs.yaml", split(svc, {"v1": 100}))
    mesh.envoy.wait_listener(alpha.listener, timeout=20.0)
    with HttpClient(port, authority=alpha.name) as to_alpha, HttpClient(port, authority=beta.name) as to_beta:
        wait_routed(to_alpha, lambda r: r.version == "v1", message="alpha on v1")
        wait_routed(to_beta, lambda r: r.version == "v1", message="beta on v1")

        # alpha: requests to the big regex go to v2. This Envoy rejects the route configuration.
        big = virtual_service(
            alpha,
            [
                {"match": [{"uri": {"regex": BIG_REGEX}}], "route": [destination(alpha, "v2")]},
                {"route": [destination(alpha, "v1")]},
            ],
        )
        mesh.write("alpha-vs.yaml", dump(big))
        wait_until(lambda: mesh.envoy.rejected_updates(), 15.0, 0.05, "Envoy's NACK")

        # An edit of beta, which shares the route configuration, reaches Envoy.
        written = time.monotonic()
        mesh.write("beta-vs.yaml", split(beta, {"v2": 100}))
        seconds = wait_routed(
            to_beta, lambda r: r.version == "v2", timeout=10.0, since=written, message="beta's edit on Envoy"
        )
        assert tally(to_alpha, 20, path="/abababababab") == {"v1": 20}  # alpha held at its last version
        assert not rejections_of(mesh, "beta")

        # The rejection is reported on alpha, alpha alone is held back.
        [rejection] = wait_until(lambda: rejections_of(mesh, "alpha"), 15.0, 0.05, "the rejection in configz")
        assert rejection["proxy"] == mesh.envoy.node_id
        assert rejection["resource"] == str(port) and rejection["type"] == "rds"
        assert rejection["origin"].endswith("alpha-vs.yaml")
        assert "program size" in rejection["error"], rejection
        assert rejection["held_revision"] is not None
        assert rejected_objects_metric(mesh) == 1

        # A new version of alpha clears the hold and is tried (this one is accepted).
        mesh.write("alpha-vs.yaml", split(alpha, {"v2": 100}))
        wait_routed(to_alpha, lambda r: r.version == "v2", message="alpha's next version")
        wait_until(lambda: not rejections_of(mesh, "alpha"), 15.0, 0.05, "the rejection cleared")
        assert rejected_objects_metric(mesh) == 0
    with capsys.disabled():
        print(f"\n[e2e] edit of a VirtualService sharing a rejected route: on Envoy in {seconds:.3f}s")
    assert seconds < 5.0
