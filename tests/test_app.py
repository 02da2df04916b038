"""The whole process in-process: app.serve() on free ports, a real grpc.aio ADS client, real HTTP."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest

from pilot.app import serve
from pilot.errors import ConfigError
from pilot.settings import Settings
from pilot.xds import types
from tests.factories import service_entry_yaml
from tests.server.ads_client import AdsClient

DEADLINE = 15.0
NODE = "sidecar~127.0.0.1~app-1.default~default.svc.cluster.local"


def service_entry(name: str, port: int = 80) -> str:
    return service_entry_yaml(name, f"{name}.example.com", port=port, endpoint="127.0.0.1")


def settings(config_dir: Path | None, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "config_dir": config_dir,
        "xds_host": "127.0.0.1",
        "xds_port": 0,
        "http_host": "127.0.0.1",
        "http_port": 0,
        "debounce_after": 0.01,
        "debounce_max": 1.0,
        "shutdown_grace": 1.0,
    }
    values.update(overrides)
    return Settings(**values)


async def http_get(port: int, path: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{port}{path}") as response:
            if response.content_type == "application/json":
                return response.status, await response.json()
            return response.status, await response.text()


async def eventually(check: Callable[[], Any], what: str, timeout: float = DEADLINE) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for: {what}")
        await asyncio.sleep(0.02)


def port_is_closed(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


async def test_serves_config_pushes_changes_and_stops(tmp_path: Path):
    (tmp_path / "a.yaml").write_text(service_entry("alpha"))
    async with serve(settings(tmp_path)) as pilot:
        assert pilot.xds_port > 0 and pilot.http_port > 0
        assert pilot.ready
        assert (await http_get(pilot.http_port, "/ready"))[0] == 200

        async with grpc.aio.insecure_channel(f"127.0.0.1:{pilot.xds_port}") as channel:
            client = AdsClient(channel, NODE)
            await client.request(types.CLUSTER)
            response = await client.recv()
            assert response.type_url == types.CLUSTER
            first_version = response.version_info
            await client.ack(response)

            # syncz and config_dump see the proxy.
            async def synced() -> bool:
                _, rows = await http_get(pilot.http_port, "/debug/syncz")
                return any(row["proxy"] == NODE and row["cds"]["status"] == "SYNCED" for row in rows)

            await eventually(synced, "CDS acked in syncz")
            status, dump = await http_get(pilot.http_port, f"/debug/config_dump?proxyID={NODE}")
            assert status == 200
            clusters = dump["configs"][0]["dynamic_active_clusters"]
            assert any("alpha.example.com" in c["cluster"]["name"] for c in clusters)

            # A new file is pushed to the connected proxy.
            (tmp_path / "b.yaml").write_text(service_entry("beta"))
            while True:
                response = await client.recv()
                if response.type_url == types.CLUSTER and response.version_info != first_version:
                    break
                await client.ack(response)
            assert pilot.pusher.push_count >= 2
            client.close()

        _, configz = await http_get(pilot.http_port, "/debug/configz")
        assert sorted(o["name"] for o in configz["objects"]) == ["alpha", "beta"]
        _, push_status = await http_get(pilot.http_port, "/debug/push_status")
        assert push_status["push_count"] == pilot.pusher.push_count
        _, metrics_text = await http_get(pilot.http_port, "/metrics")
        assert 'pilot_config_objects{kind="ServiceEntry"} 2.0' in metrics_text
        ports = (pilot.xds_port, pilot.http_port)
    assert all(port_is_closed(port) for port in ports)


async def test_without_a_config_dir_it_serves_empty_config():
    async with serve(settings(None)) as pilot:
        assert pilot.sources == []
        assert (await http_get(pilot.http_port, "/ready"))[0] == 200


async def test_a_port_in_use_is_a_config_error(tmp_path: Path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match="HTTP"):
            async with serve(settings(tmp_path, http_port=port)):
                pass
        with pytest.raises(ConfigError, match="xDS"):
            async with serve(settings(tmp_path, xds_port=port)):
                pass


async def test_a_missing_config_dir_fails_start(tmp_path: Path):
    with pytest.raises(ConfigError, match="not a directory"):
        async with serve(settings(tmp_path / "nope")):
            pass
