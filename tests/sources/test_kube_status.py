"""Status write-back with ``--kube``: KubeSource watching the fake API server (the real ``kubernetes``
client), pilot.status computing the statuses, StatusWriter writing them to the status subresource.

The writer is driven round by round with an injected clock (no sleeping); the fake's behaviour each
test relies on: Gateway API discovery and watches, ``PUT .../status`` replacing only the status at
the resourceVersion named (409 otherwise, or when ``fail_status_writes`` injects one), a status write
bumping resourceVersion and not generation, and the MODIFIED event it produces.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from pilot.config.objects import ConfigKey
from pilot.config.store import ConfigStore
from pilot.push.holds import ObjectRejection
from pilot.sources.kube import KubeSource
from pilot.sources.kube_status import RoundResult, StatusOptions, StatusWriter
from pilot.status.desired import ObjectStatuses
from tests.sources.test_kube import FAST, client_for, eventually, running, source_for
from tests.support.kube_api import K8S_GATEWAY, FakeKubeApi, gateway_api, service, virtual_service

NOW = "2026-01-02T03:04:05Z"
LATER = "2026-01-02T04:00:00Z"
INTERVAL = 5.0
GATEWAY = ConfigKey(K8S_GATEWAY, "infra", "edge")
CLASS = ConfigKey("GatewayClass", "default", "istio")
ROUTE = ConfigKey("HTTPRoute", "apps", "reviews")
CROSS = ConfigKey("HTTPRoute", "apps", "ratings")


def gateway_class(name: str = "istio", controller: str = "istio.io/gateway-controller") -> dict[str, Any]:
    return gateway_api("GatewayClass", name, None, {"controllerName": controller})


def edge_gateway() -> dict[str, Any]:
    listener = {
        "name": "http",
        "port": 80,
        "protocol": "HTTP",
        "allowedRoutes": {"namespaces": {"from": "All"}},
    }
    return gateway_api("Gateway", "edge", "infra", {"gatewayClassName": "istio", "listeners": [listener]})


def http_route(name: str, backend_namespace: str | None = None, path: str = "/") -> dict[str, Any]:
    backend: dict[str, Any] = {"name": name, "port": 9080}
    if backend_namespace is not None:
        backend["namespace"] = backend_namespace
    rule = {"matches": [{"path": {"type": "PathPrefix", "value": path}}], "backendRefs": [backend]}
    spec = {"parentRefs": [{"name": "edge", "namespace": "infra"}], "rules": [rule]}
    return gateway_api("HTTPRoute", name, "apps", spec)


def reference_grant() -> dict[str, Any]:
    spec = {
        "from": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "namespace": "apps"}],
        "to": [{"group": "", "kind": "Service"}],
    }
    return gateway_api("ReferenceGrant", "apps-to-other", "other", spec)


@dataclass
class Clock:
    now: float = 1000.0
    wall: str = NOW

    def __call__(self) -> float:
        return self.now


@dataclass
class Harness:
    kube: FakeKubeApi
    store: ConfigStore
    source: KubeSource
    writer: StatusWriter
    clock: Clock
    statuses: ObjectStatuses = field(default_factory=ObjectStatuses)
    rejections: list[ObjectRejection] = field(default_factory=list)

    async def round(self) -> RoundResult:
        """One round of the writer, in a thread (its HTTP is blocking; the fake runs on this loop)."""
        desired = self.statuses.compute(self.store.snapshot(), self.store.errors(), self.rejections, [])
        seen = dict(self.source.seen_objects())  # taken on the loop, as StatusWriter.run does
        return await asyncio.to_thread(self.writer.write_round, desired, seen)

    def status(self, key: ConfigKey) -> dict[str, Any]:
        type_key = K8S_GATEWAY if key.kind == K8S_GATEWAY else key.kind
        namespace = "" if key.kind == "GatewayClass" else key.namespace
        obj = self.kube.get(type_key, namespace, key.name)
        assert obj is not None, key
        return dict(obj.get("status") or {})

    def generation(self, key: ConfigKey) -> int:
        namespace = "" if key.kind == "GatewayClass" else key.namespace
        obj = self.kube.get(key.kind, namespace, key.name)
        assert obj is not None
        return int(obj["metadata"]["generation"])

    async def seen(self, key: ConfigKey, resource_version: str) -> None:
        """Wait until the source's watch shows ``key`` at ``resource_version``."""
        await eventually(
            lambda: (
                (obj := self.source.seen_objects().get(key)) is not None
                and obj.resource_version == resource_version
            ),
            f"{key} seen at resourceVersion {resource_version}",
        )

    async def settled(self) -> None:
        """Wait until the watch shows every object the fake holds at its current resourceVersion."""
        for key, obj in list(self.source.seen_objects().items()):
            type_key = K8S_GATEWAY if key.kind == K8S_GATEWAY else key.kind
            stored = self.kube.get(type_key, obj.namespace, obj.name)
            if stored is not None:
                await self.seen(key, stored["metadata"]["resourceVersion"])


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    kube = FakeKubeApi(gateway_api=True)
    await kube.start()
    client = client_for(kube)
    try:
        for name, namespace in (("reviews", "apps"), ("ratings", "other")):
            kube.apply(service(name, namespace))
        kube.apply(gateway_class())
        kube.apply(gateway_class("other", "example.com/other-controller"))
        kube.apply(edge_gateway())
        kube.apply(http_route("reviews"))
        kube.apply(http_route("ratings", backend_namespace="other"))
        kube.apply(virtual_service("reviews", "apps", host="reviews"))
        store = ConfigStore()
        source = source_for(store, client)
        clock = Clock()
        options = StatusOptions(min_interval=INTERVAL, watch=FAST)
        writer = StatusWriter(client, source.seen_objects, options, clock=clock, wall=lambda: clock.wall)
        async with running(source):
            yield Harness(kube, store, source, writer, clock)
    finally:
        client.close()
        await kube.stop()


