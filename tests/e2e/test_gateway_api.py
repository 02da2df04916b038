"""The Kubernetes Gateway API end to end: ``pilot serve`` with a Gateway and HTTPRoutes in its config
folder, a real Envoy started as the router istiod would deploy for that Gateway (LABELS
``gateway.networking.k8s.io/gateway-name: edge``), and three backends behind it.

One module-scoped router serves every test: a 90/10 split, a header match, a URLRewrite, a
RequestRedirect, a RequestHeaderModifier, and a route to a backend in another namespace that is
refused (500, ResolvedRefs=False RefNotPermitted in /debug/configz) until a ReferenceGrant is written;
an HTTPS listener terminating TLS with a test-made certificate (folder mode: the files of Secret
infra/edge-cert under the listener's ``pilot.io/certificate-root``), and a TLS listener passing
connections through, by SNI, to a backend that terminates TLS itself. A sidecar Envoy in namespace
apps shows GAMMA: an HTTPRoute whose parent is Service reviews changes where its requests for reviews go,
a TCPRoute whose parent is a TCP service moves its connections, and a TLSRoute whose parent is Service
vault routes an SNI name to it. A RequestRedirect replacing the path prefix answers with the rest kept.
"""

from __future__ import annotations

import shutil
import socket
import ssl
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from pilot.localmesh.config_files import write_atomically
from pilot.localmesh.loopback import HttpClient
from tests.e2e.test_gateway import https_get
from tests.support import Backend, EnvoyProcess, PilotProcess, failure_logs, free_port, get, wait_until
from tests.support.certs import Certificates, make_certificates, openssl_available

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not openssl_available(), reason="no openssl command to make certificates"),
]

LOOPBACK = "127.0.0.1"
ROUTER_NODE = "router~127.0.0.1~edge-istio-7d4f.infra~infra.svc.cluster.local"
SIDECAR_NODE = "sidecar~127.0.0.1~client-5c9b.apps~apps.svc.cluster.local"
REVIEWS = "reviews.apps.svc.cluster.local"
GATEWAY_API = "gateway.networking.k8s.io/v1"
SHOP = "shop.example.com"
CROSS = "cross.example.com"
SECURE = "secure.example.com"
VAULT = "vault.example.com"
GRANT = {
    "apiVersion": "gateway.networking.k8s.io/v1beta1",
    "kind": "ReferenceGrant",
    "metadata": {"name": "apps-to-other", "namespace": "other"},
    "spec": {
        "from": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "namespace": "apps"}],
        "to": [{"group": "", "kind": "Service"}],
    },
}


@dataclass
class Ports:
    http: int
    https: int
    tls: int
    vault: int  # the TLS backend's
    service: int  # the HTTP services' port (a free one: the sidecar binds it)
    vault_service: int  # the TLS service's port


@dataclass
class Router:
    pilot: PilotProcess
    envoy: EnvoyProcess
    config_dir: Path
    port: int
    ports: Ports
    edge_certs: Certificates
    vault_certs: Certificates
    sidecar: EnvoyProcess


class TlsBackend:
    """A backend that terminates TLS itself (what a passthrough listener forwards to): answers every
    request with 200 and the body ``vault``."""

    def __init__(self, certs: Certificates) -> None:
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(certs.cert, certs.key)
        self.sock = socket.create_server((LOOPBACK, 0))
        self.port: int = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self.serve, name="tls-backend", daemon=True)

    def serve(self) -> None:
        while True:
            try:
                raw, _ = self.sock.accept()
            except OSError:
                return  # closed by stop()
            try:
                with self.context.wrap_socket(raw, server_side=True) as conn:
                    conn.recv(65536)
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nvault")
            except (OSError, ssl.SSLError):
                raw.close()

    def start(self) -> TlsBackend:
        self.thread.start()
        return self

    def stop(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept(); close alone does not
        except OSError:
            pass
        self.sock.close()
        self.thread.join(timeout=5.0)


def service(name: str, namespace: str, number: int, port: int, protocol: str = "HTTP") -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "ServiceEntry",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "hosts": [f"{name}.{namespace}.svc.cluster.local"],
            "location": "MESH_INTERNAL",
            "resolution": "STATIC",
            "ports": [{"number": number, "name": "main", "protocol": protocol}],
            "endpoints": [{"address": LOOPBACK, "ports": {"main": port}}],
        },
    }


