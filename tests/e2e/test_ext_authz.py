"""CUSTOM AuthorizationPolicy through a real Envoy and a real ext_authz HTTP server written here.

The sidecar (interception NONE) gets an inbound listener from a Sidecar ``ingress`` port, to backend
v1; a CUSTOM policy of its namespace sends ``/protected/*`` to the mesh config's ``envoyExtAuthzHttp``
provider, a ServiceEntry whose endpoint is the server below. Istio's semantics: the server's 200
lets the request through, its 403 is the client's answer, a request the policy does not match never
reaches the server; with the server down the request is denied unless the provider has ``failOpen``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import yaml

from pilot.localmesh.backend import Backend
from pilot.localmesh.loopback import Reply, free_port, get
from tests.support.istio import inbound_sidecar
from tests.support.mesh import Mesh

pytestmark = pytest.mark.e2e

AUTHZ_HOST = "ext-authz.test"
DOWN_HOST = "down-authz.test"


class Authorizer:
    """An ext_authz HTTP server on 127.0.0.1: answers every check with ``status`` and keeps the
    path of each check it was asked."""

    def __init__(self) -> None:
        self.status = 200
        self.checked: list[str] = []
        authorizer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                authorizer.checked.append(self.path)
                self.send_response(authorizer.status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="ext-authz", daemon=True)

    def __enter__(self) -> Authorizer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@pytest.fixture(scope="module")
def authorizer() -> Iterator[Authorizer]:
    with Authorizer() as server:
        yield server


def service_entry(name: str, host: str, endpoint_port: int) -> dict[str, Any]:
    """``host`` on a fresh service port, its one endpoint ``127.0.0.1:endpoint_port``."""
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "ServiceEntry",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "hosts": [host],
            "ports": [{"number": free_port(), "name": "http", "protocol": "HTTP"}],
            "resolution": "STATIC",
            "endpoints": [{"address": "127.0.0.1", "ports": {"http": endpoint_port}}],
        },
    }


def mesh_config(authz_port: int, down_port: int, fail_open: bool = False) -> dict[str, Any]:
    providers = [
        {
            "name": "test-authz",
            "envoyExtAuthzHttp": {"service": AUTHZ_HOST, "port": authz_port, "timeout": "2s"},
        },
        {
            "name": "down-authz",
            "envoyExtAuthzHttp": {
                "service": DOWN_HOST,
                "port": down_port,
                "timeout": "2s",
                "failOpen": fail_open,
            },
        },
    ]
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "istio", "namespace": "istio-system"},
        "data": {"mesh": yaml.safe_dump({"extensionProviders": providers})},
    }


def policy(provider: str) -> dict[str, Any]:
    return {
        "apiVersion": "security.istio.io/v1",
        "kind": "AuthorizationPolicy",
        "metadata": {"name": "ext-authz", "namespace": "default"},
        "spec": {
            "action": "CUSTOM",
            "provider": {"name": provider},
            "rules": [{"to": [{"operation": {"paths": ["/protected/*"]}}]}],
        },
    }


class Setup:
    """The sidecar's inbound port behind the CUSTOM policy, and the two providers' service ports."""

    def __init__(self, mesh: Mesh, port: int, authz: dict[str, Any], down: dict[str, Any]) -> None:
        self.mesh = mesh
        self.port = port
        self.authz_port = authz["spec"]["ports"][0]["number"]
        self.down_port = down["spec"]["ports"][0]["number"]

    def get(self, path: str) -> Reply:
        return get(self.port, path)  # a fresh connection: a new listener config applies to it

    def write_mesh(self, fail_open: bool) -> None:
        self.mesh.write("mesh.yaml", mesh_config(self.authz_port, self.down_port, fail_open))

    def wait_for(self, path: str, accept: Callable[[Reply], bool], what: str, timeout: float = 20.0) -> Reply:
        deadline = time.monotonic() + timeout
        seen: list[int] = []
        while True:
            reply = self.get(path)
            if accept(reply):
                return reply
            seen.append(reply.status)
            assert time.monotonic() < deadline, f"{what} not seen within {timeout:.0f}s; got {seen[-10:]}"
            time.sleep(0.05)  # pacing requests until the push lands, not a wait for a state


@pytest.fixture(scope="module")
def setup(mesh: Mesh, mesh_backends: dict[str, Backend], authorizer: Authorizer) -> Setup:
    """The inbound port, the two providers' services, the mesh config and the CUSTOM policy."""
    port = free_port()
    authz = service_entry("ext-authz", AUTHZ_HOST, authorizer.port)
    down = service_entry("down-authz", DOWN_HOST, free_port())  # nothing listens there
    mesh.write(
        "inbound.yaml",
        inbound_sidecar(port, mesh_backends["v1"].port),
        authz,
        down,
    )
    found = Setup(mesh, port, authz, down)
    found.write_mesh(fail_open=False)
    mesh.write("policy.yaml", policy("test-authz"))
    mesh.envoy.wait_listener(f"0.0.0.0_{port}", timeout=20.0)
    return found


def test_the_authorizer_decides_on_the_paths_of_the_policy(setup: Setup, authorizer: Authorizer) -> None:
    authorizer.status = 200
    before = len(authorizer.checked)
    setup.wait_for("/protected/a", lambda r: r.status == 200 and len(authorizer.checked) > before, "a check")
    assert authorizer.checked[-1] == "/protected/a"
    authorizer.status = 403
    try:
        asked = len(authorizer.checked)
        assert setup.get("/protected/b").status == 403
        assert authorizer.checked[asked:] == ["/protected/b"]
    finally:
        authorizer.status = 200
    assert setup.get("/protected/c").status == 200
    setup.mesh.assert_config_accepted()


def test_a_path_outside_the_policy_never_reaches_the_authorizer(setup: Setup, authorizer: Authorizer) -> None:
    authorizer.status = 403  # would deny anything it were asked
    try:
        setup.wait_for("/protected/a", lambda r: r.status == 403, "the policy")
        asked = len(authorizer.checked)
        assert [setup.get(path).status for path in ("/", "/public", "/protected")] == [200, 200, 200]
        assert len(authorizer.checked) == asked
    finally:
        authorizer.status = 200


def test_with_the_authorizer_down_fails_closed_unless_fail_open(setup: Setup, authorizer: Authorizer) -> None:
    setup.mesh.write("policy.yaml", policy("down-authz"))
    try:
        setup.wait_for("/protected/a", lambda r: r.status == 403, "failing closed")
        asked = len(authorizer.checked)  # the policy names the provider that is down from here on
        assert setup.get("/public").status == 200
        setup.write_mesh(fail_open=True)
        setup.wait_for("/protected/a", lambda r: r.status == 200, "failing open")
        assert len(authorizer.checked) == asked  # the other provider was never asked
    finally:
        setup.write_mesh(fail_open=False)
        setup.mesh.write("policy.yaml", policy("test-authz"))
    setup.mesh.assert_config_accepted()
