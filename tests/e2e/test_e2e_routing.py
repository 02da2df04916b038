"""VirtualService routing through a real Envoy: weights, header and URI matches, rewrite, faults, timeouts.

Each test runs against Envoy over both SotW and delta ADS (the module's mesh is parametrised).
"""

from __future__ import annotations

import json
import socket
import socketserver
import threading
from collections.abc import Iterator

import pytest

from pilot.localmesh.backend import Backend
from pilot.localmesh.loopback import LOOPBACK, free_port
from tests.support import wait_until
from tests.support.istio import API_VERSION, NAMESPACE, Service, destination, split, virtual_service
from tests.support.mesh import Mesh, outcome, tally, wait_routed

pytestmark = pytest.mark.e2e

JASON = {"end-user": "jason"}


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


def test_weighted_split_80_20(mesh: Mesh) -> None:
    svc = mesh.add_service("split")
    mesh.write("split-vs.yaml", split(svc, {"v1": 80, "v2": 20}))
    subsets = (f"outbound|{svc.port}|v1|{svc.host}", f"outbound|{svc.port}|v2|{svc.host}")

    def split_in_envoy() -> bool:
        text = json.dumps(mesh.route_config(svc) or {})
        return "weighted_clusters" in text and all(name in text for name in subsets)

    wait_until(split_in_envoy, 15.0, 0.1, "weighted route in Envoy")
    requests = 1000
    with mesh.client(svc) as client:
        counts = tally(client, requests)
    assert counts["v1"] + counts["v2"] == requests, counts
    # 80% of 1000 has a standard deviation of 1.3 points: 75-85% is about 4 sigma.
    assert 0.75 <= counts["v1"] / requests <= 0.85, counts
    mesh.assert_config_accepted()


def test_header_match(mesh: Mesh) -> None:
    svc = mesh.add_service("header")
    mesh.write(
        "header-vs.yaml",
        virtual_service(
            svc,
            [
                {"match": [{"headers": {"end-user": {"exact": "jason"}}}], "route": [destination(svc, "v2")]},
                {"route": [destination(svc, "v1")]},
            ],
        ),
    )
    with mesh.client(svc) as client:
        wait_routed(client, lambda r: r.version == "v2", headers=JASON, message="jason to v2")
        assert tally(client, 30, headers=JASON) == {"v2": 30}
        assert tally(client, 30) == {"v1": 30}
        assert tally(client, 30, headers={"end-user": "jasonx"}) == {"v1": 30}
    mesh.assert_config_accepted()


def test_uri_prefix_match_with_rewrite(mesh: Mesh) -> None:
    svc = mesh.add_service("rewrite")
    mesh.write(
        "rewrite-vs.yaml",
        virtual_service(
            svc,
            [
                {
                    "match": [{"uri": {"prefix": "/api/"}}],
                    "rewrite": {"uri": "/v2/"},
                    "route": [destination(svc, "v2")],
                },
                {"route": [destination(svc, "v1")]},
            ],
        ),
    )
    with mesh.client(svc) as client:
        wait_routed(client, lambda r: r.version == "v2", path="/api/items", message="/api/ to v2")
        rewritten = client.get("/api/items/7?color=red")
        assert (rewritten.version, rewritten.json()["path"]) == ("v2", "/v2/items/7?color=red")
        other = client.get("/apiary")
        assert (other.version, other.json()["path"]) == ("v1", "/apiary")
        root = client.get("/")
        assert (root.version, root.json()["path"]) == ("v1", "/")
    mesh.assert_config_accepted()


def test_fault_abort(mesh: Mesh) -> None:
    svc = mesh.add_service("fault")
    mesh.write(
        "fault-vs.yaml",
        virtual_service(
            svc,
            [
                {
                    "fault": {"abort": {"httpStatus": 418, "percentage": {"value": 100}}},
                    "route": [destination(svc, "v1")],
                },
            ],
        ),
    )
    with mesh.client(svc) as client:
        wait_routed(client, lambda r: r.status == 418, message="abort with 418")
        replies = [client.get("/") for _ in range(20)]
    assert {outcome(r) for r in replies} == {"status 418"}
    # The fault filter answered; no backend saw the request.
    assert all(r.version is None for r in replies)
    mesh.assert_config_accepted()


def test_route_timeout(mesh: Mesh) -> None:
    svc = mesh.add_service("timeout")
    mesh.write(
        "timeout-vs.yaml",
        virtual_service(
            svc,
            [
                {"timeout": "0.5s", "route": [destination(svc, "v1")]},
            ],
        ),
    )

    def timeout_in_envoy() -> bool:
        config = mesh.route_config(svc) or {}
        return any(
            route.get("route", {}).get("timeout") in ("0.5s", "0.500s")
            for vhost in config.get("virtual_hosts", [])
            for route in vhost.get("routes", [])
        )

    wait_until(timeout_in_envoy, 15.0, 0.1, "route timeout in Envoy")
    with mesh.client(svc) as client:
        assert client.get("/").version == "v1"
        slow = client.get("/delay/2")
        assert slow.status == 504, slow.text
        # Envoy gave up at 0.5 s instead of waiting the backend's 2 s.
        assert 0.4 <= slow.elapsed < 1.5, slow.elapsed
        assert client.get("/delay/0.05").version == "v1"
    mesh.assert_config_accepted()


