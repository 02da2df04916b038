"""The rest of the routing surface through a real Envoy, one test per behaviour family: retries,
mirroring, CORS, redirects, header manipulation, consistent hashing, connection-pool limits, outlier
detection and a weighted TCP split.

One pilot and one Envoy sidecar for the module (tests/e2e/conftest.py); each test writes one file with
its own ServiceEntry (on a fresh port, so a listener of its own), DestinationRule and VirtualService,
then waits for the listener, so the config it is about is there from the first request.
"""

from __future__ import annotations

import http.client
import threading
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pytest

from pilot.localmesh.backend import Backend
from pilot.localmesh.loopback import LOOPBACK, Reply, free_port, get
from tests.e2e.tcp_echo import NameServer, ask
from tests.support import wait_until
from tests.support.istio import API_VERSION, NAMESPACE, Doc, Service
from tests.support.mesh import Mesh

pytestmark = pytest.mark.e2e


def _meta(name: str) -> Doc:
    return {"name": name, "namespace": NAMESPACE}


PORT_NAME = "main"


def service_entry(service: Service, endpoints: Sequence[Doc], protocol: str = "HTTP") -> Doc:
    return {
        "apiVersion": API_VERSION,
        "kind": "ServiceEntry",
        "metadata": _meta(service.name),
        "spec": {
            "hosts": [service.host],
            "location": "MESH_INTERNAL",
            "ports": [{"number": service.port, "name": PORT_NAME, "protocol": protocol}],
            "resolution": "STATIC",
            "endpoints": list(endpoints),
        },
    }


def endpoint(port: int, version: str = "") -> Doc:
    """A 127.0.0.1 endpoint listening on ``port``, labelled ``version`` (if given)."""
    return {
        "address": LOOPBACK,
        "ports": {PORT_NAME: port},
        **({"labels": {"version": version}} if version else {}),
    }


def destination_rule(service: Service, subsets: Sequence[str] = (), policy: Doc | None = None) -> Doc:
    spec: Doc = {"host": service.name, "subsets": [{"name": s, "labels": {"version": s}} for s in subsets]}
    if policy is not None:
        spec["trafficPolicy"] = policy
    return {
        "apiVersion": API_VERSION,
        "kind": "DestinationRule",
        "metadata": _meta(service.name),
        "spec": spec,
    }


def virtual_service(service: Service, **routes: Any) -> Doc:
    spec = {"hosts": [service.name], **routes}
    return {
        "apiVersion": API_VERSION,
        "kind": "VirtualService",
        "metadata": _meta(service.name),
        "spec": spec,
    }


def to(service: Service, subset: str = "", **extra: Any) -> Doc:
    destination = {"host": service.name, **({"subset": subset} if subset else {})}
    return {"destination": destination, **extra}


def deploy(mesh: Mesh, name: str, *docs_of: Any, timeout: float = 20.0) -> Service:
    """Write ``docs_of(service)`` for a new service ``name`` on a fresh port; wait for its listener."""
    service = Service(name, free_port())
    docs: list[Doc] = [doc for make in docs_of for doc in make(service)]
    mesh.write(f"{name}.yaml", *docs)
    mesh.envoy.wait_listener(service.listener, timeout=timeout)
    return service


def backends(mesh: Mesh, *versions: str) -> list[Doc]:
    return [endpoint(mesh.backends[v].port, v) for v in versions]


def request(service: Service, method: str, path: str, headers: Mapping[str, str]) -> Reply:
    conn = http.client.HTTPConnection(LOOPBACK, service.port, timeout=5.0)
    try:
        conn.request(method, path, headers={"Host": service.name, **headers})
        resp = conn.getresponse()
        return Reply(resp.status, resp.read(), {k.lower(): v for k, v in resp.getheaders()})
    finally:
        conn.close()


def received(backend: Backend, path: str) -> list[dict[str, str]]:
    """The headers of every request for ``path`` the backend served."""
    return [headers for _, seen, headers in list(backend.received) if seen == path]