def conditions(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in status.get("conditions", ())}


async def test_gateway_api_statuses_are_written_with_conditions_and_observed_generation(harness: Harness):
    result = await harness.round()
    assert {GATEWAY, CLASS, ROUTE, CROSS} <= set(result.written)
    assert not result.failed

    klass = conditions(harness.status(CLASS))
    assert klass["Accepted"]["status"] == "True"
    assert klass["Accepted"]["observedGeneration"] == 1
    assert klass["Accepted"]["lastTransitionTime"] == NOW
    # Another controller's class is not ours to write.
    other = harness.kube.get("GatewayClass", "", "other")
    assert other is not None and "status" not in other

    gateway = harness.status(GATEWAY)
    assert conditions(gateway)["Accepted"]["status"] == "True"
    assert conditions(gateway)["Programmed"]["status"] == "True"
    assert conditions(gateway)["Programmed"]["observedGeneration"] == harness.generation(GATEWAY)
    (listener,) = gateway["listeners"]
    assert listener["name"] == "http"
    assert listener["attachedRoutes"] == 2
    assert {c["type"]: c["status"] for c in listener["conditions"]} == {
        "Accepted": "True",
        "ResolvedRefs": "True",
        "Programmed": "True",
    }

    (parent,) = harness.status(ROUTE)["parents"]
    assert parent["controllerName"] == "istio.io/gateway-controller"
    assert parent["parentRef"] == {"name": "edge", "namespace": "infra"}
    route = conditions(parent)
    assert (route["Accepted"]["status"], route["Accepted"]["reason"]) == ("True", "Accepted")
    assert (route["ResolvedRefs"]["status"], route["ResolvedRefs"]["reason"]) == ("True", "ResolvedRefs")
    assert route["Accepted"]["observedGeneration"] == 1


