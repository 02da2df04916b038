"""PeerAuthentication end to end: the reviews mesh with mTLS (pilot.localmesh.reviews_mesh, every sidecar
``pilot agent`` running Envoy) and a pod without a sidecar (``plain``) that talks to the reviews pods'
addresses directly, as a workload outside the mesh would. Each test writes the policy file into pilot's
folder and watches traffic change: a probe in the plain pod (pod_programs/http_probe.py) asks every
20 ms and stamps each attempt, so the time from the write to the first attempt that sees the new
policy is measured and printed. The meshed client (productpage-v1) goes through its sidecar, whose
auto mTLS follows the servers' policy.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from pilot.localmesh import netns as product_netns
from pilot.localmesh.config_files import write_atomically
from pilot.localmesh.polling import Timeout, wait_until
from pilot.localmesh.reviews_mesh import PORT, ReviewsMesh, reviews_mesh
from tests.support import netns

PLAIN = "plain"
SERVER = "reviews-v1"
EXTRA_PORT = 9090  # a second app in reviews-v1 that no service declares
PROBE_INTERVAL = 0.02
EFFECT_TIMEOUT = 5.0
POLICY_FILE = "peer-authentication.yaml"
SPIFFE_CLIENT = "spiffe://cluster.local/ns/default/sa/productpage-v1"


@pytest.fixture(scope="module")
def mesh() -> Iterator[ReviewsMesh]:
    envoy = netns.proxy_envoy_or_skip()
    with tempfile.TemporaryDirectory(prefix="pilot-peerauthn-") as workdir:
        with reviews_mesh(Path(workdir), envoy, mtls=True, extra_pods=(PLAIN,)) as built:
            app = product_netns.python_program(product_netns.PROGRAMS / "http_app.py")
            extra = built.mesh.spawn(built.pod(SERVER), [*app, SERVER, str(EXTRA_PORT)])
            extra.log.wait_for(lambda line: line == "listening", 5.0)
            yield built


def policy(name: str, spec: dict[str, object]) -> dict[str, object]:
    return {
        "apiVersion": "security.istio.io/v1",
        "kind": "PeerAuthentication",
        "metadata": {"name": name, "namespace": "default"},
        "spec": spec,
    }


def apply(mesh: ReviewsMesh, *documents: dict[str, object]) -> float:
    """Write the policy file (none: remove it, so no policy is left); the wall-clock time of it."""
    written = time.time()
    if documents:
        write_atomically(mesh.config_dir / POLICY_FILE, yaml.safe_dump_all(documents))
    else:
        (mesh.config_dir / POLICY_FILE).unlink(missing_ok=True)
    return written


class Probe:
    """http_probe.py in the plain pod against one address and port, stopped on exit."""

    def __init__(self, mesh: ReviewsMesh, port: int) -> None:
        program = product_netns.python_program(product_netns.PROGRAMS / "http_probe.py")
        address = mesh.pod(SERVER).address
        self.process = mesh.mesh.spawn(mesh.pod(PLAIN), [*program, address, str(port), str(PROBE_INTERVAL)])

    def __enter__(self) -> Probe:
        return self

    def __exit__(self, *exc: object) -> None:
        self.process.process.kill()
        self.process.process.wait(5)

    def first(self, after: float, admitted: bool, timeout: float = EFFECT_TIMEOUT) -> float:
        """The start time of the first attempt begun after ``after`` that was admitted (200) or not
        (refused), and of the next one too: a new policy holds, not one lucky attempt."""

        def matches(line: str) -> bool:
            attempt = json.loads(line)
            return attempt["t"] >= after and (attempt["status"] == 200) is admitted

        self.process.log.wait_for(matches, timeout)
        seen = self.process.log.matching(matches)
        first = json.loads(seen[0])["t"]
        self.process.log.wait_for(lambda line: json.loads(line)["t"] > first and matches(line), timeout)
        later = [json.loads(line) for line in self.process.log.lines if json.loads(line)["t"] > first]
        assert (later[0]["status"] == 200) is admitted, later[:3]
        return float(first)


def plain_text_admitted(mesh: ReviewsMesh, port: int) -> bool:
    with Probe(mesh, port) as probe:
        probe.first(0, admitted=True, timeout=EFFECT_TIMEOUT)
        return True


def meshed_reply_until(
    mesh: ReviewsMesh, accept: Callable[[str], bool], client: str = "productpage-v1"
) -> str:
    """The x-forwarded-client-cert of a meshed request (``client`` → reviews) once ``accept`` takes
    it; every request must succeed (200)."""
    seen: list[str] = []

    def ok() -> bool:
        replies = mesh.get(client, 2)
        assert {reply.status for reply in replies} == {200}, replies
        seen[:] = [reply.client_cert for reply in replies]
        return all(accept(cert) for cert in seen)

    try:
        wait_until(ok, EFFECT_TIMEOUT, 0.05, "meshed replies as expected")
    except Timeout as timeout:
        raise AssertionError(f"{timeout}; the last replies' client certificates: {seen}") from None
    return seen[0]


STRICT = policy("default", {"mtls": {"mode": "STRICT"}})


def test_permissive_admits_a_plaintext_pod_and_a_meshed_one(mesh: ReviewsMesh) -> None:
    apply(mesh)
    assert plain_text_admitted(mesh, PORT)
    assert SPIFFE_CLIENT in meshed_reply_until(mesh, lambda cert: SPIFFE_CLIENT in cert)


def test_strict_refuses_the_plaintext_pod_within_a_second_and_admits_the_meshed_one(
    mesh: ReviewsMesh, capsys: pytest.CaptureFixture[str]
) -> None:
    apply(mesh)
    with Probe(mesh, PORT) as probe:
        probe.first(0, admitted=True)
        written = apply(mesh, STRICT)
        refused = probe.first(written, admitted=False)
        opened = apply(mesh)
        admitted = probe.first(opened, admitted=True)
    with capsys.disabled():
        print(
            f"\nPeerAuthentication edit → traffic: STRICT refuses plain text {refused - written:.3f} s "
            f"after the write, PERMISSIVE admits it again {admitted - opened:.3f} s after"
        )
    assert refused - written < 1.0 and admitted - opened < 1.0
    apply(mesh, STRICT)
    with Probe(mesh, PORT) as probe:
        probe.first(time.time(), admitted=False)
    assert SPIFFE_CLIENT in meshed_reply_until(mesh, lambda cert: SPIFFE_CLIENT in cert)


def test_port_level_disable_opens_one_port_of_a_strict_workload(mesh: ReviewsMesh) -> None:
    selector = {"matchLabels": {"app": "reviews"}}
    # STRICT workload-wide: the port no service declares goes through the passthrough chains, STRICT too.
    apply(mesh, policy("reviews", {"selector": selector, "mtls": {"mode": "STRICT"}}))
    with Probe(mesh, EXTRA_PORT) as probe:
        probe.first(time.time(), admitted=False)
    written = apply(
        mesh,
        policy(
            "reviews",
            {
                "selector": selector,
                "mtls": {"mode": "STRICT"},
                "portLevelMtls": {str(EXTRA_PORT): {"mode": "DISABLE"}, str(PORT): {"mode": "DISABLE"}},
            },
        ),
    )
    with Probe(mesh, EXTRA_PORT) as probe:
        probe.first(written, admitted=True)
    with Probe(mesh, PORT) as probe:
        probe.first(written, admitted=True)
    # The meshed client follows: the reviews endpoints lose their tlsMode on 9080, so it sends plain
    # text (no client certificate reaches the app) and is still admitted. productpage-v2 (routed to
    # reviews-v2 only) has sent nothing before, so no pooled mTLS connection of an earlier policy
    # serves it: Envoy keeps an established upstream connection, as it keeps a downstream one
    # until the old filter chain has drained.
    assert meshed_reply_until(mesh, lambda cert: cert == "", client="productpage-v2") == ""
    apply(mesh)


def test_a_policy_that_fails_validation_keeps_the_last_good_one_in_force(mesh: ReviewsMesh) -> None:
    apply(mesh, STRICT)
    with Probe(mesh, PORT) as probe:
        probe.first(time.time(), admitted=False)
        # portLevelMtls without a selector is an error (Istio's ValidatePeerAuthentication): the
        # store keeps STRICT, the DISABLE never reaches a proxy.
        bad = policy(
            "default", {"mtls": {"mode": "DISABLE"}, "portLevelMtls": {str(PORT): {"mode": "DISABLE"}}}
        )
        apply(mesh, bad)
        wait_until(
            lambda: any(
                "portLevelMtls" in error["path"] and POLICY_FILE in error["origin"]
                for error in mesh.pilot_debug("/debug/configz")["errors"]
            ),
            EFFECT_TIMEOUT,
            0.05,
            "pilot reports the invalid PeerAuthentication",
        )
        reported = time.time()
        kept = [o for o in mesh.pilot_debug("/debug/configz")["objects"] if o["kind"] == "PeerAuthentication"]
        assert [o["spec"] for o in kept] == [{"mtls": {"mode": "STRICT"}}]
        # Attempts for another 300 ms after pilot took the bad file: every one refused.
        deadline = reported + 0.3
        probe.process.log.wait_for(lambda line: json.loads(line)["t"] > deadline, EFFECT_TIMEOUT)
        after = [json.loads(line) for line in probe.process.log.lines if json.loads(line)["t"] >= reported]
        assert after and all(attempt["status"] == 0 for attempt in after), after
    apply(mesh)
