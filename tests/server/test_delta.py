"""Incremental xDS (DeltaAggregatedResources) rules that state of the world does not have, against a
real grpc.aio server and a raw delta client over 127.0.0.1.

https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol#incremental-xds

Absence of a response is checked with a barrier (DeltaClient.expect_silence), never by sleeping.
"""

from __future__ import annotations

from collections.abc import Iterable

from envoy.service.discovery.v3 import discovery_pb2

from pilot import metrics
from pilot.cache.snapshot import Snapshot
from pilot.xds import types
from tests.server.ads_client import DeltaClient, Update, delta_update, versions
from tests.server.harness import AdsHarness
from tests.server.resources import VIEW, base_snapshot, cluster, endpoints, listener, make_snapshot, route


def sample(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


def version_of(snapshot: Snapshot, type_url: str, name: str) -> str:
    return snapshot.resources(type_url)[name].version


async def recv(client: DeltaClient) -> Update:
    return delta_update(await client.recv())


async def recv_acked(client: DeltaClient) -> Update:
    response = await client.recv()
    await client.ack(response)
    return delta_update(response)


async def connect(harness: AdsHarness, eds: Iterable[str] = ()) -> DeltaClient:
    """A delta stream with wildcard CDS and LDS (and EDS ``eds``) received and ACKed."""
    client = harness.delta_client()
    await client.request(types.CLUSTER)
    await recv_acked(client)
    await client.request(types.LISTENER)
    await recv_acked(client)
    if eds:
        await client.request(types.ENDPOINT, eds)
        await recv_acked(client)
    await client.expect_silence()  # the ACKs are processed
    return client


def names(update: Update) -> tuple[list[str], list[str]]:
    """(names sent, names removed)"""
    return update.names, update.removed


# -- initial_resource_versions --------------------------------------------------------------------


async def test_reconnect_with_initial_versions_sends_only_what_differs(harness: AdsHarness) -> None:
    # https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol#incremental-xds
    snapshot = base_snapshot()
    client = harness.delta_client()
    await client.request(
        types.CLUSTER,
        initial_versions={"a": version_of(snapshot, types.CLUSTER, "a"), "b": "old", "gone": "x"},
    )
    cds = await recv_acked(client)
    # "a" is current: not sent. "b" is at another version: sent. "gone" no longer exists: removed.
    assert names(cds) == (["b"], ["gone"])
    assert cds.resources["b"] == version_of(snapshot, types.CLUSTER, "b")

    await client.request(
        types.ENDPOINT,
        ["a", "b", "z"],
        initial_versions={"a": version_of(snapshot, types.ENDPOINT, "a"), "z": "x"},
    )
    assert names(await recv_acked(client)) == (["b"], ["z"])
    await client.expect_silence()


async def test_reconnect_that_has_everything_gets_an_empty_answer(harness: AdsHarness) -> None:
    snapshot = base_snapshot()
    client = harness.delta_client()
    await client.request(types.CLUSTER, initial_versions=versions(snapshot, types.CLUSTER))
    cds = await recv_acked(client)
    # Answered (so the proxy's initial fetch completes), with nothing in it.
    assert names(cds) == ([], []) and cds.version == snapshot.type_version(types.CLUSTER)
    await client.request(types.ROUTE, ["80"], initial_versions=versions(snapshot, types.ROUTE))
    assert names(await recv_acked(client)) == ([], [])
    await client.expect_silence()
    assert harness.connection().types[types.ROUTE].names == ("80",)


async def test_initial_versions_outside_the_subscription_are_ignored(harness: AdsHarness) -> None:
    client = harness.delta_client()
    await client.request(types.ENDPOINT, ["a"], initial_versions={"b": "old", "c": "x"})
    assert names(await recv_acked(client)) == (["a"], [])
    await client.expect_silence()


async def test_initial_versions_only_count_on_the_first_request_of_a_type(harness: AdsHarness) -> None:
    client = await connect(harness, eds=["a"])
    await client.request(
        types.ENDPOINT, ["b"], initial_versions={"b": version_of(base_snapshot(), types.ENDPOINT, "b")}
    )
    assert names(await recv_acked(client)) == (["b"], [])


# -- subscribe, unsubscribe -----------------------------------------------------------------------


async def test_subscribe_and_unsubscribe_named_resources(harness: AdsHarness) -> None:
    client = await connect(harness, eds=["a"])
    await client.request(types.ENDPOINT, ["b"])
    assert names(await recv_acked(client)) == (["b"], [])  # only the new name

    await client.request(types.ENDPOINT, unsubscribe=["a"])
    await client.expect_silence()  # an unsubscription needs no answer
    assert harness.connection().types[types.ENDPOINT].names == ("b",)

    # a changes: no longer watched. b changes: only b is sent.
    harness.cache.set_snapshot(VIEW, base_snapshot("v2", loads=[endpoints("a", 9001), endpoints("b", 8002)]))
    await client.expect_silence()
    v3 = base_snapshot("v3", loads=[endpoints("a", 9001), endpoints("b", 9002)])
    harness.cache.set_snapshot(VIEW, v3)
    assert names(await recv_acked(client)) == (["b"], [])

    # Subscribing to a again gets it again (the proxy forgot it when it unsubscribed).
    await client.request(types.ENDPOINT, ["a"])
    update = await recv_acked(client)
    assert update.resources == {"a": version_of(v3, types.ENDPOINT, "a")}

    # Phantom unsubscriptions are ignored.
    await client.request(types.ENDPOINT, unsubscribe=["never-subscribed"])
    await client.expect_silence()


async def test_subscribing_to_a_held_resource_sends_it_again(harness: AdsHarness) -> None:
    # The proxy may have forgotten it while still subscribed: a subscribed name is always provided.
    # https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol#xds-protocol-delta-subscribe
    client = await connect(harness, eds=["a"])
    await client.request(types.ENDPOINT, ["a"])
    assert names(await recv_acked(client)) == (["a"], [])


async def test_absent_name_is_sent_when_it_appears_and_removed_when_it_goes(harness: AdsHarness) -> None:
    client = await connect(harness)
    await client.request(types.ROUTE, ["82"])
    # Answered with nothing: a name that never existed is not reported removed (Envoy's
    # initial_fetch_timeout covers it).
    assert names(await recv_acked(client)) == ([], [])
    routes = [route("80", "a"), route("81", "b"), route("82", "a")]
    harness.cache.set_snapshot(VIEW, base_snapshot("v2", routes=routes))
    assert names(await recv_acked(client)) == (["82"], [])
    harness.cache.set_snapshot(VIEW, base_snapshot("v3", routes=routes[:2]))
    assert names(await recv_acked(client)) == ([], ["82"])
    harness.cache.set_snapshot(VIEW, base_snapshot("v4", routes=routes[:1]))
    await client.expect_silence()  # 81 went too, but this proxy never had it


async def test_only_changed_resources_are_sent(harness: AdsHarness) -> None:
    many = [cluster(f"c{i}") for i in range(20)]
    harness.cache.set_snapshot(VIEW, make_snapshot("v1", clusters=many))
    client = harness.delta_client()
    await client.request(types.CLUSTER)
    assert len((await recv_acked(client)).names) == 20
    changed = make_snapshot("v2", clusters=[*many[:7], cluster("c7", 5000), *many[8:], cluster("new")])
    harness.cache.set_snapshot(VIEW, changed)
    update = await recv_acked(client)
    assert names(update) == (["c7", "new"], [])
    assert update.version == changed.type_version(types.CLUSTER)  # system_version_info
    harness.cache.set_snapshot(
        VIEW, make_snapshot("v3", clusters=[*many[:7], cluster("c7", 5000), *many[8:]])
    )
    assert names(await recv_acked(client)) == ([], ["new"])


# -- wildcard -------------------------------------------------------------------------------------


async def test_explicit_wildcard(harness: AdsHarness) -> None:
    client = harness.delta_client()
    await client.request(types.CLUSTER, ["*"])
    assert names(await recv_acked(client)) == (["a", "b"], [])
    status = harness.connection().types[types.CLUSTER]
    assert status.wildcard and status.names == ()


async def test_legacy_wildcard_stays_wildcard_when_names_are_added(harness: AdsHarness) -> None:
    # After an empty first request, subscribing to a name keeps the wildcard and adds the name.
    # https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol#how-the-client-specifies-what-resources-to-return
    client = await connect(harness)
    await client.request(types.CLUSTER, ["b"])
    assert names(await recv_acked(client)) == (["b"], [])
    status = harness.connection().types[types.CLUSTER]
    assert status.wildcard and status.names == ("b",)
    harness.cache.set_snapshot(VIEW, base_snapshot("v2", clusters=[cluster("a"), cluster("b"), cluster("c")]))
    assert names(await recv_acked(client)) == (["c"], [])  # still every cluster


async def test_named_types_have_no_legacy_wildcard(harness: AdsHarness) -> None:
    client = await connect(harness)
    await client.request(types.ENDPOINT)
    assert names(await recv_acked(client)) == ([], [])
    status = harness.connection().types[types.ENDPOINT]
    assert not status.wildcard and status.names == ()


async def test_wildcard_with_explicit_names_and_leaving_the_wildcard(harness: AdsHarness) -> None:
    client = harness.delta_client()
    await client.request(types.CLUSTER, ["*", "a", "extra"])
    assert names(await recv_acked(client)) == (["a", "b"], [])
    status = harness.connection().types[types.CLUSTER]
    assert status.wildcard and status.names == ("a", "extra")

    # An explicit name outside the wildcard set that appears later is sent.
    harness.cache.set_snapshot(
        VIEW, base_snapshot("v2", clusters=[cluster("a"), cluster("b"), cluster("extra")])
    )
    assert names(await recv_acked(client)) == (["extra"], [])

    # Unsubscribing a name the wildcard covers changes nothing: it stays covered and updated.
    await client.request(types.CLUSTER, unsubscribe=["a"])
    await client.expect_silence()
    harness.cache.set_snapshot(
        VIEW, base_snapshot("v3", clusters=[cluster("a", 9), cluster("b"), cluster("extra")])
    )
    assert names(await recv_acked(client)) == (["a"], [])

    # Unsubscribing "*" leaves wildcard mode; the explicit name stays. Clusters the proxy had only
    # through the wildcard are dropped by the proxy itself, so no removal is sent for them.
    await client.request(types.CLUSTER, unsubscribe=["*"])
    await client.expect_silence()
    status = harness.connection().types[types.CLUSTER]
    assert not status.wildcard and status.names == ("extra",)
    harness.cache.set_snapshot(
        VIEW, base_snapshot("v4", clusters=[cluster("a", 8), cluster("extra", 7), cluster("new")])
    )
    assert names(await recv_acked(client)) == (["extra"], [])  # not a, not new, no removal of b
    harness.cache.set_snapshot(VIEW, base_snapshot("v5", clusters=[cluster("a", 8), cluster("new")]))
    assert names(await recv_acked(client)) == ([], ["extra"])

    # Subscribing to "*" again brings every cluster back.
    await client.request(types.CLUSTER, ["*"])
    assert names(await recv_acked(client)) == (["a", "new"], [])


async def test_unsubscribing_everything_is_not_the_legacy_wildcard(harness: AdsHarness) -> None:
    client = harness.delta_client()
    await client.request(types.CLUSTER, ["a"])
    assert names(await recv_acked(client)) == (["a"], [])
    await client.request(types.CLUSTER, unsubscribe=["a"])
    await client.expect_silence()
    harness.cache.set_snapshot(VIEW, base_snapshot("v2", clusters=[cluster("a", 5), cluster("c")]))
    await client.expect_silence()  # subscribed to nothing now
    status = harness.connection().types[types.CLUSTER]
    assert not status.wildcard and status.names == ()


# -- ACK, NACK, nonces ----------------------------------------------------------------------------


async def test_nack_is_not_answered_and_rejected_versions_are_not_resent(harness: AdsHarness) -> None:
    client = await connect(harness, eds=["a", "b"])
    acked = harness.connection().types[types.ENDPOINT]
    rejects = sample("pilot_total_xds_rejects_total", type="eds")

    bad = base_snapshot("v2", loads=[endpoints("a", 1), endpoints("b", 8002)])
    harness.cache.set_snapshot(VIEW, bad)
    response = await client.recv()
    assert names(delta_update(response)) == (["a"], [])
    await client.nack(response, "endpoint a: bad port")
    await client.expect_silence()
    status = harness.connection().types[types.ENDPOINT]
    assert status.last_nack is not None and status.last_nack.message == "endpoint a: bad port"
    assert status.last_nack.nonce == response.nonce and status.last_nack.version == acked.version_acked
    assert (status.nonce_acked, status.version_acked) == (acked.nonce_acked, acked.version_acked)
    assert sample("pilot_total_xds_rejects_total", type="eds") == rejects + 1

    # Another change of the type: only it goes out, not the rejected version of a.
    harness.cache.set_snapshot(VIEW, base_snapshot("v3", loads=[endpoints("a", 1), endpoints("b", 9002)]))
    assert names(await recv_acked(client)) == (["b"], [])
    # The whole snapshot again: nothing. A newer version of a: sent; its ACK clears the NACK.
    harness.cache.set_snapshot(VIEW, base_snapshot("v4", loads=[endpoints("a", 1), endpoints("b", 9002)]))
    await client.expect_silence()
    harness.cache.set_snapshot(VIEW, base_snapshot("v5", loads=[endpoints("a", 7001), endpoints("b", 9002)]))
    fixed = await recv_acked(client)
    assert names(fixed) == (["a"], [])
    await client.expect_silence()
    assert harness.connection().types[types.ENDPOINT].last_nack is None

    # Once the proxy took another version of a, the version it once rejected is no longer barred.
    harness.cache.set_snapshot(VIEW, base_snapshot("v6", loads=[endpoints("a", 1), endpoints("b", 9002)]))
    assert names(await recv_acked(client)) == (["a"], [])


async def test_nack_with_a_subscription_answers_the_new_names_only(harness: AdsHarness) -> None:
    # Envoy sends subscription changes on its ACKs and NACKs; a NACK's changes still count.
    client = await connect(harness, eds=["a"])
    harness.cache.set_snapshot(VIEW, base_snapshot("v2", loads=[endpoints("a", 1), endpoints("b", 8002)]))
    response = await client.recv()
    await client.nack(response, "bad", subscribe=["b"])
    assert names(await recv_acked(client)) == (["b"], [])
    await client.expect_silence()


async def test_stale_nonce_is_counted_but_its_subscription_applies(harness: AdsHarness) -> None:
    client = await connect(harness)
    cds = harness.connection().types[types.CLUSTER]
    expired = sample("pilot_xds_expired_nonce_total", type="cds")
    harness.cache.set_snapshot(VIEW, base_snapshot("v2", clusters=[cluster("a"), cluster("c")]))
    first = await client.recv()
    harness.cache.set_snapshot(VIEW, base_snapshot("v3", clusters=[cluster("a"), cluster("d")]))
    second = await client.recv()
    assert (names(delta_update(first)), names(delta_update(second))) == ((["c"], ["b"]), (["d"], ["c"]))

    # The ACK of the first is stale (the second is on its way): counted, no status change, but a
    # subscription riding on it is applied and answered ("x" does not exist: nothing in it).
    await client.ack(first, subscribe=["x"])
    answer = await client.recv()
    assert names(delta_update(answer)) == ([], [])
    assert sample("pilot_xds_expired_nonce_total", type="cds") == expired + 1
    status = harness.connection().types[types.CLUSTER]
    assert status.nonce_acked == cds.nonce_acked and status.names == ("x",)

    await client.ack(second)  # stale too by now
    await client.ack(answer)
    await client.expect_silence()
    assert harness.connection().types[types.CLUSTER].nonce_acked == answer.nonce
    assert sample("pilot_xds_expired_nonce_total", type="cds") == expired + 2


async def test_unknown_nonce_is_stale(harness: AdsHarness) -> None:
    client = await connect(harness)
    expired = sample("pilot_xds_expired_nonce_total", type="lds")
    await client.request(types.LISTENER, nonce="from-another-server")
    await client.expect_silence()
    assert sample("pilot_xds_expired_nonce_total", type="lds") == expired + 1


# -- delta and state of the world agree -----------------------------------------------------------


async def test_delta_and_sotw_deliver_the_same_resources(harness: AdsHarness) -> None:
    # One proxy view, one SotW and one delta proxy with the same subscriptions, through a series of
    # updates: after each, both hold the same resources at the same versions.
    clients = [harness.xds_client("sotw", "sidecar-sotw"), harness.xds_client("delta", "sidecar-delta")]
    subscriptions = {
        types.CLUSTER: [],
        types.ENDPOINT: ["a", "b", "c"],
        types.LISTENER: [],
        types.ROUTE: ["80", "81"],
    }
    for client in clients:
        for type_url, wanted in subscriptions.items():
            await client.subscribe(type_url, wanted)
            await client.ack(await client.recv())

    steps = [
        base_snapshot("v2", clusters=[cluster("a", 2000), cluster("b"), cluster("c")]),
        base_snapshot(
            "v3", clusters=[cluster("a"), cluster("c")], loads=[endpoints("a", 1), endpoints("c", 3)]
        ),
        base_snapshot("v4", listeners=[listener("0.0.0.0_80", 80)], routes=[route("80", "b")]),
        make_snapshot("v5", clusters=[cluster("b")], loads=[endpoints("b", 2)], routes=[route("81", "b")]),
    ]
    for snapshot in steps:
        harness.cache.set_snapshot(VIEW, snapshot)
        held = []
        for client in clients:
            await client.ack(await client.recv())
            await client.drain()
            held.append({t: existing(client.held(t), snapshot, t) for t in subscriptions})
        sotw, delta = held
        assert sotw == delta
        assert delta == {t: expected(snapshot, t, wanted) for t, wanted in subscriptions.items()}


def existing(held: dict[str, str], snapshot: Snapshot, type_url: str) -> dict[str, str]:
    """What a proxy holds of resources that still exist. In SotW a named resource (EDS, RDS) that
    is gone is never removed explicitly (the parent stops naming it and Envoy drops it); in delta
    it is removed. Wildcard types must match exactly."""
    if type_url in types.WILDCARD_TYPES:
        return held
    present = snapshot.resources(type_url)
    return {n: v for n, v in held.items() if n in present}


def expected(snapshot: Snapshot, type_url: str, wanted: list[str]) -> dict[str, str]:
    """What a proxy subscribed to ``wanted`` (none: the wildcard) should hold of ``snapshot``."""
    present = versions(snapshot, type_url)
    return present if not wanted else {n: v for n, v in present.items() if n in wanted}


async def test_delta_response_bytes_are_a_valid_message(harness: AdsHarness) -> None:
    # The hand-encoded bytes arrive as a DeltaDiscoveryResponse the client parses field by field.
    client = harness.delta_client()
    await client.request(types.CLUSTER)
    response = await client.recv()
    assert isinstance(response, discovery_pb2.DeltaDiscoveryResponse)
    assert response.type_url == types.CLUSTER and response.nonce and response.system_version_info
    assert [(r.name, r.version, r.resource.type_url) for r in response.resources] == [
        (n, v, types.CLUSTER) for n, v in versions(base_snapshot(), types.CLUSTER).items()
    ]


# -- VHDS: virtual hosts by namespace, following RDS ------------------------------------------------


def vhds_snapshot(version: str, **vhosts: str) -> Snapshot:
    """Route configurations 80 and 81 and the virtual hosts ``{resource name: cluster}`` (the
    name's namespace is its route configuration), as pilot.translate.virtual_hosts makes them."""
    hosts = [(name, route("x", cluster_name).virtual_hosts[0]) for name, cluster_name in vhosts.items()]
    for name, vhost in hosts:
        vhost.name = name
    snapshot = base_snapshot(version, routes=[route("80", "a"), route("81", "a")])
    return Snapshot.from_messages(version, {types.VIRTUAL_HOST: hosts}, snapshot, keep=list(snapshot.by_type))


async def test_vhds_follows_the_rds_subscription(harness: AdsHarness) -> None:
    # Envoy's VHDS request names nothing: the namespaces are the route configurations the proxy
    # subscribes to over RDS (pilot.server.delta: _route_configurations).
    harness.cache.set_snapshot(VIEW, vhds_snapshot("v1", **{"80/h1": "a", "80/h2": "b", "81/h3": "a"}))
    client = await connect(harness)
    await client.request(types.ROUTE, ["80"])
    await recv_acked(client)
    await client.request(types.VIRTUAL_HOST)
    assert names(await recv_acked(client)) == (["80/h1", "80/h2"], [])

    # One virtual host changes, one goes: only those.
    harness.cache.set_snapshot(VIEW, vhds_snapshot("v2", **{"80/h1": "b", "81/h3": "a"}))
    assert names(await recv_acked(client)) == (["80/h1"], ["80/h2"])
    # A change in a route configuration the proxy does not subscribe to sends nothing.
    harness.cache.set_snapshot(VIEW, vhds_snapshot("v3", **{"80/h1": "b", "81/h3": "b"}))
    await client.expect_silence()

    # Subscribing to 81 over RDS brings its virtual hosts; unsubscribing 80 and subscribing it
    # again (Envoy drops a route configuration's virtual hosts with it) sends them again.
    await client.request(types.ROUTE, ["81"])
    assert names(await recv_acked(client)) == (["81"], [])
    assert names(await recv_acked(client)) == (["81/h3"], [])
    await client.request(types.ROUTE, unsubscribe=["80"])
    await client.expect_silence()
    await client.request(types.ROUTE, ["80"])
    assert names(await recv_acked(client)) == (["80"], [])
    assert names(await recv_acked(client)) == (["80/h1"], [])
    await client.expect_silence()  # the ACKs are read
    status = harness.connection().types[types.VIRTUAL_HOST]  # the one ledger, as /debug/syncz shows
    assert (status.nonce_acked, status.names) == (status.nonce_sent, ("80", "81"))


async def test_vhds_asked_before_rds_gets_its_virtual_hosts_when_rds_subscribes(harness: AdsHarness) -> None:
    # On a reconnect Envoy may send its VirtualHost request before its RDS one.
    harness.cache.set_snapshot(VIEW, vhds_snapshot("v1", **{"80/h1": "a", "81/h3": "a"}))
    client = await connect(harness)
    await client.request(types.VIRTUAL_HOST)
    assert names(await recv_acked(client)) == ([], [])  # no route configuration yet
    await client.request(types.ROUTE, ["80"])
    assert names(await recv_acked(client)) == (["80"], [])
    assert names(await recv_acked(client)) == (["80/h1"], [])