def config(backends: dict[str, Backend], ports: Ports, cert_root: Path) -> list[dict[str, Any]]:
    def ref(name: str, **extra: Any) -> dict[str, Any]:
        number = ports.vault_service if name == "vault" else ports.service
        return {"name": name, "port": number, **extra}

    parent = [{"name": "edge", "namespace": "infra"}]
    return [
        service("v1", "apps", ports.service, backends["v1"].port),
        service("v2", "apps", ports.service, backends["v2"].port),
        service("other", "other", ports.service, backends["other"].port),
        service("reviews", "apps", ports.service, backends["v1"].port),
        service("vault", "apps", ports.vault_service, ports.vault, "TLS"),
        {
            "apiVersion": GATEWAY_API,
            "kind": "Gateway",
            "metadata": {"name": "edge", "namespace": "infra"},
            "spec": {
                "gatewayClassName": "istio",
                "listeners": [
                    {
                        "name": "web",
                        "port": ports.http,
                        "protocol": "HTTP",
                        "allowedRoutes": {"namespaces": {"from": "All"}},
                    },
                    {
                        "name": "secure",
                        "port": ports.https,
                        "protocol": "HTTPS",
                        "hostname": SECURE,
                        "tls": {
                            "certificateRefs": [{"name": "edge-cert"}],
                            "options": {"pilot.io/certificate-root": str(cert_root)},
                        },
                        "allowedRoutes": {"namespaces": {"from": "All"}},
                    },
                    {
                        "name": "passthrough",
                        "port": ports.tls,
                        "protocol": "TLS",
                        "hostname": VAULT,
                        "tls": {"mode": "Passthrough"},
                        "allowedRoutes": {"namespaces": {"from": "All"}},
                    },
                ],
            },
        },
        {
            "apiVersion": GATEWAY_API,
            "kind": "HTTPRoute",
            "metadata": {"name": "shop", "namespace": "apps"},
            "spec": {
                "parentRefs": parent,
                "hostnames": [SHOP],
                "rules": [
                    {
                        "matches": [{"path": {"type": "PathPrefix", "value": "/split"}}],
                        "backendRefs": [ref("v1", weight=90), ref("v2", weight=10)],
                    },
                    {
                        "matches": [
                            {
                                "path": {"type": "PathPrefix", "value": "/split"},
                                "headers": [{"name": "x-canary", "value": "yes"}],
                            }
                        ],
                        "backendRefs": [ref("v2")],
                    },
                    {
                        "matches": [{"path": {"type": "PathPrefix", "value": "/store"}}],
                        "filters": [
                            {
                                "type": "URLRewrite",
                                "urlRewrite": {
                                    "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/shop/v2"}
                                },
                            }
                        ],
                        "backendRefs": [ref("v1")],
                    },
                    {
                        "matches": [{"path": {"type": "Exact", "value": "/old"}}],
                        "filters": [
                            {
                                "type": "RequestRedirect",
                                "requestRedirect": {
                                    "scheme": "https",
                                    "hostname": "new.example.com",
                                    "path": {"type": "ReplaceFullPath", "replaceFullPath": "/new"},
                                    "statusCode": 301,
                                },
                            }
                        ],
                    },
                    {
                        "matches": [{"path": {"type": "PathPrefix", "value": "/catalog"}}],
                        "filters": [
                            {
                                "type": "RequestRedirect",
                                "requestRedirect": {
                                    "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/shop/v3"},
                                },
                            }
                        ],
                    },
                    {
                        "matches": [{"path": {"type": "PathPrefix", "value": "/headers"}}],
                        "filters": [
                            {
                                "type": "RequestHeaderModifier",
                                "requestHeaderModifier": {
                                    "set": [{"name": "x-via", "value": "edge"}],
                                    "add": [{"name": "x-added", "value": "1"}],
                                    "remove": ["x-secret"],
                                },
                            }
                        ],
                        "backendRefs": [ref("v1")],
                    },
                ],
            },
        },
        {
            "apiVersion": GATEWAY_API,
            "kind": "HTTPRoute",
            "metadata": {"name": "secure", "namespace": "apps"},
            "spec": {
                "parentRefs": [{"name": "edge", "namespace": "infra", "sectionName": "secure"}],
                "rules": [{"backendRefs": [ref("v1")]}],
            },
        },
        {
            "apiVersion": "gateway.networking.k8s.io/v1alpha2",
            "kind": "TLSRoute",
            "metadata": {"name": "vault", "namespace": "apps"},
            "spec": {
                "parentRefs": [{"name": "edge", "namespace": "infra", "sectionName": "passthrough"}],
                "hostnames": [VAULT],
                "rules": [{"backendRefs": [ref("vault")]}],
            },
        },
        {
            "apiVersion": GATEWAY_API,
            "kind": "HTTPRoute",
            "metadata": {"name": "cross", "namespace": "apps"},
            "spec": {
                "parentRefs": parent,
                "hostnames": [CROSS],
                "rules": [{"backendRefs": [ref("other", namespace="other")]}],
            },
        },
    ]


