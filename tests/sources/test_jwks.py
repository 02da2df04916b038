"""The JWKS fetcher and resolver against a real aiohttp identity provider on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import aiohttp
import pytest
from google.protobuf import json_format

from pilot import metrics
from pilot._gen import security_pb2
from pilot.config.jwks import JWKS_ORIGIN, JwksKey, resolved_keys
from pilot.config.objects import ConfigEvent, ConfigKey, ConfigObject, ParseResult
from pilot.config.store import ConfigStore
from pilot.errors import JwksFetchError
from pilot.sources.jwks import JwksResolver, JwksSettings
from pilot.sources.jwks_fetch import blocked_address, canonical_jwks, fetch_jwks, new_session
from tests.support.jwt_issuer import Issuer, IssuerServer

POLICY = ConfigKey("RequestAuthentication", "foo", "jwt")


@pytest.fixture
async def server() -> AsyncIterator[IssuerServer]:
    async with IssuerServer(Issuer("https://issuer.test")) as started:
        yield started


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with new_session() as opened:
        yield opened


def keys_of(jwks: str) -> list[str]:
    return [key["kid"] for key in json.loads(jwks)["keys"]]


async def test_fetches_a_jwks_uri_canonical(server: IssuerServer, session: aiohttp.ClientSession) -> None:
    jwks = await fetch_jwks(session, JwksKey(server.jwks_uri, "https://issuer.test"), timeout=5)
    assert keys_of(jwks) == ["key-1"]
    assert jwks == canonical_jwks(server.issuer.jwks().encode(), "x")


async def test_without_a_uri_discovers_it_from_the_issuer(
    server: IssuerServer, session: aiohttp.ClientSession
) -> None:
    jwks = await fetch_jwks(session, JwksKey("", server.url + "/"), timeout=5)
    assert keys_of(jwks) == ["key-1"] and server.requests == 1


async def test_a_server_that_does_not_answer_times_out(
    server: IssuerServer, session: aiohttp.ClientSession
) -> None:
    server.hang = True
    with pytest.raises(JwksFetchError, match=r"no answer within 0.2s"):
        await fetch_jwks(session, JwksKey(server.jwks_uri, "i"), timeout=0.2)


@pytest.mark.parametrize(
    ("status", "body", "max_bytes", "reason"),
    [
        (503, None, 1000, r"status 503, message 'identity provider down'"),
        (200, b"<html>login</html>", 1000, "not a JWKS: not valid JSON"),
        (200, b'{"issuer": "x"}', 1000, 'not a JWKS: missing "keys" field'),
        (200, b'{"keys": {}}', 1000, '"keys" is not an array'),
        (200, b'{"keys": []}' + b" " * 100, 50, "larger than 50 bytes"),
    ],
)
async def test_what_is_not_a_good_jwks_is_an_error_saying_why(
    server: IssuerServer,
    session: aiohttp.ClientSession,
    status: int,
    body: bytes | None,
    max_bytes: int,
    reason: str,
) -> None:
    server.status, server.body = status, body
    failed = metrics.jwks_fetch_fail._value.get()
    with pytest.raises(JwksFetchError, match=reason):
        await fetch_jwks(session, JwksKey(server.jwks_uri, "i"), timeout=5, max_bytes=max_bytes)
    if status != 200 or max_bytes < 100:
        assert metrics.jwks_fetch_fail._value.get() == failed + 1


async def test_unreachable_host_is_an_error(session: aiohttp.ClientSession) -> None:
    async with IssuerServer(Issuer("i")) as gone:
        uri = gone.jwks_uri
    with pytest.raises(JwksFetchError, match="ClientConnectorError"):
        await fetch_jwks(session, JwksKey(uri, "i"), timeout=5)


@pytest.mark.parametrize(
    "uri",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://[fe80::1]:80/jwks.json",
        "http://100.100.100.200/jwks.json",
        "http://[::ffff:169.254.169.254]/jwks.json",
    ],
)
async def test_metadata_and_link_local_addresses_are_refused(
    uri: str, session: aiohttp.ClientSession
) -> None:
    with pytest.raises(JwksFetchError, match="connection blocked"):
        await fetch_jwks(session, JwksKey(uri, "i"), timeout=5)


def test_loopback_and_private_addresses_are_allowed_as_in_istiod() -> None:
    assert blocked_address("127.0.0.1") is None and blocked_address("10.0.0.7") is None
    assert blocked_address("224.0.0.251") is not None and blocked_address("fd00:ec2::254") is not None


# --- the resolver ----------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def policy(*rules: dict[str, object]) -> ConfigObject[security_pb2.RequestAuthentication]:
    spec = json_format.ParseDict({"jwtRules": list(rules)}, security_pb2.RequestAuthentication())
    return ConfigObject(POLICY, "security.istio.io/v1", spec, "policies.yaml")


def served(store: ConfigStore) -> dict[JwksKey, str]:
    return dict(resolved_keys(store.snapshot().objects.values()))


def jwks_warnings(store: ConfigStore) -> list[str]:
    return [f"{e.key} {e.path}: {e.message}" for e in store.errors() if e.origin == JWKS_ORIGIN]


SETTINGS = JwksSettings(refresh_interval=1200, retry_interval=60, max_retry_interval=3600)


async def test_failure_keeps_the_last_good_keys_and_recovery_replaces_them(server: IssuerServer) -> None:
    store, clock = ConfigStore(), Clock()
    events: list[ConfigEvent] = []
    store.subscribe(events.append)
    resolver = JwksResolver(store, SETTINGS, clock)
    rule = {"issuer": "iss", "jwksUri": server.jwks_uri}
    store.apply(ParseResult("policies.yaml", objects=(policy(rule),)))
    key = JwksKey(server.jwks_uri, "iss")

    await resolver.refresh()
    assert keys_of(served(store)[key]) == ["key-1"] and jwks_warnings(store) == []
    assert resolver.next_due() == clock.now + 1200

    # Not due: nothing is fetched, nothing changes.
    await resolver.refresh()
    assert server.requests == 1

    # Due, and the identity provider is down: the keys stay, the policy's field gets a warning.
    clock.now += 1200
    server.status = 500
    before = len(events)
    await resolver.refresh()
    assert keys_of(served(store)[key]) == ["key-1"] and len(events) == before
    (warning,) = jwks_warnings(store)
    where = f"{POLICY} spec.jwtRules[0].jwksUri"
    assert warning.startswith(f"{where}: cannot fetch the JWKS of {server.jwks_uri}")
    assert "status 500" in warning and "the last good keys stay in use" in warning
    assert resolver.next_due() == clock.now + 60  # retried after a minute, then doubling
    clock.now += 60
    await resolver.refresh()
    assert resolver.next_due() == clock.now + 120

    # Back, with a rotated key: served, and a store change (a push) follows; the warning is gone.
    server.status = 200
    server.issuer.rotate("key-2")
    clock.now += 120
    await resolver.refresh()
    assert keys_of(served(store)[key]) == ["key-2"] and jwks_warnings(store) == []
    assert events[-1].changed == {key.config_key}
    assert resolver.next_due() == clock.now + 1200

    # The same keys again: no store change, so no push.
    clock.now += 1200
    before = len(events)
    await resolver.refresh()
    assert len(events) == before


async def test_keys_never_fetched_are_not_served_and_say_fail_closed() -> None:
    store = ConfigStore()
    resolver = JwksResolver(store, SETTINGS, Clock())
    async with IssuerServer(Issuer("i")) as gone:
        uri = gone.jwks_uri
    store.apply(ParseResult("policies.yaml", objects=(policy({"issuer": "iss", "jwksUri": uri}),)))
    await resolver.refresh()
    assert served(store) == {}
    (warning,) = jwks_warnings(store)
    assert "every token of this rule is rejected" in warning
    assert metrics.jwks_unresolved._value.get() == 1


async def test_inline_keys_are_not_fetched_and_removed_rules_drop_their_keys(server: IssuerServer) -> None:
    store = ConfigStore()
    resolver = JwksResolver(store, SETTINGS, Clock())
    store.apply(ParseResult("policies.yaml", objects=(policy({"issuer": "a", "jwks": '{"keys":[]}'}),)))
    await resolver.refresh()
    assert server.requests == 0 and served(store) == {}
    store.apply(ParseResult("policies.yaml", objects=(policy({"issuer": "a", "jwksUri": server.jwks_uri}),)))
    await resolver.refresh()
    assert list(served(store)) == [JwksKey(server.jwks_uri, "a")]
    store.remove_origin("policies.yaml")
    await resolver.refresh()
    assert served(store) == {}


async def test_run_fetches_as_soon_as_a_policy_names_new_keys(server: IssuerServer) -> None:
    store = ConfigStore()
    resolver = JwksResolver(store, SETTINGS)
    task = asyncio.create_task(resolver.run())
    try:
        await asyncio.sleep(0)
        store.apply(ParseResult("p.yaml", objects=(policy({"issuer": "a", "jwksUri": server.jwks_uri}),)))
        async with asyncio.timeout(10):
            while not served(store):
                await asyncio.sleep(0.01)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert keys_of(served(store)[JwksKey(server.jwks_uri, "a")]) == ["key-1"]
