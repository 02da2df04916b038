"""mTLS between sidecars, end to end: the reviews mesh (pilot.localmesh.reviews_mesh) with ``mtls``: pilot
serve with its CA and secure port, every sidecar ``pilot agent`` running Envoy with a ``pilot token``,
certificates living 20 s (renewed at half-life). The clients' clusters upgrade to ISTIO_MUTUAL by auto
mTLS (the reviews endpoints carry ``security.istio.io/tlsMode: istio``); the reviews pods' PERMISSIVE
``virtualInbound`` terminates it and forwards the client's SPIFFE id in ``x-forwarded-client-cert``.
A pod without a sidecar (``intruder``) holds a token of its own and gets neither another identity's
certificate nor another namespace's config.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pilot.localmesh.reviews_mesh import (
    CLIENTS,
    HOST,
    PORT,
    SERVERS,
    XDS_TLS_PORT,
    ReviewsMesh,
    reviews_mesh,
    token,
)
from tests.support import netns

SPIFFE = "spiffe://cluster.local/ns/default/sa/{}"
SECRET_TTL = 12.0  # seconds; the agent renews at half of it (with a jitter)
INTRUDER = "intruder"
OUTBOUND_SSL = "cluster.outbound|9080|{}|reviews.default.svc.cluster.local.ssl.handshake"


@pytest.fixture(scope="module")
def mesh() -> Iterator[ReviewsMesh]:
    envoy = netns.proxy_envoy_or_skip()
    with tempfile.TemporaryDirectory(prefix="pilot-mtls-") as workdir:
        with reviews_mesh(
            Path(workdir), envoy, mtls=True, secret_ttl=f"{SECRET_TTL:g}s", extra_pods=(INTRUDER,)
        ) as built:
            yield built


def serial(mesh: ReviewsMesh, pod: str) -> str:
    """The serial number of the workload certificate Envoy holds (admin /certs)."""
    import json

    certs = json.loads(mesh.sidecars[pod].admin("/certs"))["certificates"]
    chains = [c for entry in certs for c in entry.get("cert_chain", [])]
    uris = [
        c["serial_number"]
        for c in chains
        if any("spiffe://" in s.get("uri", "") for s in c.get("subject_alt_names", []))
    ]
    return uris[0] if uris else ""


def test_the_client_reaches_the_server_over_mtls_and_each_side_sees_the_others_spiffe_id(mesh: ReviewsMesh):
    before = {name: sidecar.stats() for name, sidecar in mesh.sidecars.items()}
    replies = mesh.get("productpage-v1", 10)
    after = {name: sidecar.stats() for name, sidecar in mesh.sidecars.items()}
    assert {reply.status for reply in replies} == {200}
    for reply in replies:
        # The server's sidecar saw the client's certificate: its URI is productpage-v1's identity.
        assert f"URI={SPIFFE.format('productpage-v1')}" in reply.client_cert, reply.client_cert
        # and says who it is itself (By=, the server certificate's URI).
        assert f"By={SPIFFE.format(reply.app)}" in reply.client_cert, reply.client_cert
    handshakes = sum(
        after["productpage-v1"].get(OUTBOUND_SSL.format(v), 0)
        - before["productpage-v1"].get(OUTBOUND_SSL.format(v), 0)
        for v in ("v1", "v2")
    )
    served = {reply.app for reply in replies}
    assert handshakes >= len(served) >= 1
    for server in served:
        moved = after[server].get("listener.0.0.0.0_15006.ssl.handshake", 0) - before[server].get(
            "listener.0.0.0.0_15006.ssl.handshake", 0
        )
        assert moved >= 1, after[server]


def test_traffic_flows_across_two_certificate_rotations_without_a_failed_request(mesh: ReviewsMesh):
    """Both ends of one connection path renew twice (three certificates each) while requests run back
    to back; every request succeeds over mTLS."""
    serials: dict[str, set[str]] = {name: {serial(mesh, name)} for name in ("productpage-v2", "reviews-v2")}
    failures, sent = [], 0
    deadline = time.monotonic() + SECRET_TTL * 2.5
    while time.monotonic() < deadline and min(len(seen - {""}) for seen in serials.values()) < 3:
        for reply in mesh.get("productpage-v2", 5):  # productpage-v2 goes to reviews-v2 only
            sent += 1
            if reply.status != 200 or SPIFFE.format("productpage-v2") not in reply.client_cert:
                failures.append(reply)
        for name in serials:
            serials[name].add(serial(mesh, name))
    assert failures == [] and sent > 0
    for name, seen in serials.items():
        assert len(seen - {""}) >= 3, (name, seen)  # the first certificate and two renewals


def test_a_pod_without_a_sidecar_gets_no_other_identity_and_no_other_namespaces_config(mesh: ReviewsMesh):
    assert mesh.ca_dir is not None
    pod = mesh.pod(INTRUDER)
    workdir = mesh.pilot_log.parent / INTRUDER
    own = token(mesh.ca_dir, "other", INTRUDER, workdir / "token")
    root = str(mesh.ca_dir / "root-cert.pem")
    address = f"{pod_node()}:{XDS_TLS_PORT}"
    # A CSR for reviews-v1's identity with the intruder's token: refused, no certificate.
    argv = [sys.executable, "-m", "pilot", "agent", "--xds-address", address, "--root-cert", root]
    argv += ["--token-file", str(own), "--namespace", "default", "--service-account", "reviews-v1"]
    argv += ["--envoy", "/bin/false", "--ip", pod.address, "--workdir", str(workdir / "agent")]
    done = mesh.mesh.run(pod, argv, timeout=60)
    assert done.returncode == 1, done.stderr
    assert "CreateCertificate" in done.stderr and "PERMISSION_DENIED" in done.stderr, done.stderr
    # ADS on the secure port with that token, for a node in namespace default: PERMISSION_DENIED.
    ads = ADS_PROBE.format(address=address, root=root, token=own, ip=pod.address)
    probe = mesh.mesh.run(pod, [sys.executable, "-c", ads], timeout=60)
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip() == "PERMISSION_DENIED", probe.stdout


def pod_node() -> str:
    from pilot.localmesh import netns as product_netns

    return product_netns.NODE_ADDRESS


# One ADS request over TLS with a bearer token, as the agent's xDS proxy sends it; prints the status.
ADS_PROBE = """
import grpc
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
root = open({root!r}, "rb").read()
token = open("{token}").read().strip()
channel = grpc.secure_channel(
    {address!r},
    grpc.ssl_channel_credentials(root),
    options=[("grpc.ssl_target_name_override", "istiod.istio-system.svc")],
)
request = discovery_pb2.DiscoveryRequest(type_url="type.googleapis.com/envoy.config.cluster.v3.Cluster")
request.node.id = "sidecar~{ip}~reviews-v1.default~default.svc.cluster.local"
stream = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel).StreamAggregatedResources(
    iter([request]), metadata=[("authorization", "Bearer " + token)], timeout=20
)
try:
    for response in stream:
        print("GOT", len(response.resources))
        break
except grpc.RpcError as err:
    print(err.code().name)
"""


def test_every_client_cluster_to_reviews_is_mtls_and_plain_pods_are_untouched(mesh: ReviewsMesh):
    for client in CLIENTS:
        dump = mesh.sidecars[client].admin("/config_dump?resource=dynamic_active_clusters")
        assert "tlsMode-istio" in dump and f"outbound_.{PORT}_.v1_.{HOST}" in dump
    for server in SERVERS:
        chains = mesh.sidecars[server].inbound_chains()
        assert chains.count(f"0.0.0.0_{PORT}") == 2  # mTLS and plain text (PERMISSIVE)
