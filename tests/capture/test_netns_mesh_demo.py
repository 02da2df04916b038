"""``pilot demo --mesh`` as a user runs it: both versions answer the split client, the sourceLabels client
gets v2 only, and every namespace, /etc/netns folder and process it made is gone afterwards, also
after a Ctrl-C. Without root it says so and exits 1."""

from __future__ import annotations

import io
import os
import re
import signal
import time

import pytest

from pilot.demo.mesh import MeshDemo
from pilot.demo.options import DemoOptions
from pilot.localmesh import netns as product_netns
from tests.demo.test_demo import Demo, alive, demo_factory  # noqa: F401 -- demo_factory is a fixture
from tests.support import netns

SECTION = re.compile(r"^(productpage-v\d) \(labels")
SHARE = re.compile(r"^\s+(v\d)\s+(\d+)\s+\d+%")
DEMO_TIMEOUT = 60.0


def splits(text: str) -> dict[str, dict[str, int]]:
    """Replies per version, per client, as the demo printed them."""
    found: dict[str, dict[str, int]] = {}
    client = None
    for line in text.splitlines():
        if match := SECTION.match(line):
            client = match.group(1)
        elif (match := SHARE.match(line)) and client is not None:
            found.setdefault(client, {})[match.group(1)] = int(match.group(2))
    return found


def left_behind(demo: Demo) -> list[str]:
    """Namespaces, /etc/netns folders and processes of this demo run that still exist."""
    tag = f"{product_netns.DEMO_PREFIX}{demo.proc.pid}-"
    folders = list(product_netns.NETNS_ETC.glob(f"{tag}*")) if product_netns.NETNS_ETC.exists() else []
    return (
        [name for name in netns.namespaces() if name.startswith(tag)]
        + [str(folder) for folder in folders]
        + [f"pid {pid}" for pid in sorted(demo.children) if alive(pid)]
    )


@pytest.fixture
def needs_root_and_envoy() -> None:
    netns.proxy_envoy_or_skip()


def test_without_root_it_says_so_and_exits_1(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    out = io.StringIO()
    assert MeshDemo(DemoOptions(mesh=True), out).run() == 1
    text = out.getvalue()
    assert "network namespaces need root (pilot demo --mesh run as uid 1000)" in text
    assert "run it as root" in text


@pytest.mark.usefixtures("needs_root_and_envoy")
def test_the_mesh_demo_prints_both_versions_and_removes_what_it_made(demo_factory: type[Demo]):  # noqa: F811
    demo = demo_factory("--mesh", "--requests", "20")
    code = demo.finish(timeout=DEMO_TIMEOUT)
    text = demo.text()
    assert code == 0, text
    shares = splits(text)
    assert set(shares["productpage-v1"]) == {"v1", "v2"}, text
    assert shares["productpage-v1"]["v1"] > 0 and shares["productpage-v1"]["v2"] > 0, text
    assert sum(shares["productpage-v1"].values()) == 20, text
    assert shares["productpage-v2"] == {"v1": 0, "v2": 20}, text
    assert "filter chain 0.0.0.0_9080, cluster inbound|9080||" in text, text
    assert re.search(r"it saw the peer 127\.0\.0\.6:\d+", text), text
    assert demo.children, "the demo's processes were never seen"
    assert left_behind(demo) == []


@pytest.mark.usefixtures("needs_root_and_envoy")
def test_ctrl_c_removes_every_namespace_and_process(demo_factory: type[Demo]):  # noqa: F811
    """Interrupted once pilot, the apps and the sidecars run, before or while the requests go."""
    demo = demo_factory("--mesh", "--requests", "100000")
    deadline = time.monotonic() + DEMO_TIMEOUT
    while (line := demo.next_line(deadline)) is not None and not line.startswith("  sidecars:"):
        pass
    assert line is not None, demo.text()
    assert any(name.startswith(f"{product_netns.DEMO_PREFIX}{demo.proc.pid}-") for name in netns.namespaces())
    os.killpg(demo.proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the demo's whole process group
    assert demo.finish(timeout=DEMO_TIMEOUT) == 0, demo.text()
    assert "interrupted" in demo.text()
    assert len(demo.children) >= 5, demo.children  # pilot and the sidecars, at least, were seen
    assert left_behind(demo) == []
