"""AuthorizationPolicy end to end: the reviews mesh with mTLS (pilot.localmesh.reviews_mesh), whose
reviews pods also serve a TCP port (9081), and policies written to pilot's config folder while the
clients send requests through their sidecars to the servers' sidecars (real Envoys under ``pilot
agent``). Each step checks the status of every request: 200 or 403 on HTTP, an answer or a closed
connection (status 0) on the TCP port, where the network RBAC filter decides.

The steps build on each other (one mesh for the module, the policy file rewritten per step):
allow-nothing for the namespace; an ALLOW for one principal and one path; a DENY on a header; an
ALLOW for that principal on the TCP port (its HTTP-only sibling rule is dropped there, as Istio does).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from pilot.localmesh import netns as mesh_netns
from pilot.localmesh.config_files import write_atomically
from pilot.localmesh.polling import wait_until
from pilot.localmesh.reviews_mesh import HOST, PORT, SERVERS, ReviewsMesh, config_yaml, reviews_mesh
from tests.support import netns

TCP_PORT = 9081
PROBE = Path(__file__).with_name("authz_probe.py")
PRINCIPAL = "cluster.local/ns/default/sa/{}"
ALLOWED_CLIENT, OTHER_CLIENT = "productpage-v1", "productpage-v2"
EDIT_TIMEOUT = 10.0
# A burst that misses a server's pooled connection with a chance of (2/3)^15, 0.2%.
FLUSH_REQUESTS = 15


def _with_tcp_port(text: str) -> str:
    documents = list(yaml.safe_load_all(text))
    for document in documents:
        if document["kind"] == "ServiceEntry":
            document["spec"]["ports"].append({"number": TCP_PORT, "name": "tcp", "protocol": "TCP"})
    return yaml.safe_dump_all(documents, sort_keys=False)


@pytest.fixture(scope="module")
def mesh() -> Iterator[ReviewsMesh]:
    envoy = netns.proxy_envoy_or_skip()
    with tempfile.TemporaryDirectory(prefix="pilot-authz-") as workdir:
        with reviews_mesh(Path(workdir), envoy, mtls=True) as built:
            app = mesh_netns.python_program(mesh_netns.PROGRAMS / "http_app.py")
            for name in SERVERS:
                started = built.mesh.spawn(built.pod(name), [*app, name, str(TCP_PORT)])
                started.log.wait_for(lambda line: line == "listening", 5.0)
            endpoints = {labels["version"]: built.pod(name).address for name, labels in SERVERS.items()}
            reviews = _with_tcp_port(config_yaml(endpoints, mtls=True))
            write_atomically(built.config_dir / "reviews.yaml", reviews)
            wait_until(
                lambda: (
                    all(f"0.0.0.0_{TCP_PORT}" in built.sidecars[s].inbound_chains() for s in SERVERS)
                    and _statuses(built, ALLOWED_CLIENT, [{"port": TCP_PORT}]) == [200]
                ),
                20.0,
                0.1,
                "the TCP port served through the sidecars",
            )
            yield built


def _write_policies(mesh: ReviewsMesh, policies: list[dict[str, Any]]) -> None:
    write_atomically(mesh.config_dir / "authz.yaml", yaml.safe_dump_all(policies, sort_keys=False))


def _policy(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "security.istio.io/v1",
        "kind": "AuthorizationPolicy",
        "metadata": {"name": name, "namespace": "default"},
        "spec": spec,
    }


def _probe(
    mesh: ReviewsMesh, client: str, requests: list[dict[str, Any]], *until: str
) -> list[dict[str, Any]]:
    argv = [sys.executable, "-I", "-c", PROBE.read_text(), HOST, json.dumps(requests), *until]
    done = mesh.mesh.run(mesh.pod(client), argv, timeout=EDIT_TIMEOUT + 10)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def _statuses(mesh: ReviewsMesh, client: str, requests: list[dict[str, Any]]) -> list[int]:
    return [answer["status"] for answer in _probe(mesh, client, requests)]


def _expect(mesh: ReviewsMesh, client: str, requests: list[dict[str, Any]], statuses: list[int]) -> None:
    """``requests`` from ``client`` answer ``statuses``, within a deadline: an edit replaces the server
    sidecar's listener, and a connection the client's sidecar pooled before it keeps the old filters
    for the one request whose answer tells it to close (``pilot agent``'s Envoy drains immediately,
    as Istio's does). The client's sidecar pools a connection per server and picks a server per
    request at random (LEAST_REQUEST), so a few requests can miss the pooled connection to one
    server: a burst first uses them all up (each answers once more, then closes), and two probes
    in a row must answer ``statuses`` before the last check."""
    _probe(mesh, client, [ROOT] * FLUSH_REQUESTS)
    seen: list[list[int]] = []

    def answered() -> bool:
        seen.append(_statuses(mesh, client, requests))
        return seen[-2:] == [statuses, statuses]

    wait_until(answered, EDIT_TIMEOUT, 0.0, f"{client}: {statuses} (answers so far {seen[-3:]})")
    # and keeps answering so, now that every connection is a new one
    assert _statuses(mesh, client, requests) == statuses, seen


def _apply(
    mesh: ReviewsMesh, policies: list[dict[str, Any]], client: str, request: dict[str, Any], want: int
) -> float:
    """Write the policies, then repeat ``request`` from ``client`` until it answers ``want``; the
    seconds from the write to that answer (the edit's latency on traffic)."""
    written = time.time()
    _write_policies(mesh, policies)
    (answer,) = _probe(mesh, client, [request], str(want), str(EDIT_TIMEOUT))
    assert answer["status"] == want, f"still {answer['status']} {EDIT_TIMEOUT}s after the edit"
    # The first server sidecar to take the edit answered; the others (one view, so one version)
    # may take it a little later: the steps after this one want all of them to hold it.
    wait_until(
        lambda: _servers_in_step(mesh), EDIT_TIMEOUT, 0.05, "every server sidecar ACKing its listeners"
    )
    return float(answer["at"]) - written


def _servers_in_step(mesh: ReviewsMesh) -> bool:
    """Every server sidecar ACKed the last listeners sent to it, all at one version."""
    rows = [row for row in mesh.pilot_debug("/debug/syncz") if _pod_of(row["proxy"]) in SERVERS]
    listeners = [row["lds"] for row in rows]
    return (
        len(rows) == len(SERVERS)
        and all(lds["status"] == "SYNCED" for lds in listeners)
        and len({lds["version_acked"] for lds in listeners}) == 1
    )


def _pod_of(proxy: str) -> str:
    """``sidecar~IP~POD.NAMESPACE~DOMAIN`` → ``POD``."""
    return proxy.split("~")[2].partition(".")[0]


ALLOW_NOTHING = _policy("allow-nothing", {})
ALLOW_ONE_PATH = _policy(
    "allow-v1-path",
    {
        "rules": [
            {
                "from": [{"source": {"principals": [PRINCIPAL.format(ALLOWED_CLIENT)]}}],
                "to": [{"operation": {"paths": ["/allowed"]}}],
            }
        ]
    },
)
DENY_HEADER = _policy(
    "deny-header",
    {"action": "DENY", "rules": [{"when": [{"key": "request.headers[x-block]", "values": ["yes"]}]}]},
)
ALLOW_TCP = _policy(
    "allow-v1-tcp",
    {
        "rules": [
            {
                "from": [{"source": {"principals": [PRINCIPAL.format(ALLOWED_CLIENT)]}}],
                "to": [{"operation": {"ports": [str(TCP_PORT)]}}],
            }
        ]
    },
)
ROOT = {"port": PORT, "path": "/"}
ALLOWED = {"port": PORT, "path": "/allowed"}
BLOCKED = {"port": PORT, "path": "/allowed", "headers": {"x-block": "yes"}}
TCP = {"port": TCP_PORT}


def test_allow_nothing_then_one_principal_and_path_then_a_deny_header_then_tcp(mesh: ReviewsMesh):
    _expect(mesh, ALLOWED_CLIENT, [ROOT, ALLOWED, TCP], [200, 200, 200])

    latency = _apply(mesh, [ALLOW_NOTHING], ALLOWED_CLIENT, ROOT, 403)
    print(f"\nallow-nothing reached traffic {latency:.3f}s after the write")
    _expect(mesh, ALLOWED_CLIENT, [ROOT, ALLOWED, TCP], [403, 403, 0])
    _expect(mesh, OTHER_CLIENT, [ROOT, ALLOWED, TCP], [403, 403, 0])

    latency = _apply(mesh, [ALLOW_NOTHING, ALLOW_ONE_PATH], ALLOWED_CLIENT, ALLOWED, 200)
    print(f"ALLOW {ALLOWED_CLIENT} /allowed reached traffic {latency:.3f}s after the write")
    assert latency < 1.0
    # Exactly that opens: the principal on that path. On the TCP port the rule has a path, which a
    # network filter cannot see: Istio drops the ALLOW rule there, so TCP stays closed.
    _expect(mesh, ALLOWED_CLIENT, [ALLOWED, ROOT, TCP], [200, 403, 0])
    _expect(mesh, OTHER_CLIENT, [ALLOWED, ROOT, TCP], [403, 403, 0])

    latency = _apply(mesh, [ALLOW_NOTHING, ALLOW_ONE_PATH, DENY_HEADER], ALLOWED_CLIENT, BLOCKED, 403)
    print(f"DENY x-block reached traffic {latency:.3f}s after the write")
    _expect(mesh, ALLOWED_CLIENT, [BLOCKED, ALLOWED, BLOCKED, ALLOWED], [403, 200, 403, 200])

    # The principal may use the TCP port; the header DENY (HTTP only) is dropped from it, whose
    # condition gone denies everything on TCP, until it is scoped to the HTTP port.
    policies = [ALLOW_NOTHING, ALLOW_ONE_PATH, DENY_HEADER, ALLOW_TCP]
    _write_policies(mesh, policies)
    wait_until(
        lambda: "allow-v1-tcp" in json.dumps(mesh.sidecars["reviews-v1"].admin("/config_dump")),
        EDIT_TIMEOUT,
        0.05,
        "the TCP allow on the reviews sidecars",
    )
    _expect(mesh, ALLOWED_CLIENT, [TCP, TCP], [0, 0])
    scoped = _policy(
        "deny-header",
        {
            "action": "DENY",
            "rules": [{**DENY_HEADER["spec"]["rules"][0], "to": [{"operation": {"ports": [str(PORT)]}}]}],
        },
    )
    latency = _apply(mesh, [ALLOW_NOTHING, ALLOW_ONE_PATH, scoped, ALLOW_TCP], ALLOWED_CLIENT, TCP, 200)
    print(f"DENY scoped to {PORT} reached traffic {latency:.3f}s after the write")
    _expect(mesh, ALLOWED_CLIENT, [TCP, TCP, BLOCKED, ALLOWED], [200, 200, 403, 200])
    _expect(mesh, OTHER_CLIENT, [TCP, ALLOWED], [0, 403])


def test_an_invalid_edit_keeps_the_last_good_policy(mesh: ReviewsMesh):
    """A policy that fails validation is rejected and its last good version keeps serving: were the
    ALLOW dropped instead, allow-nothing alone would deny its path."""
    _apply(mesh, [ALLOW_NOTHING, ALLOW_ONE_PATH], ALLOWED_CLIENT, ALLOWED, 200)
    broken = _policy("allow-v1-path", {"rules": [{"from": [{"source": {"ipBlocks": ["not-an-ip"]}}]}]})
    _write_policies(mesh, [ALLOW_NOTHING, broken])
    wait_until(
        lambda: any("not-an-ip" in e["message"] for e in mesh.pilot_debug("/debug/configz")["errors"]),
        EDIT_TIMEOUT,
        0.05,
        "pilot reporting the invalid policy",
    )
    _expect(mesh, ALLOWED_CLIENT, [ALLOWED, ROOT], [200, 403])
    _expect(mesh, OTHER_CLIENT, [ALLOWED], [403])
