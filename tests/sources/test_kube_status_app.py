"""``pilot serve --kube`` writing statuses, in-process: app.serve() against the fake API server, with an
Envoy-like ADS client that ACKs, then NACKs a route configuration (tests/test_rejected_objects.py's
RejectingEnvoy). Checked on the objects the fake stores: Istio's Reconciled condition counts the proxy
once it has ACKed the VirtualService's generation, and turns False with the proxy's error when the
proxy rejects what the VirtualService produced; the Gateway API objects get their conditions too.
The writer's rounds run every second (StatusOptions.interval): the test polls, with a deadline.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc

from pilot.settings import Settings
from tests.server.ads_client import AdsClient, SotwXds
from tests.sources.test_kube_status import edge_gateway, gateway_class, http_route
from tests.support.kube_api import K8S_GATEWAY, FakeKubeApi, service, write_kubeconfig
from tests.test_rejected_objects import NODE, RejectingEnvoy, virtual_service
from tests.test_scoped_push import destination_rule, service_entry

DEADLINE = 15.0


async def poll(check: Callable[[], object], what: str) -> None:
    end = time.monotonic() + DEADLINE
    while not check():
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {DEADLINE}s waiting for {what}")
        await asyncio.sleep(0.05)


def reconciled(kube: FakeKubeApi, namespace: str, name: str) -> dict[str, Any]:
    obj = kube.get("VirtualService", namespace, name) or {}
    found = [c for c in (obj.get("status") or {}).get("conditions", ()) if c["type"] == "Reconciled"]
    return found[0] if found else {}


async def test_serve_kube_writes_reconciled_and_a_rejection_on_the_object(tmp_path: Path) -> None:
    from pilot.app import serve

    async with FakeKubeApi(token="t", gateway_api=True) as kube:
        for obj in (service_entry("svc-a", "a", 7070, ["10.1.0.1"]), destination_rule("svc-a", "a")):
            kube.apply(obj)
        kube.apply(virtual_service("svc-a", (90, 10)))
        kube.apply(service("reviews", "apps"))
        for obj in (gateway_class(), edge_gateway(), http_route("reviews")):
            kube.apply(obj)
        settings = Settings(
            xds_host="127.0.0.1",
            xds_port=0,
            http_host="127.0.0.1",
            http_port=0,
            debounce_after=0.01,
            shutdown_grace=1.0,
            kube=True,
            kubeconfig=write_kubeconfig(tmp_path / "kubeconfig", kube.url, token="t"),
            status_write_interval=0.0,
        )
        async with serve(settings) as pilot:
            # No proxy yet: nobody uses the VirtualService.
            await poll(
                lambda: reconciled(kube, "a", "svc-a").get("message") == "0/0 proxies up to date.", "0/0"
            )
            gateway = kube.get(K8S_GATEWAY, "infra", "edge") or {}
            await poll(lambda: (kube.get(K8S_GATEWAY, "infra", "edge") or {}).get("status"), "gateway status")
            gateway = kube.get(K8S_GATEWAY, "infra", "edge") or {}
            assert gateway["status"]["listeners"][0]["attachedRoutes"] == 1

            async with grpc.aio.insecure_channel(f"127.0.0.1:{pilot.xds_port}") as channel:
                proxy = RejectingEnvoy(SotwXds(AdsClient(channel, NODE)))
                await proxy.start()
                await poll(
                    lambda: (
                        reconciled(kube, "a", "svc-a")
                        == {
                            **reconciled(kube, "a", "svc-a"),
                            "status": "True",
                            "message": "1/1 proxies up to date.",
                        }
                    ),
                    "1/1 proxies up to date",
                )
                assert reconciled(kube, "a", "svc-a")["observedGeneration"] == 1

                # The proxy rejects the VirtualService's next generation: the object says so.
                kube.apply(virtual_service("svc-a", (50, 50), marker=True))
                # The edit travels watch → store → push on its own time: take what comes until then.
                end = time.monotonic() + DEADLINE
                while not pilot.pusher.rejections():
                    assert time.monotonic() < end, "the rejection was not traced to svc-a"
                    await proxy.settle()
                    await asyncio.sleep(0.05)
                await poll(lambda: pilot.pusher.rejections(), "the rejection traced to svc-a")
                await poll(
                    lambda: reconciled(kube, "a", "svc-a").get("reason") == "ProxyRejected", "ProxyRejected"
                )
                condition = reconciled(kube, "a", "svc-a")
                assert condition["status"] == "False"
                assert condition["observedGeneration"] == 2
                assert NODE in condition["message"] and "x-this-proxy-rejects" in condition["message"]
                proxy.client.close()