@pytest.fixture
def unique() -> str:
    return uuid.uuid4().hex[:8]


# --- retries --------------------------------------------------------------------------------------


def test_retries_turn_failures_into_success(mesh: Mesh, unique: str) -> None:
    v1 = mesh.backends["v1"]
    svc = deploy(
        mesh,
        "retries",
        lambda s: [
            service_entry(s, backends(mesh, "v1")),
            virtual_service(
                s,
                http=[
                    {
                        "match": [{"uri": {"prefix": "/once/"}}],
                        "rewrite": {"uri": "/flaky/"},
                        "retries": {"attempts": 0},
                        "route": [to(s)],
                    },
                    {
                        "retries": {"attempts": 3, "retryOn": "5xx,deadline-exceeded", "perTryTimeout": "2s"},
                        "route": [to(s)],
                    },
                ],
            ),
        ],
    )
    with mesh.client(svc) as client:
        ok = client.get(f"/flaky/{unique}/2")
        assert ok.status == 200, ok.text
        # Two 503s, then the third attempt succeeded; Envoy told the backend which attempt it was.
        seen = received(v1, f"/flaky/{unique}/2")
        assert len(seen) == 3 and seen[-1]["x-envoy-attempt-count"] == "3"
        failed = client.get(f"/once/{unique}-no-retry/1")
        assert failed.status == 503 and len(received(v1, f"/flaky/{unique}-no-retry/1")) == 1
    mesh.assert_config_accepted()


# --- mirroring ------------------------------------------------------------------------------------


def test_mirror_backend_receives_copies(mesh: Mesh, unique: str) -> None:
    v2 = mesh.backends["v2"]
    svc = deploy(
        mesh,
        "mirror",
        lambda s: [
            service_entry(s, backends(mesh, "v1", "v2")),
            destination_rule(s, ["v1", "v2"]),
            virtual_service(
                s,
                http=[
                    {
                        "route": [to(s, "v1")],
                        "mirror": {"host": s.name, "subset": "v2"},
                        "mirrorPercentage": {"value": 100},
                    },
                ],
            ),
        ],
    )
    paths = [f"/mirror/{unique}/{i}" for i in range(5)]
    with mesh.client(svc) as client:
        assert {client.get(path).version for path in paths} == {"v1"}
    # Mirrored requests are fire-and-forget: they may land a moment after the replies.
    wait_until(lambda: all(received(v2, p) for p in paths), 10.0, 0.05, "mirrored copies at v2")
    assert {received(v2, p)[0]["host"] for p in paths} == {f"{svc.name}-shadow"}
    mesh.assert_config_accepted()


# --- CORS -----------------------------------------------------------------------------------------

ORIGIN = "https://app.example.com"


def test_cors_preflight_is_answered_by_envoy(mesh: Mesh, unique: str) -> None:
    v1 = mesh.backends["v1"]
    svc = deploy(
        mesh,
        "cors",
        lambda s: [
            service_entry(s, backends(mesh, "v1")),
            virtual_service(
                s,
                http=[
                    {
                        "corsPolicy": {
                            "allowOrigins": [{"exact": ORIGIN}, {"regex": r"https://.*\.trusted\.org"}],
                            "allowMethods": ["GET", "POST"],
                            "allowHeaders": ["x-custom"],
                            "exposeHeaders": ["x-backend-version"],
                            "maxAge": "24h",
                            "allowCredentials": True,
                        },
                        "route": [to(s)],
                    }
                ],
            ),
        ],
    )
    path = f"/cors/{unique}"
    preflight = request(
        svc,
        "OPTIONS",
        path,
        {
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "x-custom",
        },
    )
    assert preflight.status == 200
    assert preflight.headers["access-control-allow-origin"] == ORIGIN
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert preflight.headers["access-control-allow-headers"] == "x-custom"
    assert preflight.headers["access-control-max-age"] == "86400"
    assert preflight.headers["access-control-allow-credentials"] == "true"
    assert received(v1, path) == [], "Envoy answered the preflight itself"
    regex = request(
        svc, "OPTIONS", path, {"Origin": "https://a.trusted.org", "Access-Control-Request-Method": "GET"}
    )
    assert regex.headers.get("access-control-allow-origin") == "https://a.trusted.org"
    simple = request(svc, "GET", path, {"Origin": ORIGIN})
    assert simple.status == 200 and simple.headers["access-control-allow-origin"] == ORIGIN
    assert simple.headers["access-control-expose-headers"] == "x-backend-version"
    # An origin the policy does not allow: forwarded (unmatchedPreflights defaults to FORWARD), no grant.
    other = request(
        svc, "OPTIONS", path, {"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"}
    )
    assert other.version == "v1" and "access-control-allow-origin" not in other.headers
    mesh.assert_config_accepted()


