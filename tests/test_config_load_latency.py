"""Finding 1 of issue 11, end to end: large config files dropped into a running pilot's folder are read,
parsed and validated off the event loop, so /ready and an edit of another file are not held up.

Before: a 16,000-host VirtualService made /ready fail for 34.7 s, a 100k-item ``kind: List`` blocked it
for 8.6 s, and an edit of another file waited for both.
"""

from __future__ import annotations

import asyncio
import http.client
import threading
import time
from pathlib import Path

from pilot.app import parse_limits, serve
from pilot.config.limits import DEFAULT_LIMITS
from pilot.config.objects import ConfigKey
from pilot.settings import Settings

SE = """\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: se, namespace: default}}
spec:
  hosts: [{host}]
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  resolution: DNS
"""
SE_KEY = ConfigKey("ServiceEntry", "default", "se")
BIG_KEY = ConfigKey("VirtualService", "default", "big")


def big_virtual_service(hosts: int) -> str:
    listed = "".join(f"  - h{i}.example.com\n" for i in range(hosts))
    return (
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\n"
        "metadata: {name: big, namespace: default}\n"
        f"spec:\n  hosts:\n{listed}  http:\n  - route:\n    - destination: {{host: reviews}}\n"
    )


def probe(port: int, stop: threading.Event, latencies: list[float]) -> None:
    """GET /ready in a loop from another thread: a blocked loop shows as a slow answer."""
    while not stop.is_set():
        started = time.perf_counter()
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        connection.request("GET", "/ready")
        connection.getresponse().read()
        connection.close()
        latencies.append(time.perf_counter() - started)
        time.sleep(0.01)


def test_settings_and_parse_limits_have_the_same_defaults() -> None:
    assert parse_limits(Settings()) == DEFAULT_LIMITS


async def test_large_files_do_not_hold_up_ready_or_other_edits(tmp_path: Path) -> None:
    (tmp_path / "se.yaml").write_text(SE.format(host="h0.example.com"))
    settings = Settings(
        config_dir=tmp_path,
        xds_host="127.0.0.1",
        xds_port=0,
        http_host="127.0.0.1",
        http_port=0,
        max_hosts_per_object=20_000,
    )
    async with serve(settings) as pilot:
        stop, latencies = threading.Event(), []
        prober = threading.Thread(target=probe, args=(pilot.http_port, stop, latencies))
        prober.start()
        try:
            items = "- {a: 1}\n" * 100_000
            (tmp_path / "list.yaml").write_text("apiVersion: v1\nkind: List\nitems:\n" + items)
            (tmp_path / "big.yaml").write_text(big_virtual_service(16_000))
            await asyncio.sleep(0.2)
            edits = []
            for index in range(3):  # edits of another file while the large ones are being read
                started = time.perf_counter()
                (tmp_path / "se.yaml").write_text(SE.format(host=f"e{index}.example.com"))
                while list(pilot.store.get(SE_KEY).spec.hosts) != [f"e{index}.example.com"]:  # type: ignore
                    await asyncio.sleep(0.005)
                edits.append(time.perf_counter() - started)
            deadline = time.monotonic() + 60
            while BIG_KEY not in pilot.store.snapshot().objects or not pilot.store.errors():
                assert time.monotonic() < deadline, "the large files were never loaded"
                await asyncio.sleep(0.05)
        finally:
            stop.set()
            # Joined off the loop: a probe still waiting for /ready needs the loop to answer it.
            await asyncio.to_thread(prober.join)
        assert "holds more than 10000 objects" in pilot.store.errors()[0].message
        assert pilot.store.errors()[0].origin == "list.yaml"
    # Measured here: /ready at most ~20-60 ms, edits ~40-90 ms; the bounds leave room for a busy CI box.
    assert max(latencies) < 0.5, f"/ready took up to {max(latencies):.3f} s"
    assert max(edits) < 1.0, f"an edit of another file took up to {max(edits):.3f} s"
