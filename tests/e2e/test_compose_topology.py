"""The docker-compose demo's topology, run without Docker: what docs/docker-compose.md promises.

Same Istio YAML, same committed Envoy bootstraps, same backends and a real ``pilot serve``, as
processes on 127.0.0.1 (pilot.demo.compose.LocalTopology rewrites compose service names to
127.0.0.1 and gives every pod's ports free ones). Traffic goes client -> front-envoy -> a sidecar
-> its app, split 80/20 by the VirtualService, and follows an edit of that file.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pilot.demo.compose import LocalTopology
from pilot.demo.scenario import write_atomically
from tests.support import HttpClient, failure_logs
from tests.support.mesh import tally, wait_routed

pytestmark = pytest.mark.e2e

VIRTUAL_SERVICE = "reviews-virtualservice.yaml"
SIDECARS = {"v1": "reviews-v1-sidecar", "v2": "reviews-v2-sidecar"}


@pytest.fixture(scope="module")
def topology(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalTopology]:
    local = LocalTopology(tmp_path_factory.mktemp("compose"))
    watched = [local.pilot, *local.envoys.values()]
    for process in watched:
        failure_logs.watch(process)
    try:
        yield local.start()
    finally:
        local.stop()
        for process in watched:
            failure_logs.unwatch(process)


def front_client(topology: LocalTopology, host: str = "reviews") -> HttpClient:
    return HttpClient(topology.port("front-envoy", 8080), authority=host)


def sidecar_requests(topology: LocalTopology, version: str) -> int:
    """Requests the sidecar of ``version`` answered with 2xx, on any listener."""
    stats = topology.envoys[SIDECARS[version]].stats(r"^http\.outbound_.*\.downstream_rq_2xx$")
    return sum(stats.values())


def test_front_envoy_splits_80_20_through_the_sidecars(topology: LocalTopology) -> None:
    before = {version: sidecar_requests(topology, version) for version in SIDECARS}
    with front_client(topology) as client:
        wait_routed(client, lambda r: r.status == 200 and r.version in SIDECARS,
                    message="front envoy routing")
        counts = tally(client, 300)
    assert counts["v1"] + counts["v2"] == 300, counts
    # 80% of 300 has a standard deviation of 2.3 points: 70-90% is over 4 sigma.
    assert 0.70 <= counts["v1"] / 300 <= 0.90, counts
    # Every reply came through the sidecar of its version (wait_routed's requests count too).
    for version in SIDECARS:
        assert sidecar_requests(topology, version) - before[version] >= counts[version], version
    for process in topology.envoys.values():
        assert process.rejected_updates() == {}, process.log_tail(30)


def test_editing_the_virtual_service_shifts_the_traffic(topology: LocalTopology) -> None:
    path = topology.config_dir / VIRTUAL_SERVICE
    original = path.read_text()
    shifted = original.replace("weight: 80", "weight: 0").replace("weight: 20", "weight: 100")
    assert shifted != original
    write_atomically(path, shifted)
    try:
        with front_client(topology) as client:
            wait_routed(client, lambda r: r.version == "v2", consecutive=30, message="all traffic on v2")
            assert tally(client, 50) == {"v2": 50}
    finally:
        write_atomically(path, original)
    with front_client(topology) as client:
        wait_routed(client, lambda r: r.version == "v1", consecutive=1, message="v1 back after the edit")


def test_a_host_no_service_entry_declares_gets_502(topology: LocalTopology) -> None:
    """REGISTRY_ONLY (config/mesh.yaml): nothing is passed through, so nothing can loop."""
    with front_client(topology, host="elsewhere") as client:
        assert client.get("/").status == 502