async def test_a_backend_in_another_namespace_without_reference_grant_is_ref_not_permitted(harness: Harness):
    await harness.round()
    (parent,) = harness.status(CROSS)["parents"]
    found = conditions(parent)
    # The spec: the route is accepted, its reference is not (HTTPRoute's ResolvedRefs, RefNotPermitted).
    assert found["Accepted"]["status"] == "True"
    assert (found["ResolvedRefs"]["status"], found["ResolvedRefs"]["reason"]) == ("False", "RefNotPermitted")

    harness.kube.apply(reference_grant())
    await eventually(
        lambda: ConfigKey("ReferenceGrant", "other", "apps-to-other") in harness.store.snapshot().objects,
        "the ReferenceGrant in the store",
    )
    harness.clock.now += INTERVAL
    harness.clock.wall = LATER
    result = await harness.round()
    assert CROSS in result.written
    resolved = conditions(harness.status(CROSS)["parents"][0])["ResolvedRefs"]
    assert (resolved["status"], resolved["reason"], resolved["lastTransitionTime"]) == (
        "True",
        "ResolvedRefs",
        LATER,
    )


async def test_an_unchanged_status_is_not_written_again(harness: Harness):
    first = await harness.round()
    writes = len(harness.kube.status_writes)
    assert writes == len(first.written) > 0
    # At once (the watch has not brought the new statuses yet) and after the watch has: nothing.
    again = await harness.round()
    assert again.written == () and again.waiting == ()
    await harness.settled()
    harness.clock.now += 10 * INTERVAL
    harness.clock.wall = LATER  # time passing alone changes nothing
    third = await harness.round()
    assert third.written == () and third.waiting == ()
    assert len(harness.kube.status_writes) == writes
    # A status-only update of a watched object changed nothing served: no store revision.
    revision = harness.store.revision
    await asyncio.sleep(0)  # let queued watch batches apply
    assert harness.store.revision == revision


async def test_writes_are_rate_limited_per_object_and_coalesced(harness: Harness):
    await harness.round()
    await harness.settled()
    writes = len(harness.kube.status_writes)
    # Two spec edits within the interval: generation 2, then 3.
    for path in ("/v2", "/v3"):
        stored = harness.kube.apply(http_route("reviews", path=path))
        await harness.seen(ROUTE, stored["metadata"]["resourceVersion"])
        harness.clock.now += 1.0
        result = await harness.round()
        assert ROUTE in result.waiting and ROUTE not in result.written
    assert len(harness.kube.status_writes) == writes
    harness.clock.now += INTERVAL
    result = await harness.round()
    assert result.written == (ROUTE,)
    assert len(harness.kube.status_writes) == writes + 1  # one write for both edits
    parent = harness.status(ROUTE)["parents"][0]
    assert {c["observedGeneration"] for c in parent["conditions"]} == {3}


async def test_a_conflict_is_read_again_and_retried_after_a_backoff(harness: Harness):
    harness.kube.fail_status_writes(1, 409, "Conflict")
    first = await harness.round()
    (conflicted,) = first.conflicts  # the first write of the round (keys in order) met the conflict
    assert conflicted not in first.written
    assert conflicted in first.failed
    retry = await harness.round()  # the same instant: still backing off
    assert conflicted in retry.waiting
    harness.clock.now += FAST.backoff_max
    healed = await harness.round()
    assert healed.written == (conflicted,)
    assert harness.status(conflicted)


