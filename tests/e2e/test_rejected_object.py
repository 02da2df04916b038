"""A config object Envoy rejects holds back only itself (issue 11, finding 7), and the operator's
commands trace the NACK to the object's file and line (issue 18).

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
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from pilot.cli import main
from pilot.localmesh.backend import Backend
from pilot.localmesh.envoy import EnvoyProcess
from pilot.localmesh.loopback import HttpClient, free_port
from tests.support import failure_logs, wait_until
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
STEADY_NODE = "sidecar~127.0.0.1~steady.other~other.svc.cluster.local"


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


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    capsys.readouterr()
    code = main(list(argv))
    return code, capsys.readouterr().out


def rejections_metric(mesh: Mesh, kind: str) -> float:
    text = mesh.pilot.http_get("/metrics").body.decode()
    prefix = f'pilot_config_rejections_total{{kind="{kind}"}} '
    return next((float(line.split()[-1]) for line in text.splitlines() if line.startswith(prefix)), 0.0)


@pytest.fixture
def steady_envoy(mesh: Mesh) -> Iterator[EnvoyProcess]:
    """A second sidecar (its own view: another namespace) whose Envoy has the default RE2 limit."""
    envoy = EnvoyProcess(STEADY_NODE, mesh.pilot.xds_port, mesh.root, name="envoy-steady")
    failure_logs.watch(envoy)
    try:
        envoy.start().wait_configured(timeout=15.0)
        yield envoy
    finally:
        envoy.stop()
        failure_logs.unwatch(envoy)


def test_a_nack_is_traced_to_its_yaml_line_by_the_operator_commands(
    mesh: Mesh, steady_envoy: EnvoyProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"http://127.0.0.1:{mesh.pilot.http_port}"
    gamma = Service("gamma", free_port())
    backends = {v: mesh.backends[v].port for v in ("v1", "v2")}
    mesh.write("gamma-service.yaml", service_entry(gamma, backends), destination_rule(gamma, ("v1", "v2")))
    mesh.write("gamma-vs.yaml", split(gamma, {"v1": 100}))
    mesh.envoy.wait_listener(gamma.listener, timeout=20.0)
    steady_envoy.wait_listener(gamma.listener, timeout=20.0)
    before = rejections_metric(mesh, "VirtualService")

    # The edit this Envoy rejects, two comment lines into its file: the object starts on line 3.
    big = virtual_service(
        gamma,
        [
            {"match": [{"uri": {"regex": BIG_REGEX}}], "route": [destination(gamma, "v2")]},
            {"route": [destination(gamma, "v1")]},
        ],
    )
    mesh.write("gamma-vs.yaml", "# gamma's routes\n# the regex is past this Envoy's RE2 limit\n" + dump(big))
    [rejection] = wait_until(lambda: rejections_of(mesh, "gamma"), 15.0, 0.05, "gamma's rejection")
    revision = rejection["rejected_revision"]
    where = f"{rejection['origin']}:3"
    assert rejection["line"] == 3 and rejection["origin"].endswith("gamma-vs.yaml")

    # /debug/syncz: the RDS row of the rejecting proxy names the object, its line and the error.
    [row] = [r for r in mesh.pilot.debug_json("/debug/syncz") if r["proxy"] == mesh.envoy.node_id]
    [shown] = row["rds"]["rejected_objects"]
    assert (shown["kind"], shown["namespace"], shown["name"], shown["line"]) == (
        "VirtualService",
        "default",
        "gamma",
        3,
    )
    assert "program size" in shown["error"]
    assert rejections_metric(mesh, "VirtualService") == before + 1

    # proxy-status: the table marks RDS NACKED for that proxy only, and lists the object.
    code, out = cli(capsys, "proxy-status", "--pilot", url)
    rows = {line.split()[0]: line.split()[1:5] for line in out.splitlines() if line.startswith("sidecar~")}
    assert rows[mesh.envoy.node_id] == ["SYNCED", "SYNCED", "SYNCED", "NACKED"], out
    assert rows[STEADY_NODE] == ["SYNCED"] * 4, out
    assert f"held back: VirtualService default/gamma ({where}) revision {revision}" in out
    assert "program size" in out
    code, out = cli(capsys, "proxy-status", mesh.envoy.node_id, "--pilot", url)
    assert code == 1 and "Routes Differ (NACKED)" in out, out
    assert f"VirtualService default/gamma ({where})" in out

    # explain: the route comes from the version the proxy accepted, and says so.
    request = f"GET http://gamma:{gamma.port}/abababababab"
    code, out = cli(capsys, "explain", mesh.envoy.node_id, request, "--pilot", url)
    assert code == 0, out
    held = [line for line in out.splitlines() if line.startswith("held back")]
    assert len(held) == 1 and f"revision {revision} ({where}) was rejected" in held[0], out
    assert f"VirtualService default/gamma (gamma-vs.yaml) at revision {rejection['held_revision']}" in out

    # Convergence of the edit: the steady proxy ACKed it, the rejecting one is held.
    code, out = cli(capsys, "proxy-status", "--revision", str(revision), "--pilot", url)
    assert code == 1, out
    assert f"revision {revision} " in out and "1 of 2 proxies ACKed it" in out, out
    states = {r.split()[0]: r.split()[1] for r in out.splitlines() if r.startswith("sidecar~") and " " in r}
    assert states == {STEADY_NODE: "ACKED", mesh.envoy.node_id: "HELD"}, out
    answer = mesh.pilot.debug_json(f"/debug/convergence?revision={revision}")
    [pending] = answer["pending"]
    assert pending["rejected_objects"][0]["line"] == 3

    # An accepted edit reaches both: every proxy ACKs the newest revision.
    mesh.write("gamma-vs.yaml", split(gamma, {"v2": 100}))
    code, out = eventually(lambda: cli(capsys, "proxy-status", "--revision", "--pilot", url), 0)
    assert "2 of 2 proxies ACKed it" in out, out
    code, out = cli(capsys, "proxy-status", "--pilot", url)
    assert "NACKED" not in out and "held back" not in out, out


def eventually(check: Callable[[], tuple[int, str]], code: int) -> tuple[int, str]:
    deadline = time.monotonic() + 15.0
    while True:
        got, out = check()
        if got == code:
            return got, out
        if time.monotonic() > deadline:
            raise AssertionError(f"still exit {got}:\n{out}")
        time.sleep(0.05)
