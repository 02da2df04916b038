"""The operator's commands against a running ``pilot serve`` and a real Envoy it configures (one of
each for the module), through ``pilot.cli.main`` as an operator runs them; a NACK comes from a real
ADS client that rejects its clusters."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from pilot.cli import main
from pilot.localmesh.control_plane import PilotProcess
from pilot.localmesh.envoy import EnvoyProcess
from pilot.xds import types
from tests.server.ads_client import AdsClient
from tests.support import failure_logs

HERE = Path(__file__).parent
NODE = "sidecar~127.0.0.1~test.default~default.svc.cluster.local"
DEADLINE = 15.0

CANDIDATE = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews.default.svc.cluster.local]
  http:
  - route:
    - destination: {host: reviews.default.svc.cluster.local, subset: v1}
      weight: 80
    - destination: {host: reviews.default.svc.cluster.local, subset: v2}
      weight: 20
"""


class Mesh:
    def __init__(self, pilot: PilotProcess, envoy: EnvoyProcess, config_dir: Path) -> None:
        self.pilot, self.envoy, self.config_dir = pilot, envoy, config_dir
        self.url = f"http://127.0.0.1:{pilot.http_port}"
        self.admin = f"127.0.0.1:{envoy.admin_port}"


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    work = tmp_path_factory.mktemp("inspect")
    config_dir = work / "config"
    config_dir.mkdir()
    shutil.copy(HERE / "mesh.yaml", config_dir / "mesh.yaml")
    shutil.copy(HERE / "explain_mesh.yaml", config_dir / "explain_mesh.yaml")
    pilot = PilotProcess(config_dir, work / "pilot.log")
    failure_logs.watch(pilot)
    envoy = EnvoyProcess(NODE, pilot.xds_port, work)
    failure_logs.watch(envoy)
    try:
        pilot.start()
        envoy.start().wait_configured()
        yield Mesh(pilot, envoy, config_dir)
    finally:
        envoy.stop()
        pilot.stop()
        failure_logs.unwatch(envoy)
        failure_logs.unwatch(pilot)


def pilot_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    capsys.readouterr()
    code = main(list(argv))
    return code, capsys.readouterr().out


def eventually(
    check: Callable[[], tuple[int, str]], ok: Callable[[int, str], bool], what: str
) -> tuple[int, str]:
    deadline = time.monotonic() + DEADLINE
    while True:
        code, out = check()
        if ok(code, out):
            return code, out
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: still {code}:\n{out}")
        time.sleep(0.1)


def test_proxy_status_lists_the_envoy_synced(mesh: Mesh, capsys: pytest.CaptureFixture[str]):
    def envoy_row(code: int, out: str) -> bool:
        rows = [line.split() for line in out.splitlines() if line.startswith(NODE)]
        return code == 0 and len(rows) == 1 and rows[0][1:5] == ["SYNCED"] * 4

    _, out = eventually(lambda: pilot_cli(capsys, "proxy-status", "--pilot", mesh.url), envoy_row, "SYNCED")
    assert out.split()[:9] == ["NAME", "CDS", "LDS", "EDS", "RDS", "VERSION", "VIEW", "PROTOCOL", "CONNECTED"]


def test_one_proxy_matches_what_pilot_would_send_and_what_envoy_holds(
    mesh: Mesh, capsys: pytest.CaptureFixture[str]
):
    code, out = pilot_cli(capsys, "proxy-status", "test.default", "--pilot", mesh.url)
    assert code == 0, out
    assert [line.split()[:2] for line in out.splitlines()[1:]] == [
        ["Clusters", "Match"],
        ["Listeners", "Match"],
        ["Endpoints", "Match"],
        ["Routes", "Match"],
    ]
    code, out = pilot_cli(capsys, "proxy-status", NODE, "--pilot", mesh.url, "--envoy-admin", mesh.admin)
    assert code == 0, out
    assert "Differ" not in out


def test_proxy_config_tables_from_pilot_and_from_envoy(mesh: Mesh, capsys: pytest.CaptureFixture[str]):
    code, out = pilot_cli(capsys, "proxy-config", "cluster", "test.default", "--pilot", mesh.url)
    assert code == 0
    assert out.split()[:6] == ["SERVICE", "FQDN", "PORT", "SUBSET", "DIRECTION", "TYPE"]
    subsets = {tuple(line.split()[:5]) for line in out.splitlines() if line.startswith("reviews")}
    assert ("reviews.default.svc.cluster.local", "9080", "v1", "outbound", "EDS") in subsets
    assert ("reviews.default.svc.cluster.local", "9080", "v2", "outbound", "EDS") in subsets
    code, out = pilot_cli(capsys, "proxy-config", "listener", "test.default", "--pilot", mesh.url)
    assert "Route: 9080" in out
    code, out = pilot_cli(capsys, "proxy-config", "route", "test.default", "--pilot", mesh.url)
    assert "reviews.default" in out.splitlines()[1]
    code, out = pilot_cli(capsys, "proxy-config", "endpoint", "test.default", "--pilot", mesh.url)
    reviews = {
        line.split()[0]
        for line in out.splitlines()[1:]
        if line.endswith("||reviews.default.svc.cluster.local")
    }
    assert reviews == {"127.0.0.11:9080", "127.0.0.12:9080"}
    # The bootstrap's own cluster is only in Envoy's view.
    code, out = pilot_cli(capsys, "proxy-config", "cluster", "test.default", "--envoy-admin", mesh.admin)
    assert code == 0 and "xds-grpc" in out
    code, out = pilot_cli(
        capsys,
        "proxy-config",
        "cluster",
        "x",
        "--envoy-admin",
        mesh.admin,
        "--name",
        "xds-grpc",
        "-o",
        "json",
    )
    assert [cluster["name"] for cluster in json.loads(out)] == ["xds-grpc"]