# --- redirects ------------------------------------------------------------------------------------


def test_redirects(mesh: Mesh) -> None:
    svc = deploy(
        mesh,
        "redirect",
        lambda s: [
            service_entry(s, backends(mesh, "v1")),
            virtual_service(
                s,
                http=[
                    {
                        "match": [{"uri": {"prefix": "/old"}}],
                        "redirect": {"uri": "/new", "redirectCode": 302},
                    },
                    {
                        "match": [{"uri": {"exact": "/elsewhere"}}],
                        "redirect": {
                            "authority": "other.example",
                            "derivePort": "FROM_REQUEST_PORT",
                            "scheme": "http",
                        },
                    },
                    {"route": [to(s)]},
                ],
            ),
        ],
    )
    with mesh.client(svc) as client:
        moved = client.get("/old/page")
        assert moved.status == 302 and moved.headers["location"] == f"http://{svc.name}/new"
        away = client.get("/elsewhere")
        assert away.status == 301 and away.headers["location"] == f"http://other.example:{svc.port}/elsewhere"
        assert client.get("/new").version == "v1"
    mesh.assert_config_accepted()


# --- headers --------------------------------------------------------------------------------------


def test_header_set_add_remove(mesh: Mesh, unique: str) -> None:
    svc = deploy(
        mesh,
        "headers",
        lambda s: [
            service_entry(s, backends(mesh, "v1")),
            destination_rule(s, ["v1"]),
            virtual_service(
                s,
                http=[
                    {
                        "headers": {
                            "request": {
                                "set": {"x-set": "yes"},
                                "add": {"x-added": "more"},
                                "remove": ["x-secret"],
                            },
                            "response": {"set": {"x-served-by": "pilot"}, "remove": ["x-backend-version"]},
                        },
                        "route": [to(s, "v1", headers={"request": {"set": {"x-destination": "v1"}}})],
                    }
                ],
            ),
        ],
    )
    path = f"/headers/{unique}"
    with mesh.client(svc) as client:
        reply = client.get(path, {"x-secret": "hunter2", "x-added": "first", "x-set": "no"})
    (seen,) = received(mesh.backends["v1"], path)
    assert seen["x-set"] == "yes" and seen["x-destination"] == "v1"
    assert "x-secret" not in seen and seen["x-added"] == "first,more"
    assert reply.headers["x-served-by"] == "pilot" and "x-backend-version" not in reply.headers
    mesh.assert_config_accepted()


# --- consistent hashing ---------------------------------------------------------------------------


def test_consistent_hash_keeps_a_user_on_one_backend(mesh: Mesh) -> None:
    svc = deploy(
        mesh,
        "sticky",
        lambda s: [
            service_entry(s, backends(mesh, "v1", "v2", "v3")),
            destination_rule(s, policy={"loadBalancer": {"consistentHash": {"httpHeaderName": "x-user"}}}),
        ],
    )
    served: dict[str, set[str | None]] = {}
    with mesh.client(svc) as client:
        for user in (f"user-{i}" for i in range(20)):
            served[user] = {client.get("/", {"x-user": user}).version for _ in range(5)}
    assert all(len(versions) == 1 for versions in served.values()), served
    # 20 users on one backend of three by chance: about 3^-19.
    assert len(set().union(*served.values())) > 1, served
    mesh.assert_config_accepted()