def test_host_header_with_any_port_hits_the_virtual_service(mesh: Mesh) -> None:
    """istiod's domains carry no port and its route configurations ignore the port: ``Host:
    NAME:1234`` is routed by NAME's VirtualService, not by the catch-all (which passes it through)."""
    svc = mesh.add_service("anyport")
    mesh.write("anyport-vs.yaml", virtual_service(svc, [{"route": [destination(svc, "v2")]}]))
    with mesh.client(svc) as client:
        wait_routed(client, lambda r: r.version == "v2", message="anyport to v2")
        for host in (f"{svc.name}:1234", f"{svc.name}:{svc.port}", svc.name):
            assert tally(client, 10, headers={"Host": host}) == {"v2": 10}, host
    mesh.assert_config_accepted()


def test_non_service_host_and_creation_order(mesh: Mesh) -> None:
    """istiod's two precedence rules, through Envoy: a VirtualService host that is no service gets
    a virtual host of its own on the port the VirtualService routes (``Host: outside.example`` and
    ``Host: api.wild.example`` are routed by it, not passed through); of two VirtualServices for one
    host the older (``metadata.creationTimestamp``) wins, even when its name sorts last."""
    svc = mesh.add_service("precedence")
    outside, wild = f"outside-{svc.port}.example", f"*.wild-{svc.port}.example"

    def timed(name: str, created: str, hosts: list[str], subset: str) -> dict[str, object]:
        doc = virtual_service(svc, [{"route": [destination(svc, subset)]}])
        doc["metadata"] = {**doc["metadata"], "name": name, "creationTimestamp": created}
        doc["spec"] = {**doc["spec"], "hosts": hosts}
        return doc

    mesh.write(
        "precedence-vs.yaml",
        timed("z-older", "2019-01-01T00:00:00Z", [svc.name, outside, wild], "v2"),
        timed("a-newer", "2021-01-01T00:00:00Z", [svc.name], "v1"),
    )
    with mesh.client(svc) as client:
        wait_routed(client, lambda r: r.version == "v2", headers={"Host": outside}, message="outside to v2")
        assert tally(client, 10) == {"v2": 10}  # the older VirtualService holds the service
        assert tally(client, 10, headers={"Host": f"api.wild-{svc.port}.example"}) == {"v2": 10}
    config = mesh.route_config(svc) or {}
    domains = {vh["name"]: vh["domains"] for vh in config.get("virtual_hosts", [])}
    assert domains[f"{outside}:{svc.port}"] == [outside]
    assert domains[f"{wild}:{svc.port}"] == [wild]
    mesh.assert_config_accepted()


def _unnamed_port_service(service: Service, endpoints: dict[str, int]) -> dict[str, object]:
    """A ServiceEntry whose port declares no protocol (name ``web``): istiod sniffs it."""
    return {
        "apiVersion": API_VERSION,
        "kind": "ServiceEntry",
        "metadata": {"name": service.name, "namespace": NAMESPACE},
        "spec": {
            "hosts": [service.host],
            "location": "MESH_INTERNAL",
            "ports": [{"number": service.port, "name": "web"}],
            "resolution": "STATIC",
            "endpoints": [
                {"address": LOOPBACK, "ports": {"web": port}, "labels": {"version": version}}
                for version, port in sorted(endpoints.items())
            ],
        },
    }


def _raw_exchange(port: int, payload: bytes, timeout: float = 5.0) -> bytes:
    """Send ``payload`` (client first: the HTTP inspector waits for the first bytes) and read
    until the server closes."""
    with socket.create_connection((LOOPBACK, port), timeout=timeout) as sock:
        sock.sendall(payload)
        chunks = []
        while chunk := sock.recv(1024):
            chunks.append(chunk)
    return b"".join(chunks)


class _LineEcho(socketserver.StreamRequestHandler):
    """A client-first TCP server: answers the first line with ``echo: LINE`` and closes."""

    def handle(self) -> None:
        self.wfile.write(b"echo: " + self.rfile.readline())


def test_unnamed_port_is_sniffed(mesh: Mesh) -> None:
    """istiod's protocol sniffing on a port without a declared protocol: HTTP is routed by the
    VirtualService (all to v2), raw TCP to another such port passes through to its server."""
    http_svc = Service("sniffed-http", free_port())
    ports = {version: backend.port for version, backend in mesh.backends.items() if version in ("v1", "v2")}
    mesh.write(
        "sniffed-http.yaml",
        _unnamed_port_service(http_svc, ports),
        {
            "apiVersion": API_VERSION,
            "kind": "DestinationRule",
            "metadata": {"name": http_svc.name, "namespace": NAMESPACE},
            "spec": {
                "host": http_svc.host,
                "subsets": [{"name": v, "labels": {"version": v}} for v in ports],
            },
        },
        virtual_service(http_svc, [{"route": [destination(http_svc, "v2")]}]),
    )
    server = socketserver.ThreadingTCPServer((LOOPBACK, 0), _LineEcho)
    threading.Thread(target=server.serve_forever, name="line-echo", daemon=True).start()
    try:
        tcp_svc = Service("sniffed-tcp", free_port())
        mesh.write("sniffed-tcp.yaml", _unnamed_port_service(tcp_svc, {"v1": server.server_address[1]}))
        mesh.envoy.wait_listener(tcp_svc.listener, timeout=20.0)
        mesh.envoy.wait_listener(http_svc.listener, timeout=20.0)
        with mesh.client(http_svc) as client:
            wait_routed(client, lambda r: r.version == "v2", message="sniffed HTTP to v2")
            assert tally(client, 10) == {"v2": 10}
        for _ in range(5):
            assert _raw_exchange(tcp_svc.port, b"\x00\x01 not http\n") == b"echo: \x00\x01 not http\n"
    finally:
        server.shutdown()
        server.server_close()
    mesh.assert_config_accepted()
