"""The docker-compose demo's topology, run without Docker: what docs/docker-compose.md promises.

Same Istio YAML, same committed Envoy bootstraps, same backends and a real ``pilot serve``, as
processes on 127.0.0.1 (pilot.demo.compose.LocalTopology rewrites compose service names to
127.0.0.1, gives every pod's ports free ones and binds the Gateway's server to 127.0.0.1). Traffic
goes client -> the ingress gateway (front-envoy, a router) -> a sidecar -> its app, split 80/20 by
the VirtualService bound to the Gateway, and follows an edit of that file.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pilot.demo.compose import LocalTopology
from pilot.localmesh.config_files import write_atomically
from tests.support import HttpClient, failure_logs
from tests.support.mesh import tally, wait_routed

pytestmark = pytest.mark.e2e

VIRTUAL_SERVICE = "reviews-virtualservice.yaml"
FRONT = "front-envoy"
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


def gateway_client(topology: LocalTopology, host: str | None = None) -> HttpClient:
    """A client of the gateway's port 8080; without ``host``, Host is 127.0.0.1:PORT, as curl sends."""
    return HttpClient(topology.port(FRONT, 8080), authority=host)


def sidecar_requests(topology: LocalTopology, version: str) -> int:
    """Requests the sidecar of ``version`` answered with 2xx, on any listener."""
    stats = topology.envoys[SIDECARS[version]].stats(r"^http\.outbound_.*\.downstream_rq_2xx$")
    return sum(stats.values())


def test_the_front_envoy_is_a_router_listening_for_the_gateway(topology: LocalTopology) -> None:
    front = topology.envoys[FRONT]
    (dump,) = [c for c in front.config_dump()["configs"] if c["@type"].endswith(".BootstrapConfigDump")]
    node = dump["bootstrap"]["node"]
    assert node["id"].startswith("router~")
    assert node["metadata"] == {"LABELS": {"istio": "ingressgateway"}}
    # The Gateway's server on 8080, bound to 127.0.0.1 on this host: the router's only listener.
    assert front.active_listeners() == {f"127.0.0.1_{topology.port(FRONT, 8080)}"}


def test_gateway_splits_80_20_through_the_sidecars(topology: LocalTopology) -> None:
    before = {version: sidecar_requests(topology, version) for version in SIDECARS}
    with gateway_client(topology) as client:
        wait_routed(client, lambda r: r.status == 200 and r.version in SIDECARS, message="gateway routing")
        counts = tally(client, 300)
    assert counts["v1"] + counts["v2"] == 300, counts
    # 80% of 300 has a standard deviation of 2.3 points: 70-90% is over 4 sigma.
    assert 0.70 <= counts["v1"] / 300 <= 0.90, counts
    # Every reply came through the sidecar of its version (wait_routed's requests count too).
    for version in SIDECARS:
        assert sidecar_requests(topology, version) - before[version] >= counts[version], version
    for process in topology.envoys.values():
        assert process.rejected_updates() == {}, process.log_tail(30)


def test_any_host_is_served_and_reaches_the_app_as_reviews(topology: LocalTopology) -> None:
    """hosts ["*"] on the gateway; rewrite.authority gives the sidecars the one name they know."""
    with gateway_client(topology, host="anything.example.com") as client:
        reply = client.get("/")
    assert reply.status == 200 and reply.version in SIDECARS
    assert reply.json()["headers"]["host"] == "reviews"


def test_editing_the_virtual_service_shifts_the_traffic(topology: LocalTopology) -> None:
    path = topology.config_dir / VIRTUAL_SERVICE
    original = path.read_text()
    shifted = original.replace("weight: 80", "weight: 0").replace("weight: 20", "weight: 100")
    assert shifted != original
    write_atomically(path, shifted)
    try:
        with gateway_client(topology) as client:
            wait_routed(client, lambda r: r.version == "v2", consecutive=30, message="all traffic on v2")
            assert tally(client, 50) == {"v2": 50}
    finally:
        write_atomically(path, original)
    with gateway_client(topology) as client:
        wait_routed(client, lambda r: r.version == "v1", consecutive=1, message="v1 back after the edit")


def test_a_host_a_sidecar_does_not_know_gets_502(topology: LocalTopology) -> None:
    """REGISTRY_ONLY (config/mesh.yaml): a sidecar passes nothing through, so nothing can loop."""
    with HttpClient(topology.port(SIDECARS["v1"], 8080), authority="elsewhere") as client:
        assert client.get("/").status == 502
    with HttpClient(topology.port(SIDECARS["v1"], 8080), authority="reviews") as client:
        assert client.get("/").version == "v1"