# --- connection pool ------------------------------------------------------------------------------


def test_connection_pool_limit_returns_503s(mesh: Mesh) -> None:
    svc = deploy(
        mesh,
        "breaker",
        lambda s: [
            service_entry(s, backends(mesh, "v1")),
            destination_rule(
                s,
                policy={
                    "connectionPool": {
                        "tcp": {"maxConnections": 1},
                        "http": {"http1MaxPendingRequests": 1, "maxRequestsPerConnection": 1},
                    }
                },
            ),
            virtual_service(s, http=[{"retries": {"attempts": 0}, "route": [to(s)]}]),
        ],
    )
    replies: list[Reply] = []
    lock = threading.Lock()

    def call() -> None:
        reply = get(svc.port, "/delay/0.5", headers={"Host": svc.name}, timeout=10.0)
        with lock:
            replies.append(reply)

    threads = [threading.Thread(target=call) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(15.0)
    statuses = Counter(r.status for r in replies)
    assert len(replies) == 8 and statuses[200] >= 1 and statuses[503] >= 1, statuses
    assert all(r.headers.get("x-envoy-overloaded") == "true" for r in replies if r.status == 503)
    mesh.assert_config_accepted()


# --- outlier detection ----------------------------------------------------------------------------


def test_outlier_detection_ejects_a_failing_endpoint(mesh: Mesh) -> None:
    dead = free_port()  # nothing listens there: every connection to it fails (a 5xx to Envoy)
    svc = deploy(
        mesh,
        "outlier",
        lambda s: [
            service_entry(s, [*backends(mesh, "v1"), endpoint(dead, "dead")]),
            destination_rule(
                s,
                policy={
                    "loadBalancer": {"simple": "ROUND_ROBIN"},
                    "outlierDetection": {
                        "consecutive5xxErrors": 2,
                        "interval": "1s",
                        "baseEjectionTime": "60s",
                        "maxEjectionPercent": 100,
                    },
                },
            ),
            virtual_service(s, http=[{"retries": {"attempts": 0}, "route": [to(s)]}]),
        ],
    )
    with mesh.client(svc) as client:
        first = Counter(client.get("/").status for _ in range(10))
        assert first[503] >= 1, f"the dead endpoint was never tried: {first}"
        # Ejected after two consecutive failures: from then on only the live endpoint serves.
        wait_until(lambda: all(client.get("/").status == 200 for _ in range(20)), 10.0, 0.05, "ejection")
    cluster = f"outbound|{svc.port}||{svc.host}"
    stats = mesh.envoy.stats("outlier_detection.ejections_enforced_total")
    assert stats.get(f"cluster.{cluster}.outlier_detection.ejections_enforced_total", 0) >= 1, stats
    mesh.assert_config_accepted()


# --- TCP ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def name_servers() -> Iterator[dict[str, NameServer]]:
    servers: dict[str, NameServer] = {}
    try:
        for name in ("tcp-a", "tcp-b"):
            servers[name] = NameServer(name).start()
        yield servers
    finally:
        for server in servers.values():
            server.stop()


def test_tcp_weighted_split(mesh: Mesh, name_servers: dict[str, NameServer]) -> None:
    svc = deploy(
        mesh,
        "echo",
        lambda s: [
            service_entry(s, [endpoint(server.port, name) for name, server in name_servers.items()], "TCP"),
            destination_rule(s, list(name_servers)),
            virtual_service(s, tcp=[{"route": [to(s, "tcp-a", weight=75), to(s, "tcp-b", weight=25)]}]),
        ],
    )
    connections = 200
    counts = Counter(ask(svc.port) for _ in range(connections))
    assert counts["tcp-a"] + counts["tcp-b"] == connections, counts
    # 75% of 200 has a standard deviation of about 3 points: 60-90% is 5 sigma.
    assert 0.60 <= counts["tcp-a"] / connections <= 0.90, counts
    mesh.assert_config_accepted()