@pytest.fixture(scope="module")
def router(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Router]:
    root = tmp_path_factory.mktemp("gateway-api")
    edge_certs = make_certificates(root / "edge-certs", [SECURE])
    vault_certs = make_certificates(root / "vault-certs", [VAULT])
    secret = root / "gateway-certs" / "infra" / "edge-cert"  # Secret infra/edge-cert, as files
    secret.mkdir(parents=True)
    shutil.copy(edge_certs.cert, secret / "tls.crt")
    shutil.copy(edge_certs.key, secret / "tls.key")
    with ExitStack() as stack:  # stops everything started, last first, also on failure
        backends = {version: Backend(version).start() for version in ("v1", "v2", "other")}
        for backend in backends.values():
            stack.callback(backend.stop)
        vault = TlsBackend(vault_certs).start()
        stack.callback(vault.stop)
        ports = Ports(free_port(), free_port(), free_port(), vault.port, free_port(), free_port())
        config_dir = root / "config"
        config_dir.mkdir()
        text = yaml.safe_dump_all(config(backends, ports, root / "gateway-certs"), sort_keys=False)
        write_atomically(config_dir / "gateway.yaml", text)
        pilot = PilotProcess(config_dir, root / "pilot.log")
        envoy = EnvoyProcess(
            ROUTER_NODE,
            pilot.xds_port,
            root,
            metadata={"LABELS": {"gateway.networking.k8s.io/gateway-name": "edge"}},
            name="envoy-edge",
        )
        sidecar = EnvoyProcess(SIDECAR_NODE, pilot.xds_port, root, name="envoy-client")
        for process in (pilot, envoy, sidecar):
            failure_logs.watch(process)
            stack.callback(failure_logs.unwatch, process)
            stack.callback(process.stop)
            process.start()
        for port in (ports.http, ports.https, ports.tls):
            envoy.wait_listener(f"0.0.0.0_{port}", timeout=20.0)
        sidecar.wait_listener(f"0.0.0.0_{ports.service}", timeout=20.0)
        yield Router(pilot, envoy, config_dir, ports.http, ports, edge_certs, vault_certs, sidecar)


def shop(router: Router, path: str, headers: dict[str, str] | None = None) -> Any:
    reply = wait_until(
        lambda: (r := get(router.port, path, headers={"Host": SHOP, **(headers or {})})).status != 404 and r,
        15.0,
        0.1,
        f"{SHOP}{path} routed",
    )
    return reply


def test_weighted_split_and_header_match(router: Router) -> None:
    shop(router, "/split")
    with HttpClient(router.port, authority=SHOP) as client:
        versions = Counter(client.get("/split/item").version for _ in range(200))
        # The header match is more specific than the same path without it: it wins, whatever the order.
        canary = {client.get("/split", {"x-canary": "yes"}).version for _ in range(20)}
        # PathPrefix /split is a path-segment prefix: /splitter is not under it.
        splitter = client.get("/splitter").status
    assert set(versions) == {"v1", "v2"} and 120 <= versions["v1"] <= 195, versions
    assert canary == {"v2"}
    assert splitter == 404


def test_url_rewrite_replaces_the_prefix(router: Router) -> None:
    reply = shop(router, "/store/cart?id=7")
    assert (reply.status, reply.version, reply.json()["path"]) == (200, "v1", "/shop/v2/cart?id=7")
    assert get(router.port, "/store", headers={"Host": SHOP}).json()["path"] == "/shop/v2"