async def test_a_real_conflict_with_a_newer_object_is_retried_at_its_resource_version(harness: Harness):
    """The object changes between the watch's copy and the write: 409 from the resourceVersion check."""
    await harness.round()
    await harness.settled()
    stale = harness.source.seen_objects()[ROUTE]
    stored = harness.kube.apply(http_route("reviews", path="/new"))
    assert stored["metadata"]["resourceVersion"] != stale.resource_version
    # The writer still sees the stale copy: its write at that resourceVersion conflicts.
    seen = dict(harness.source.seen_objects())
    seen[ROUTE] = stale  # the watch has not delivered the edit yet
    harness.clock.now += INTERVAL
    await eventually(lambda: ROUTE in harness.store.snapshot().objects, "route stored")
    desired = harness.statuses.compute(harness.store.snapshot(), harness.store.errors(), [], [])
    desired[ROUTE] = {**desired[ROUTE], "parents": [{**desired[ROUTE]["parents"][0]}]}
    # Make the wanted status differ from the stored one, so the stale object is written.
    desired[ROUTE]["parents"][0]["conditions"] = [
        {**c, "message": "edited"} for c in desired[ROUTE]["parents"][0]["conditions"]
    ]
    result = await asyncio.to_thread(harness.writer.write_round, desired, seen)
    assert ROUTE in result.conflicts
    harness.clock.now += FAST.backoff_max
    result = await asyncio.to_thread(harness.writer.write_round, desired, seen)
    assert ROUTE in result.written  # at the resourceVersion read again after the conflict
    parent = harness.status(ROUTE)["parents"][0]
    assert {c["message"] for c in parent["conditions"]} == {"edited"}


async def test_istio_objects_get_reconciled_and_validation_messages(harness: Harness):
    await harness.round()
    key = ConfigKey("VirtualService", "apps", "reviews")
    status = harness.status(key)
    assert status["observedGeneration"] == 1
    reconciled = conditions(status)["Reconciled"]
    # No proxy uses it: 0/0, as Istio reports it.
    assert (reconciled["status"], reconciled["message"]) == ("True", "0/0 proxies up to date.")
    assert reconciled["lastTransitionTime"] == NOW

    # A VirtualService bound to a gateway that does not exist: IST0101, as istiod's analysis writes it.
    bad = virtual_service("bound", "apps", host="reviews")
    bad["spec"]["gateways"] = ["infra/missing"]
    harness.kube.apply(bad)
    bound = ConfigKey("VirtualService", "apps", "bound")
    await eventually(lambda: bound in harness.store.snapshot().objects, "the bound VirtualService stored")
    await harness.round()
    messages = harness.status(bound)["validationMessages"]
    assert {
        "type": {"name": "ReferencedResourceNotFound", "code": "IST0101"},
        "level": "ERROR",
        "documentationUrl": "https://istio.io/latest/docs/reference/config/analysis/ist0101/?ref=status-controller",
    } in messages


async def test_a_proxy_rejection_shows_on_the_object(harness: Harness):
    key = ConfigKey("VirtualService", "apps", "reviews")
    await harness.round()
    await harness.settled()
    harness.rejections.append(
        ObjectRejection(
            key=key,
            origin="kube:VirtualService/apps/reviews",
            view="view",
            proxy="sidecar~10.1.0.1~reviews-v1.apps~apps.svc.cluster.local",
            type_url="type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
            resource="9080",
            error="Invalid regex: pattern exceeds the maximum program size",
            at=0.0,
            rejected_revision=5,
            held_revision=None,
        )
    )
    harness.clock.now += INTERVAL
    harness.clock.wall = LATER
    result = await harness.round()
    assert key in result.written
    reconciled = conditions(harness.status(key))["Reconciled"]
    assert (reconciled["status"], reconciled["reason"]) == ("False", "ProxyRejected")
    assert "sidecar~10.1.0.1~reviews-v1.apps" in reconciled["message"]
    assert "RouteConfiguration 9080: Invalid regex" in reconciled["message"]
    assert reconciled["lastTransitionTime"] == LATER


async def test_a_refused_write_backs_off_and_the_other_objects_are_still_written(harness: Harness):
    harness.kube.fail_status_writes(1, 403, "Forbidden")  # e.g. the RBAC rule missing, then granted
    first = await harness.round()
    (refused,) = first.failed
    assert first.conflicts == () and refused not in first.written
    assert len(first.written) >= 4  # every other object of the round
    assert refused in (await harness.round()).waiting
    harness.clock.now += FAST.backoff_max
    assert (await harness.round()).written == (refused,)
