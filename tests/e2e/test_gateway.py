"""An ingress gateway end to end: ``pilot serve``, a real Envoy started as a router (node type
``router``, LABELS ``istio: ingressgateway``) and a backend behind it.

One Gateway with a plain HTTP server and a TLS-terminating HTTPS server (certificate files made for
the test, a CA and a certificate for bookinfo.example.com) and one VirtualService bound to it,
routing to the backend through a ServiceEntry. Servers bind 127.0.0.1 so no traffic leaves the
host.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from pilot.localmesh.config_files import write_atomically
from tests.support import Backend, EnvoyProcess, PilotProcess, failure_logs, free_port, get, wait_until
from tests.support.certs import Certificates, make_certificates, openssl_available
from tests.support.jwt_issuer import Issuer

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not openssl_available(), reason="no openssl command to make certificates"),
]

HOST = "bookinfo.example.com"
LOOPBACK = "127.0.0.1"
ROUTER_NODE = "router~127.0.0.1~istio-ingressgateway-1.istio-system~istio-system.svc.cluster.local"
API = "networking.istio.io/v1"


@dataclass
class Ingress:
    pilot: PilotProcess
    envoy: EnvoyProcess
    backend: Backend
    certs: Certificates
    http_port: int
    https_port: int


def config(backend: Backend, certs: Certificates, http_port: int, https_port: int) -> list[dict[str, Any]]:
    def meta(name: str) -> dict[str, str]:
        return {"name": name, "namespace": "default"}

    return [
        {
            "apiVersion": API,
            "kind": "ServiceEntry",
            "metadata": meta("productpage"),
            "spec": {
                "hosts": ["productpage.default.svc.cluster.local"],
                "location": "MESH_INTERNAL",
                "ports": [{"number": 9080, "name": "http", "protocol": "HTTP"}],
                "resolution": "STATIC",
                "endpoints": [{"address": LOOPBACK, "ports": {"http": backend.port}}],
            },
        },
        {
            "apiVersion": API,
            "kind": "Gateway",
            "metadata": meta("bookinfo-gateway"),
            "spec": {
                "selector": {"istio": "ingressgateway"},
                "servers": [
                    {
                        "port": {"number": http_port, "name": "http", "protocol": "HTTP"},
                        "bind": LOOPBACK,
                        "hosts": ["*"],
                    },
                    {
                        "port": {"number": https_port, "name": "https", "protocol": "HTTPS"},
                        "bind": LOOPBACK,
                        "hosts": [HOST],
                        "tls": {
                            "mode": "SIMPLE",
                            "serverCertificate": str(certs.cert),
                            "privateKey": str(certs.key),
                        },
                    },
                ],
            },
        },
        {
            "apiVersion": API,
            "kind": "VirtualService",
            "metadata": meta("bookinfo"),
            "spec": {
                "hosts": [HOST],
                "gateways": ["bookinfo-gateway"],
                "http": [{"route": [{"destination": {"host": "productpage", "port": {"number": 9080}}}]}],
            },
        },
    ]


@pytest.fixture(scope="module")
def ingress(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ingress]:
    root = tmp_path_factory.mktemp("gateway")
    certs = make_certificates(root / "certs", [HOST])
    http_port, https_port = free_port(), free_port()
    with ExitStack() as stack:  # stops everything started, last first, also on failure
        backend = Backend("v1").start()
        stack.callback(backend.stop)
        (root / "config").mkdir()
        text = yaml.safe_dump_all(config(backend, certs, http_port, https_port), sort_keys=False)
        write_atomically(root / "config" / "gateway.yaml", text)
        pilot = PilotProcess(root / "config", root / "pilot.log")
        envoy = EnvoyProcess(
            ROUTER_NODE,
            pilot.xds_port,
            root,
            metadata={"LABELS": {"istio": "ingressgateway"}},
            name="envoy-gateway",
        )
        for process in (pilot, envoy):
            failure_logs.watch(process)
            stack.callback(failure_logs.unwatch, process)
            stack.callback(process.stop)
            process.start()
        for port in (http_port, https_port):
            envoy.wait_listener(f"{LOOPBACK}_{port}", timeout=20.0)
        yield Ingress(pilot, envoy, backend, certs, http_port, https_port)


def https_get(port: int, server_name: str, ca: Path | None) -> tuple[int, dict[str, Any]]:
    """GET / over TLS to 127.0.0.1:port with SNI ``server_name``, verifying the server's certificate
    against ``ca`` (not at all when None)."""
    context = ssl.create_default_context(cafile=str(ca) if ca is not None else None)
    if ca is None:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    with socket.create_connection((LOOPBACK, port), timeout=5.0) as raw:
        with context.wrap_socket(raw, server_hostname=server_name) as tls:
            tls.sendall(f"GET / HTTP/1.1\r\nHost: {server_name}\r\nConnection: close\r\n\r\n".encode())
            response = http.client.HTTPResponse(tls)
            response.begin()
            body = response.read()
    return response.status, json.loads(body) if body.startswith(b"{") else {}


def test_http_request_with_host_header_reaches_the_backend(ingress: Ingress) -> None:
    def routed() -> bool:
        reply = get(ingress.http_port, "/productpage", headers={"Host": HOST})
        return reply.status == 200 and reply.version == "v1"

    wait_until(routed, 15.0, 0.1, "HTTP through the gateway")
    reply = get(ingress.http_port, "/productpage?x=1", headers={"Host": f"{HOST}:{ingress.http_port}"})
    assert (reply.status, reply.version, reply.json()["path"]) == (200, "v1", "/productpage?x=1")
    # A host no VirtualService serves on this server: Envoy's 404.
    assert get(ingress.http_port, "/", headers={"Host": "other.example.com"}).status == 404


def test_https_request_terminated_at_the_gateway(ingress: Ingress) -> None:
    def served() -> dict[str, Any] | None:
        status, body = https_get(ingress.https_port, HOST, ingress.certs.ca)
        return body if status == 200 else None

    errors = (OSError, ssl.SSLError, http.client.HTTPException)
    body = wait_until(served, 15.0, 0.1, "HTTPS through the gateway", ignore=errors)
    assert body is not None
    assert body["version"] == "v1"
    assert body["headers"]["x-forwarded-proto"] == "https"
    # Another SNI matches no filter chain: Envoy closes the connection during the handshake.
    with pytest.raises(errors):
        https_get(ingress.https_port, "unknown.example.com", None)


def test_envoy_accepted_every_update(ingress: Ingress) -> None:
    assert ingress.envoy.configured()
    assert ingress.envoy.rejected_updates() == {}, ingress.envoy.log_tail(30)
    listeners = ingress.envoy.active_listeners()
    assert {f"{LOOPBACK}_{ingress.http_port}", f"{LOOPBACK}_{ingress.https_port}"} <= listeners


def test_an_authorization_policy_selecting_the_gateway_is_enforced_on_it(ingress: Ingress) -> None:
    """A DENY on a path from the root namespace, selecting the router by its labels: 403 there, the
    rest still routed; removing the policy opens the path again."""
    policy = {
        "apiVersion": "security.istio.io/v1",
        "kind": "AuthorizationPolicy",
        "metadata": {"name": "ingress-deny-admin", "namespace": "istio-system"},
        "spec": {
            "selector": {"matchLabels": {"istio": "ingressgateway"}},
            "action": "DENY",
            "rules": [{"to": [{"operation": {"paths": ["/admin/*"]}}]}],
        },
    }
    path = ingress.pilot.config_dir / "authz.yaml"
    headers = {"Host": HOST}
    write_atomically(path, yaml.safe_dump(policy, sort_keys=False))
    try:
        wait_until(
            lambda: get(ingress.http_port, "/admin/x", headers=headers).status == 403,
            15.0,
            0.05,
            "the DENY on the gateway",
        )
        assert get(ingress.http_port, "/productpage", headers=headers).status == 200
    finally:
        path.unlink()
    wait_until(
        lambda: get(ingress.http_port, "/admin/x", headers=headers).status == 200,
        15.0,
        0.05,
        "the path open again",
    )


CLAIMS_HOST = "claims.example.com"


def test_request_authentication_on_the_gateway_routes_by_a_verified_claim(ingress: Ingress) -> None:
    """A RequestAuthentication selecting the router (inline keys made here): an invalid token gets
    401 at the gateway; a VirtualService route on ``@request.auth.claims.sub`` matches the verified
    payload, since the gateway's jwt_authn clears the route cache (Istio's gateway shape)."""
    issuer = Issuer("https://gateway-issuer.test")
    meta = {"namespace": "istio-system"}
    policy = {
        "apiVersion": "security.istio.io/v1",
        "kind": "RequestAuthentication",
        "metadata": {"name": "ingress-jwt", **meta},
        "spec": {
            "selector": {"matchLabels": {"istio": "ingressgateway"}},
            "jwtRules": [{"issuer": issuer.name, "jwks": issuer.jwks()}],
        },
    }
    claims_route = {
        "apiVersion": API,
        "kind": "VirtualService",
        "metadata": {"name": "claims", "namespace": "default"},
        "spec": {
            "hosts": [CLAIMS_HOST],
            "gateways": ["bookinfo-gateway"],
            "http": [
                {
                    "match": [{"headers": {"@request.auth.claims.sub": {"exact": "alice"}}}],
                    "route": [{"destination": {"host": "productpage", "port": {"number": 9080}}}],
                }
            ],
        },
    }
    path = ingress.pilot.config_dir / "request-authentication.yaml"
    write_atomically(path, yaml.safe_dump_all([policy, claims_route]))

    def status(token: str | None) -> int:
        headers = {"Host": CLAIMS_HOST}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return get(ingress.http_port, "/", headers=headers).status

    try:
        wait_until(lambda: status(issuer.token("alice")) == 200, 15.0, 0.1, "a claim-routed request")
        assert status(issuer.token("bob")) == 404  # verified, but no route for this subject
        assert status(None) == 404  # no token passes the filter, and no claim matches
        assert status(issuer.token("alice", lifetime=-120)) == 401
        assert status(Issuer(issuer.name, kid=issuer.kid).token("alice")) == 401  # another key
        assert ingress.envoy.rejected_updates() == {}, ingress.envoy.log_tail(30)
    finally:
        path.unlink()
    wait_until(lambda: status(issuer.token("alice", lifetime=-120)) == 404, 15.0, 0.1, "policy removed")