def test_request_redirect(router: Router) -> None:
    reply = shop(router, "/old")
    assert reply.status == 301
    assert reply.headers["location"] == "https://new.example.com/new"


def test_request_redirect_replaces_the_prefix(router: Router) -> None:
    # Envoy's prefix_rewrite on the redirect: the matched prefix goes, the rest of the path stays;
    # the port and the scheme of the request are kept (302 is the spec's default status).
    for path, expected in (("/catalog/books?page=2", "/shop/v3/books?page=2"), ("/catalog", "/shop/v3")):
        reply = shop(router, path)
        assert reply.status == 302, (path, reply.status)
        assert reply.headers["location"] == f"http://{SHOP}:{router.port}{expected}", path


def test_request_header_modifier(router: Router) -> None:
    reply = shop(router, "/headers", {"x-secret": "s3cret", "x-via": "client"})
    headers = reply.json()["headers"]
    assert (headers.get("x-via"), headers.get("x-added"), "x-secret" in headers) == ("edge", "1", False)


def route_status(router: Router, name: str) -> list[dict[str, Any]]:
    objects = router.pilot.debug_json("/debug/configz")["objects"]
    (route,) = [o for o in objects if o["kind"] == "HTTPRoute" and o["name"] == name]
    return list(route["status"]["parents"][0]["conditions"])


def test_cross_namespace_backend_admitted_only_with_a_reference_grant(router: Router) -> None:
    reply = wait_until(
        lambda: (r := get(router.port, "/", headers={"Host": CROSS})).status != 404 and r, 15.0, 0.1, "cross"
    )
    assert reply.status == 500  # the spec's answer for a rule whose only backend is refused
    refused = {c["type"]: c["reason"] for c in route_status(router, "cross")}
    assert refused == {"Accepted": "Accepted", "ResolvedRefs": "RefNotPermitted"}
    write_atomically(router.config_dir / "grant.yaml", yaml.safe_dump(GRANT))
    wait_until(
        lambda: get(router.port, "/", headers={"Host": CROSS}).version == "other", 15.0, 0.1, "granted"
    )
    granted = {c["type"]: c["reason"] for c in route_status(router, "cross")}
    assert granted == {"Accepted": "Accepted", "ResolvedRefs": "ResolvedRefs"}


TLS_ERRORS = (OSError, ssl.SSLError)


def test_https_listener_terminates_tls_with_the_secrets_files(router: Router) -> None:
    def served() -> dict[str, Any] | None:
        status, body = https_get(router.ports.https, SECURE, router.edge_certs.ca)
        return body if status == 200 else None

    body = wait_until(served, 15.0, 0.1, "HTTPS through the Gateway API listener", ignore=TLS_ERRORS)
    assert body is not None and body["version"] == "v1"
    assert body["headers"]["x-forwarded-proto"] == "https"


def vault_by_sni(router: Router, port: int) -> bytes | None:
    """A TLS connection to ``port`` for SNI vault.example.com, verified with the vault backend's CA
    (so it reached the backend, not a proxy terminating TLS): the reply, if the backend gave it."""
    context = ssl.create_default_context(cafile=str(router.vault_certs.ca))
    with socket.create_connection((LOOPBACK, port), timeout=5.0) as raw:
        with context.wrap_socket(raw, server_hostname=VAULT) as tls:
            tls.sendall(b"GET / HTTP/1.1\r\nHost: vault.example.com\r\n\r\n")
            reply = b""
            while chunk := tls.recv(4096):
                reply += chunk
    return reply if reply.endswith(b"vault") else None


def test_tls_listener_passes_through_to_the_backend_by_sni(router: Router) -> None:
    # The backend's certificate (not the gateway's) proves the connection was passed through.
    wait_until(
        lambda: vault_by_sni(router, router.ports.tls), 15.0, 0.1, "TLS passthrough", ignore=TLS_ERRORS
    )
    with pytest.raises(TLS_ERRORS):  # another SNI matches no filter chain
        https_get(router.ports.tls, "other.example.com", None)


