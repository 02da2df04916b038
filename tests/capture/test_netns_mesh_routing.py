"""Issue 12's mesh, end to end: every sidecar configured by ``pilot serve`` over ADS, traffic captured
by iptables, routed by a VirtualService, delivered through the server pod's inbound listener.

The mesh is pilot.localmesh.reviews_mesh (``pilot demo --mesh`` runs the same one), one per module:
clients productpage-v1 and productpage-v2, servers reviews-v1 and reviews-v2, every pod with
``pilot iptables`` capture and an Envoy as uid 1337 whose node metadata carries its labels. The
clients resolve reviews.default.svc.cluster.local with an /etc/hosts of their own
(/etc/netns/POD/hosts, bound over /etc/hosts by ``ip netns exec``) to the ServiceEntry's address, which
no pod has. The reviews pods are nowhere named as servers: pilot finds them as the ServiceEntry's
endpoints (their service targets). The VirtualService splits 50/50 between v1 and v2, except for
sources labelled app=productpage,version=v2, which go to v2 only. pilot's /debug/syncz shows each
proxy's view, from its node metadata, and that every real Envoy ACKed what it was sent.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from pilot.localmesh.polling import wait_until
from pilot.localmesh.reviews_mesh import CLIENTS, HOST, PORT, SERVERS, VIP, ReviewsMesh, reviews_mesh
from tests.support import netns
from tests.support.jwt_issuer import Issuer

REQUESTS = 40  # per client; a 50/50 split leaves a version out with probability 2 * 0.5**40
OUTBOUND = "cluster.outbound|9080|{}|reviews.default.svc.cluster.local.upstream_rq_completed"
INBOUND_CHAIN = "http.inbound_0.0.0.0_9080.downstream_rq_completed"  # virtualInbound's chain for 9080
INBOUND_CLUSTER = "cluster.inbound|9080||.upstream_rq_completed"


@pytest.fixture(scope="module")
def mesh() -> Iterator[ReviewsMesh]:
    envoy = netns.proxy_envoy_or_skip()
    with tempfile.TemporaryDirectory(prefix="pilot-mesh-") as workdir:
        with reviews_mesh(Path(workdir), envoy) as built:
            yield built


def counters(mesh: ReviewsMesh) -> dict[str, dict[str, int]]:
    return {name: sidecar.stats() for name, sidecar in mesh.sidecars.items()}


def moved(before: dict[str, dict[str, int]], after: dict[str, dict[str, int]], pod: str, name: str) -> int:
    return after[pod].get(name, 0) - before[pod].get(name, 0)


def test_a_plain_curl_is_captured_routed_and_delivered_through_the_inbound_listener(mesh: ReviewsMesh):
    if shutil.which("curl") is None:
        pytest.skip("no curl (Debian: apt-get install curl)")
    before = counters(mesh)
    client = mesh.pod("productpage-v1")
    url = f"http://{HOST}:{PORT}/"
    done = mesh.mesh.run(client, ["curl", "-sS", "--max-time", "5", "-w", "\n%{remote_ip} %{http_code}", url])
    assert done.returncode == 0, done.stderr
    body, _, written = done.stdout.rpartition("\n")
    assert written == f"{VIP} 200"  # the name resolved to the ServiceEntry's address, by /etc/hosts
    answer = json.loads(body)
    server = answer["app"]
    assert server in SERVERS
    assert answer["reached"] == f"{mesh.pod(server).address}:{PORT}"
    assert answer["peer"].startswith("127.0.0.6:")  # from the server's sidecar (inbound|9080||)
    after = counters(mesh)
    version = SERVERS[server]["version"]
    assert moved(before, after, "productpage-v1", "http.outbound_0.0.0.0_9080.downstream_rq_completed") == 1
    assert moved(before, after, "productpage-v1", OUTBOUND.format(version)) == 1
    assert moved(before, after, server, INBOUND_CHAIN) == 1
    assert moved(before, after, server, INBOUND_CLUSTER) == 1


def test_the_virtual_service_splits_v1_and_v2_and_each_reply_comes_through_its_pods_inbound_listener(
    mesh: ReviewsMesh,
):
    before = counters(mesh)
    replies = mesh.get("productpage-v1", REQUESTS)
    after = counters(mesh)
    assert {reply.status for reply in replies} == {200}
    served = Counter(reply.version for reply in replies)
    assert set(served) == {"v1", "v2"} and sum(served.values()) == REQUESTS, served
    assert all(reply.peer.startswith("127.0.0.6:") for reply in replies)
    for server, labels in SERVERS.items():
        version = labels["version"]
        assert moved(before, after, "productpage-v1", OUTBOUND.format(version)) == served[version]
        assert moved(before, after, server, INBOUND_CHAIN) == served[version]
        assert moved(before, after, server, INBOUND_CLUSTER) == served[version]


def test_source_labels_send_the_v2_client_to_v2_only_while_the_other_client_gets_the_split(mesh: ReviewsMesh):
    before = counters(mesh)
    replies = mesh.get("productpage-v2", REQUESTS)
    after = counters(mesh)
    assert [reply.app for reply in replies] == ["reviews-v2"] * REQUESTS
    assert moved(before, after, "productpage-v2", OUTBOUND.format("v2")) == REQUESTS
    assert moved(before, after, "productpage-v2", OUTBOUND.format("v1")) == 0
    assert moved(before, after, "reviews-v2", INBOUND_CHAIN) == REQUESTS
    # Its neighbour, matched by no sourceLabels, still gets both versions.
    assert {reply.version for reply in mesh.get("productpage-v1", REQUESTS)} == {"v1", "v2"}


def test_only_the_service_entrys_endpoints_get_an_inbound_chain_for_its_port(mesh: ReviewsMesh):
    for server in SERVERS:
        assert "0.0.0.0_9080" in mesh.sidecars[server].inbound_chains()
    for client in CLIENTS:
        chains = mesh.sidecars[client].inbound_chains()
        assert chains and "0.0.0.0_9080" not in chains  # configured, but backing no service


def test_pilot_knows_each_proxy_by_its_metadata_and_every_sidecar_acked_its_config(mesh: ReviewsMesh):
    streams = {
        entry["proxy"].split("~")[2].partition(".")[0]: entry for entry in mesh.pilot_debug("/debug/syncz")
    }
    assert set(streams) == {*CLIENTS, *SERVERS}
    for name, entry in streams.items():
        for kind in ("cds", "lds", "eds", "rds"):
            assert entry[kind]["status"] == "SYNCED" and entry[kind]["last_nack"] is None, (name, entry)
        assert entry["view"].startswith("sidecar/default/REDIRECT"), entry["view"]
    # sourceLabels names productpage-v2's labels: the two clients cannot share a snapshot.
    assert streams["productpage-v1"]["view"] != streams["productpage-v2"]["view"]
    for server in SERVERS:
        assert f"targets:{HOST}:{PORT}" in streams[server]["view"]
    # The servers satisfy no selector (version=v2 is only in productpage-v2's): they share one view.
    assert len({streams[server]["view"] for server in SERVERS}) == 1
    assert len({entry["view"] for entry in streams.values()}) == 3


def test_request_authentication_guards_the_reviews_pods_inbound_listener(mesh: ReviewsMesh):
    """A RequestAuthentication selecting app=reviews (keys made here, inline): the productpage pod's
    requests, captured and sent through both sidecars, get 401 at the reviews sidecar for an invalid
    token, and reach the app with a valid one or none."""
    if shutil.which("curl") is None:
        pytest.skip("no curl (Debian: apt-get install curl)")
    issuer = Issuer("https://mesh-issuer.test")
    policy = {
        "apiVersion": "security.istio.io/v1",
        "kind": "RequestAuthentication",
        "metadata": {"name": "reviews-jwt", "namespace": "default"},
        "spec": {
            "selector": {"matchLabels": {"app": "reviews"}},
            "jwtRules": [{"issuer": issuer.name, "jwks": issuer.jwks()}],
        },
    }
    client = mesh.pod("productpage-v1")

    def status(token: str | None) -> str:
        header = ["-H", f"Authorization: Bearer {token}"] if token is not None else []
        curl = ["curl", "-sS", "-o", "/dev/null", "--max-time", "5", "-w", "%{http_code}", *header]
        done = mesh.mesh.run(client, [*curl, f"http://{HOST}:{PORT}/"])
        assert done.returncode == 0, done.stderr
        return done.stdout

    path = mesh.config_dir / "reviews-jwt.yaml"
    path.write_text(yaml.safe_dump(policy))
    expired = issuer.token(lifetime=-120)
    try:
        wait_until(lambda: status(expired) == "401", 15.0, 0.1, "the policy on the reviews sidecars")
        assert [status(issuer.token()) for _ in range(4)] == ["200"] * 4
        assert status(None) == "200"
        assert status(Issuer(issuer.name, kid=issuer.kid).token()) == "401"  # another key
    finally:
        path.unlink()
    wait_until(lambda: status(expired) == "200", 15.0, 0.1, "the policy removed")
