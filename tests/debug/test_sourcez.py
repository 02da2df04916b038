"""/debug/sourcez over real HTTP: a running FolderSource and a running KubeSource (real ``kubernetes``
client, fake API server), read through the debug layer's SourceState protocol."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from pilot.cache.cache import SnapshotCache
from pilot.config.store import ConfigStore
from pilot.debug import views
from pilot.debug.http import build_app
from pilot.server.connection import ConnectionStatus
from pilot.sources.files import FolderSource
from tests.sources.test_kube import client_for, eventually, running, source_for
from tests.support.kube_api import FakeKubeApi, virtual_service


class NoConnections:
    def connections(self) -> Sequence[ConnectionStatus]:
        return ()

    def find_view(self, node_id: str) -> None:
        return None


@contextlib.asynccontextmanager
async def debug_client(sources: Sequence[views.SourceState]) -> AsyncIterator[TestClient[Any, Any]]:
    app = build_app(
        store=ConfigStore(),
        cache=SnapshotCache(),
        server=NoConnections(),
        ready_check=lambda: True,
        sources=sources,
    )
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        yield client


async def sourcez(client: TestClient[Any, Any]) -> Any:
    response = await client.get("/debug/sourcez")
    assert response.status == 200
    return await response.json()


async def test_folder_and_kube_sources_with_their_watches(tmp_path: Path) -> None:
    store = ConfigStore()
    folder = FolderSource(tmp_path / "config", store)
    (tmp_path / "config").mkdir()
    async with FakeKubeApi() as kube:
        kube.apply(virtual_service("reviews"))
        api_client = client_for(kube)
        kube_source = source_for(store, api_client)
        folder_task = asyncio.create_task(folder.run())
        try:
            async with running(kube_source), debug_client([folder, kube_source]) as client:
                await asyncio.wait_for(folder.synced.wait(), 10.0)
                body = await sourcez(client)
                assert body["synced"] is True
                folder_row, kube_row = body["sources"]
                path = str(tmp_path / "config")
                assert folder_row == {"kind": "FolderSource", "synced": True, "path": path}
                assert kube_row["kind"] == "KubeSource" and kube_row["synced"] is True
                status = kube_row["status"]
                assert status["synced"] is True and status["discovery_error"] == ""
                vs_resource = "virtualservices.networking.istio.io/v1"
                assert status["istio_versions"]["VirtualService"] == vs_resource
                watches = {w["resource"]: w for w in status["watches"]}
                assert {"services/v1", "endpointslices.discovery.k8s.io/v1", vs_resource} <= watches.keys()
                vs = watches[vs_resource]
                assert vs["listed"] is True and vs["applied"] is True and vs["lists"] == 1
                assert vs["resource_version"] == str(kube.resource_version)

                # Cut every watch: each reconnects (no relist), and the count and the error show it.
                kube.drop_watches()

                def reconnected() -> bool:
                    row = next(w for w in kube_source.status()["watches"] if w["resource"] == vs_resource)
                    return bool(row["watches"] >= 2 and row["connected"])

                await eventually(reconnected, "the virtualservices watch to reconnect")
                body = await sourcez(client)
                vs = next(w for w in body["sources"][1]["status"]["watches"] if w["resource"] == vs_resource)
                assert vs["watches"] >= 2 and vs["errors"] >= 1 and vs["last_error"]
                assert vs["lists"] == 1
        finally:
            folder_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await folder_task
            api_client.close()


class Unsynced:
    """A source with nothing but ``synced``; and one whose report fails."""

    def __init__(self) -> None:
        self.synced = asyncio.Event()


class Broken(Unsynced):
    def status(self) -> dict[str, Any]:
        raise RuntimeError("boom")


async def test_minimal_and_failing_sources_and_no_sources() -> None:
    async with debug_client([Unsynced(), Broken()]) as client:
        body = await sourcez(client)
        assert body == {
            "synced": False,
            "sources": [
                {"kind": "Unsynced", "synced": False},
                {"kind": "Broken", "synced": False, "status_error": "RuntimeError: boom"},
            ],
        }
        index = await (await client.get("/debug")).json()
        assert "/debug/sourcez" in index["endpoints"]
    async with debug_client([]) as client:
        assert await sourcez(client) == {"synced": True, "sources": []}