def test_service_parent_routes_the_sidecars_requests_gamma(router: Router) -> None:
    def version(headers: dict[str, str]) -> str | None:
        return get(router.ports.service, "/", headers={"Host": REVIEWS, **headers}).version

    wait_until(lambda: version({}) == "v1", 15.0, 0.1, "reviews through the sidecar")
    assert version({"x-canary": "yes"}) == "v1"  # no route yet: the service's own endpoint
    route = {
        "apiVersion": GATEWAY_API,
        "kind": "HTTPRoute",
        "metadata": {"name": "reviews-canary", "namespace": "apps"},
        "spec": {
            "parentRefs": [{"group": "", "kind": "Service", "name": "reviews", "port": router.ports.service}],
            "rules": [
                {
                    "matches": [{"headers": [{"name": "x-canary", "value": "yes"}]}],
                    "backendRefs": [{"name": "v2", "port": router.ports.service}],
                },
                {"backendRefs": [{"name": "reviews", "port": router.ports.service}]},
            ],
        },
    }
    write_atomically(router.config_dir / "gamma.yaml", yaml.safe_dump(route))
    wait_until(lambda: version({"x-canary": "yes"}) == "v2", 15.0, 0.1, "the GAMMA route in the sidecar")
    assert version({}) == "v1"


def test_service_parent_tcp_route_moves_the_sidecars_connections_gamma(router: Router) -> None:
    objects = router.pilot.debug_json("/debug/configz")["objects"]
    [v1] = [o for o in objects if o["kind"] == "ServiceEntry" and o["name"] == "v1"]
    port = free_port()  # a TCP service of its own on v1's backend: the sidecar binds 0.0.0.0_PORT
    ledger = service("ledger", "apps", port, v1["spec"]["endpoints"][0]["ports"]["main"], "TCP")
    write_atomically(router.config_dir / "ledger.yaml", yaml.safe_dump(ledger))
    router.sidecar.wait_listener(f"0.0.0.0_{port}", timeout=20.0)
    wait_until(lambda: get(port, "/", headers={"Host": "ledger"}).version == "v1", 15.0, 0.1, "ledger on v1")
    route = {
        "apiVersion": "gateway.networking.k8s.io/v1alpha2",
        "kind": "TCPRoute",
        "metadata": {"name": "ledger-to-v2", "namespace": "apps"},
        "spec": {
            "parentRefs": [{"group": "", "kind": "Service", "name": "ledger", "port": port}],
            "rules": [{"backendRefs": [{"name": "v2", "port": router.ports.service}]}],
        },
    }
    write_atomically(router.config_dir / "ledger-route.yaml", yaml.safe_dump(route))
    # The connections to ledger's port go through the sidecar's tcp_proxy to v2's backend (HTTP over
    # TCP here: the backend says which it is).
    wait_until(lambda: get(port, "/", headers={"Host": "ledger"}).version == "v2", 15.0, 0.1, "ledger to v2")
    [parent] = [
        o for o in router.pilot.debug_json("/debug/configz")["objects"] if o["name"] == "ledger-to-v2"
    ]
    conditions = {c["type"]: c["reason"] for c in parent["status"]["parents"][0]["conditions"]}
    assert conditions == {"Accepted": "Accepted", "ResolvedRefs": "ResolvedRefs"}


def test_service_parent_tls_route_routes_the_sidecars_sni_gamma(router: Router) -> None:
    router.sidecar.wait_listener(f"0.0.0.0_{router.ports.vault_service}", timeout=20.0)
    # Without a route the sidecar's chain for vault matches its own host name as SNI, not VAULT.
    with pytest.raises(TLS_ERRORS):
        vault_by_sni(router, router.ports.vault_service)
    route = {
        "apiVersion": "gateway.networking.k8s.io/v1alpha2",
        "kind": "TLSRoute",
        "metadata": {"name": "vault-by-name", "namespace": "apps"},
        "spec": {
            "parentRefs": [{"group": "", "kind": "Service", "name": "vault"}],
            "hostnames": [VAULT],
            "rules": [{"backendRefs": [{"name": "vault", "port": router.ports.vault_service}]}],
        },
    }
    write_atomically(router.config_dir / "vault-mesh.yaml", yaml.safe_dump(route))
    wait_until(
        lambda: vault_by_sni(router, router.ports.vault_service),
        15.0,
        0.1,
        "SNI vault.example.com through the sidecar",
        ignore=TLS_ERRORS,
    )


def test_envoy_accepted_every_update(router: Router) -> None:
    for envoy in (router.envoy, router.sidecar):
        assert envoy.configured()
        assert envoy.rejected_updates() == {}, envoy.log_tail(30)
