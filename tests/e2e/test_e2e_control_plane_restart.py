"""The control plane connection ends, and Envoy serves on, reconnects and follows edits: pilot
dies (SIGKILL) and comes back, or pilot closes the connection at its maximum age.

Envoy keeps the last config it accepted while the ADS stream is down, and re-opens the stream
with backoff; pilot answers the reconnecting stream as a new one (a delta stream lists what it
already has in initial_resource_versions). Each test runs over both SotW and delta ADS.
https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol#xds-protocol
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator

import pytest

from pilot.bootstrap import XDS_CLUSTER
from pilot.localmesh.backend import Backend
from tests.support import wait_until
from tests.support.istio import split
from tests.support.mesh import Mesh, tally, wait_routed

pytestmark = pytest.mark.e2e

PROTOCOLS = ["sotw", "delta"]


def start_mesh(
    root_factory: pytest.TempPathFactory,
    name: str,
    backends: dict[str, Backend],
    *,
    protocol: str,
    pilot_args: tuple[str, ...] = (),
) -> Mesh:
    mesh = Mesh(root_factory.mktemp(f"{name}-{protocol}"), backends, delta=protocol == "delta")
    mesh.pilot.extra_args = pilot_args
    return mesh.start()


@pytest.fixture(scope="module", params=PROTOCOLS)
def mesh(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    mesh_backends: dict[str, Backend],
) -> Iterator[Mesh]:
    started = start_mesh(tmp_path_factory, "mesh", mesh_backends, protocol=request.param)
    try:
        yield started
    finally:
        started.stop()


# pilot closes each xDS connection 2 s (+/-10%) after it opened, then 2 s of grace.
MAX_CONNECTION_AGE = 2


@pytest.fixture(params=PROTOCOLS)
def aging_mesh(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    mesh_backends: dict[str, Backend],
) -> Iterator[Mesh]:
    started = start_mesh(
        tmp_path_factory,
        "aging",
        mesh_backends,
        protocol=request.param,
        pilot_args=("--max-connection-age", str(MAX_CONNECTION_AGE)),
    )
    try:
        yield started
    finally:
        started.stop()


def test_envoy_survives_and_follows_a_restarted_control_plane(mesh: Mesh) -> None:
    svc = mesh.add_service("phoenix", ("v1", "v2", "v3"))
    mesh.write("phoenix-vs.yaml", split(svc, {"v1": 100}))
    with mesh.client(svc) as client:
        wait_routed(client, lambda r: r.version == "v1", consecutive=30, message="all on v1")
        assert mesh.envoy.connected()

        mesh.pilot.kill()
        wait_until(lambda: not mesh.envoy.connected(), 15.0, 0.1, "Envoy noticing the lost stream")
        # Envoy serves on with the config it has; an edit made now has nobody to push it.
        assert tally(client, 50) == {"v1": 50}
        mesh.write("phoenix-vs.yaml", split(svc, {"v2": 100}))
        assert tally(client, 20) == {"v1": 20}

        mesh.pilot.start()  # same ports, same folder
        wait_until(mesh.envoy.connected, 20.0, 0.1, "Envoy reconnecting")
        wait_until(
            lambda: mesh.envoy.node_id in json.dumps(mesh.pilot.debug_json("/debug/syncz")),
            15.0,
            0.1,
            "the proxy in the new pilot's /debug/syncz",
        )
        # The edit made while pilot was down arrives with the restarted pilot's first push...
        wait_routed(client, lambda r: r.version == "v2", consecutive=30, message="all on v2 after restart")
        # ...and a new edit follows as usual.
        mesh.write("phoenix-vs.yaml", split(svc, {"v3": 100}))
        wait_routed(client, lambda r: r.version == "v3", consecutive=30, message="all on v3 after an edit")
    mesh.assert_config_accepted()


def test_envoy_reconnects_at_max_connection_age_and_serves_on(aging_mesh: Mesh) -> None:
    mesh = aging_mesh
    svc = mesh.add_service("ageing")
    mesh.write("ageing-vs.yaml", split(svc, {"v1": 100}))
    stat = rf"^cluster\.{XDS_CLUSTER}\.upstream_cx_total$"

    def connections() -> int:
        return mesh.envoy.stats(stat).get(f"cluster.{XDS_CLUSTER}.upstream_cx_total", 0)

    with mesh.client(svc) as client:
        wait_routed(client, lambda r: r.version == "v1", consecutive=30, message="all on v1")
        first = connections()
        # Requests keep flowing while pilot ends the xDS connection twice (GOAWAY, grace, close)
        # and Envoy reconnects: every one of them is served, by the config Envoy holds.
        replies: Counter[str] = Counter()
        deadline = time.monotonic() + 10 * (2 * MAX_CONNECTION_AGE + 1)
        while connections() < first + 2:
            assert time.monotonic() < deadline, f"Envoy opened {connections() - first} new xDS connections"
            replies.update(tally(client, 10))
        assert set(replies) == {"v1"}, replies
        wait_until(mesh.envoy.connected, 15.0, 0.1, "Envoy connected again")
        # The new stream is a live one: an edit reaches Envoy as usual.
        mesh.write("ageing-vs.yaml", split(svc, {"v2": 100}))
        wait_routed(client, lambda r: r.version == "v2", consecutive=30, message="all on v2 after reconnects")
    mesh.assert_config_accepted()