def test_proxy_config_names_an_unknown_proxy(mesh: Mesh, capsys: pytest.CaptureFixture[str]):
    capsys.readouterr()
    assert main(["proxy-config", "cluster", "nobody.default", "--pilot", mesh.url]) == 1
    assert "not connected" in capsys.readouterr().err


def test_diff_shows_the_route_a_candidate_changes(
    mesh: Mesh, capsys: pytest.CaptureFixture[str], tmp_path: Path
):
    candidate = tmp_path / "reviews-80-20.yaml"
    candidate.write_text(CANDIDATE)
    code, out = pilot_cli(capsys, "diff", "test.default", str(candidate), "--pilot", mesh.url)
    assert code == 1, out
    assert out.splitlines()[0].startswith("~ rds 9080 (")
    assert "note:" not in out  # the local "before" is exactly what pilot serves
    # The running config itself changes nothing, read from pilot or from the folder.
    same = str(mesh.config_dir / "mesh.yaml")
    code, out = pilot_cli(capsys, "diff", "test.default", same, "--pilot", mesh.url, "-o", "json")
    assert code == 0 and json.loads(out)["changes"] == [] and json.loads(out)["not_as_served"] == []
    code, out = pilot_cli(
        capsys,
        "diff",
        "test.default",
        str(candidate),
        "--pilot",
        mesh.url,
        "--config-dir",
        str(mesh.config_dir),
    )
    assert code == 1 and "~ rds 9080" in out


async def test_a_nacked_type_shows_nacked_with_the_proxy_text(mesh: Mesh, capsys: pytest.CaptureFixture[str]):
    node = "sidecar~127.0.0.2~nacker.default~default.svc.cluster.local"
    async with grpc.aio.insecure_channel(f"127.0.0.1:{mesh.pilot.xds_port}") as channel:
        client = AdsClient(channel, node)
        await client.request(types.CLUSTER)
        response = await client.recv()
        await client.nack(response, "cluster reviews: invalid something")

        def nacked(code: int, out: str) -> bool:
            return any(line.split()[:2] == [node, "NACKED"] for line in out.splitlines())

        eventually(lambda: pilot_cli(capsys, "proxy-status", "--pilot", mesh.url), nacked, "NACKED")
        code, out = pilot_cli(capsys, "proxy-status", "nacker.default", "--pilot", mesh.url)
        client.close()
    assert code == 1
    assert "Clusters Differ (NACKED)" in out
    assert "cluster reviews: invalid something" in out


def test_proxyz_gives_the_view_and_each_resource_version_on_both_sides(mesh: Mesh):
    from pilot.inspect.pilot_api import PilotApi

    proxyz = PilotApi(mesh.url).proxyz("test.default")
    assert proxyz["proxy"] == NODE
    assert proxyz["view_fields"]["type"] == "sidecar" and proxyz["view_fields"]["namespace"] == "default"
    clusters = proxyz["types"]["cds"]["resources"]
    subset = clusters["outbound|9080|v1|reviews.default.svc.cluster.local"]
    assert subset["pilot"] == subset["proxy"] and subset["bytes"] > 0
    assert set(proxyz["types"]) == {"cds", "lds", "eds", "rds"}


def test_explain_walks_a_request_to_its_rule_cluster_and_endpoints(
    mesh: Mesh, capsys: pytest.CaptureFixture[str]
):
    request = "GET http://ratings:9081/api/v1 -H end-user:jason"
    code, out = pilot_cli(capsys, "explain", "test.default", request, "--pilot", mesh.url)
    assert code == 0, out
    steps = dict(line.split(None, 1) for line in out.splitlines() if " " in line)
    assert steps["listener"].startswith("0.0.0.0_9081")
    assert "'jason'" in steps["route"]
    # The rule, with its file and the line of its match (line 9 of explain_mesh.yaml).
    rule = f"VirtualService default/ratings spec.http[0].match[0] ({mesh.config_dir / 'explain_mesh.yaml'}:9)"
    assert steps["from"] == rule
    assert "outbound|9080|v2|reviews.default.svc.cluster.local" in steps["action"]
    assert steps["endpoints"] == "127.0.0.12:9080 HEALTHY"
    code, out = pilot_cli(
        capsys, "explain", "test.default", "http://ratings:9081/", "--pilot", mesh.url, "-o", "json"
    )
    assert code == 0
    [cluster] = json.loads(out)["clusters"]
    assert cluster["name"] == "outbound|9080|v1|reviews.default.svc.cluster.local"
    assert cluster["endpoints"] == ["127.0.0.11:9080"]
    code, out = pilot_cli(capsys, "explain", "test.default", "http://ratings:9999/", "--pilot", mesh.url)
    assert code == 1 and "none on port 9999" in out
