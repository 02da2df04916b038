"""Encoded responses shared by the streams that send the same thing (pilot.server.responses):
one nonce per shared response, nonces that only grow on a stream, a copy of its own for a stream
out of step, and ACK/NACK state that stays per stream."""

from __future__ import annotations

import gc

import pytest

from pilot.cache.snapshot import Resource, TypeResources
from pilot.server.responses import SharedResponses
from pilot.xds import types
from tests.server.ads_client import XdsClient
from tests.server.harness import AdsHarness
from tests.server.resources import VIEW, base_snapshot, route
from tests.server.test_ads import connect_cds_lds, recv_acked


def _typed(version: str) -> TypeResources:
    return TypeResources.build(types.ROUTE, [Resource("80", version, b"x")])


def _encoder(calls: list[str]):  # type: ignore[no-untyped-def]
    def encode(nonce: str) -> bytes:
        calls.append(nonce)
        return b"response " + nonce.encode()

    return encode


def test_a_response_is_shared_by_streams_whose_nonces_are_older_and_encoded_again_for_others() -> None:
    responses = SharedResponses()
    typed, calls = _typed("1"), []
    first = responses.respond(typed, "k", 0, _encoder(calls))
    assert responses.respond(typed, "k", 0, _encoder(calls)) is first  # in step: the same bytes
    assert calls == [first.nonce]
    # A stream that already sent a nonce at or above it gets one of its own, under a newer nonce,
    # which the next streams share.
    own = responses.respond(typed, "k", first.number, _encoder(calls))
    assert own.number > first.number and own.data == b"response " + own.nonce.encode()
    assert responses.respond(typed, "k", 0, _encoder(calls)) is own
    # Another key, or no owner (never shared), is encoded anew.
    assert responses.respond(typed, "other", 0, _encoder(calls)).number > own.number
    unshared = responses.respond(None, "k", 0, _encoder(calls))
    assert responses.respond(None, "k", 0, _encoder(calls)).number > unshared.number


def test_shared_responses_go_with_their_type_resources() -> None:
    responses = SharedResponses()
    typed = _typed("1")
    responses.respond(typed, "k", 0, _encoder([]))
    assert len(responses) == 1 and responses.encoded_bytes > 0
    del typed
    gc.collect()
    assert len(responses) == 0 and responses.encoded_bytes == 0


@pytest.fixture(params=["sotw", "delta"])
def protocol(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def _routes(harness: AdsHarness, protocol: str, node_id: str, names: list[str]) -> XdsClient:
    client, _, _ = await connect_cds_lds(harness, protocol, node_id)
    await client.subscribe(types.ROUTE, names)
    await recv_acked(client)
    return client


async def test_proxies_in_step_share_a_push_and_each_keeps_its_own_ack_and_nack(
    harness: AdsHarness, protocol: str
) -> None:
    one = await _routes(harness, protocol, "one", ["80", "81"])
    two = await _routes(harness, protocol, "two", ["80", "81"])
    narrow = await _routes(harness, protocol, "narrow", ["80"])  # out of step: another subscription
    for client in (one, two, narrow):
        await client.expect_silence()

    harness.cache.set_snapshot(VIEW, base_snapshot("v2", routes=[route("80", "b"), route("81", "a")]))
    got_one, got_two, got_narrow = await one.recv(), await two.recv(), await narrow.recv()
    assert got_one.names == got_two.names == ["80", "81"] and got_narrow.names == ["80"]
    assert got_one.nonce == got_two.nonce  # one encoded response, one nonce
    assert got_narrow.nonce != got_one.nonce  # its own copy

    # One proxy rejects the shared response, the other takes it: each stream records its own.
    await one.nack(got_one, "route 80: invalid", invalid=["80"])
    await two.ack(got_two)
    await narrow.ack(got_narrow)
    for client in (one, two, narrow):
        await client.expect_silence()
    status_one = harness.connection("one").types[types.ROUTE]
    status_two = harness.connection("two").types[types.ROUTE]
    assert status_one.last_nack is not None and status_one.last_nack.nonce == got_one.nonce
    assert status_one.nonce_acked != got_one.nonce
    assert status_two.last_nack is None and status_two.nonce_acked == got_two.nonce

    # The next push changes 81 only (80 stays at the version one rejected, which it is not sent
    # again): both get the same response again, under one newer nonce; each ACK is its stream's.
    harness.cache.set_snapshot(VIEW, base_snapshot("v3", routes=[route("80", "b"), route("81", "b")]))
    again_one, again_two = await one.recv(), await two.recv()
    assert again_one.names == again_two.names == ["81"]
    assert again_one.nonce == again_two.nonce and int(again_one.nonce) > int(got_one.nonce)
    await narrow.expect_silence()
    await one.ack(again_one)
    await one.expect_silence()
    status_one = harness.connection("one").types[types.ROUTE]
    assert status_one.last_nack is None and status_one.nonce_acked == again_one.nonce
    assert harness.connection("two").types[types.ROUTE].nonce_acked == got_two.nonce
