"""JwksResolver: fetches the key sets RequestAuthentications name and writes them into the store.

istiod's JwksResolver (pilot/pkg/model/jwks_resolver.go, PILOT_JWT_ENABLE_REMOTE_JWKS=false): the
control plane fetches each ``jwksUri`` (or discovers it from the issuer) and inlines the keys into
the proxies' ``jwt_authn`` config, so proxies never reach out to the identity provider. Here the
fetching is a source: it reads the RequestAuthentications of the store, fetches what they need
(pilot.sources.jwks_fetch) and applies the good key sets as ``Jwks`` objects of origin
``JWKS_ORIGIN`` (pilot.config.jwks). Translation then reads keys from the frozen push context, never
the network, and new keys are a store change, which pushes.

Schedule, per key set, as istiod's: fetched as soon as a rule names it, then every
``refresh_interval`` (PILOT_JWT_PUB_KEY_REFRESH_INTERVAL, 20 min); after a failure, again after
``retry_interval`` (1 min), doubling per consecutive failure up to ``max_retry_interval`` (1 h,
JwtPubKeyRefreshIntervalOnFailureResetThreshold). A key set no rule names any more is dropped.

A failed fetch keeps the last good keys (served unchanged) and is reported: a log line, the
``pilot_jwks_resolver_network_fetch_fail`` counter, and a warning on each RequestAuthentication that
names the key set, at its rule's field, in the store's errors (``/debug/configz``). A key set that
never fetched has no object: translation inlines istiod's public-only JWKS, so every token of that
rule is rejected (fail closed) and ``pilot_jwks_unresolved`` counts it.

Not thread-safe: it runs on the event loop that owns the store. Time is ``clock`` (monotonic seconds).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import aiohttp

from pilot import metrics
from pilot.config import kinds
from pilot.config.jwks import (
    JWKS_ORIGIN,
    JwksKey,
    RequestAuthenticationObject,
    key_of,
    resolved_object,
    wanted_keys,
)
from pilot.config.objects import ConfigEvent, FieldError, ParseResult
from pilot.config.store import ConfigStore
from pilot.errors import JwksFetchError
from pilot.sources.jwks_fetch import DEFAULT_MAX_BYTES, fetch_jwks, new_session

log = logging.getLogger("pilot.sources.jwks")


@dataclass(frozen=True, slots=True)
class JwksSettings:
    refresh_interval: float = 20 * 60.0
    retry_interval: float = 60.0
    max_retry_interval: float = 60 * 60.0
    max_bytes: int = DEFAULT_MAX_BYTES


@dataclass(slots=True)
class _Entry:
    timeout: float
    jwks: str | None = None  # the last good key set
    error: str | None = None  # why the last fetch failed (None: it succeeded, or none ran yet)
    failures: int = 0  # consecutive
    due: float = 0.0  # when to fetch next (clock seconds)


class JwksResolver:
    """Keeps the store's ``Jwks`` objects in step with the store's RequestAuthentications."""

    def __init__(
        self,
        store: ConfigStore,
        settings: JwksSettings = JwksSettings(),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._settings = settings
        self._clock = clock
        self._entries: dict[JwksKey, _Entry] = {}
        self._wake = asyncio.Event()
        store.subscribe(self._on_change)

    def _on_change(self, event: ConfigEvent) -> None:
        if any(key.kind == kinds.REQUEST_AUTHENTICATION for key in event.changed):
            self._wake.set()

    def _policies(self) -> list[RequestAuthenticationObject]:
        found = self._store.snapshot().of_kind(kinds.REQUEST_AUTHENTICATION)
        return [obj for obj in found if kinds.REQUEST_AUTHENTICATION_INFO.holds(obj)]

    async def refresh(self, session: aiohttp.ClientSession | None = None) -> None:
        """One round: follow the rules, fetch every key set that is due, write the result."""
        policies = self._policies()
        wanted = wanted_keys(obj.spec for obj in policies)
        for key in self._entries.keys() - wanted.keys():
            del self._entries[key]
        for key, timeout in wanted.items():
            entry = self._entries.setdefault(key, _Entry(timeout))
            entry.timeout = timeout
        now = self._clock()
        due = [key for key, entry in self._entries.items() if entry.due <= now]
        if due:
            async with _session(session) as open_session:
                fetched = await asyncio.gather(*(self._fetch_one(open_session, key) for key in due))
            for key, result in zip(due, fetched, strict=True):
                self._record(key, result, now)
        self._publish(policies)

    async def _fetch_one(self, session: aiohttp.ClientSession, key: JwksKey) -> str | JwksFetchError:
        try:
            return await fetch_jwks(session, key, self._entries[key].timeout, self._settings.max_bytes)
        except JwksFetchError as err:
            return err

    def _record(self, key: JwksKey, result: str | JwksFetchError, now: float) -> None:
        entry = self._entries.get(key)
        if entry is None:  # no rule names it any more
            return
        settings = self._settings
        if isinstance(result, str):
            if entry.jwks != result:
                log.info("JWKS %s: %s keys", _where(key), "new" if entry.jwks is not None else "fetched")
            entry.jwks, entry.error, entry.failures = result, None, 0
            entry.due = now + settings.refresh_interval
            return
        entry.error = str(result)
        entry.failures += 1
        backoff = settings.retry_interval * 2 ** (entry.failures - 1)
        entry.due = now + min(backoff, settings.max_retry_interval)
        kept = (
            "keeping the last good keys" if entry.jwks is not None else "rejecting every token (fail closed)"
        )
        log.warning("JWKS %s: fetch failed: %s; %s", _where(key), entry.error, kept)

    def _publish(self, policies: list[RequestAuthenticationObject]) -> None:
        good = sorted((key, e.jwks) for key, e in self._entries.items() if e.jwks is not None)
        objects = tuple(resolved_object(key, jwks) for key, jwks in good)
        errors = tuple(self._problems(policies))
        metrics.jwks_unresolved.set(sum(1 for e in self._entries.values() if e.jwks is None))
        self._store.apply(ParseResult(JWKS_ORIGIN, objects=objects, errors=errors))

    def _problems(self, policies: list[RequestAuthenticationObject]) -> list[FieldError]:
        """A warning per rule whose key set failed its last fetch, on the policy and field."""
        out = []
        for obj in policies:
            for index, rule in enumerate(obj.spec.jwt_rules):
                key = key_of(rule)
                entry = self._entries.get(key) if key is not None else None
                if key is None or entry is None or entry.error is None:
                    continue
                field = "jwksUri" if rule.jwks_uri else "issuer"
                outcome = (
                    "the last good keys stay in use"
                    if entry.jwks is not None
                    else "no keys were ever fetched: every token of this rule is rejected"
                )
                message = f"cannot fetch the JWKS of {_where(key)}: {entry.error}; {outcome}"
                out.append(
                    FieldError(
                        JWKS_ORIGIN, message, obj.key, f"spec.jwtRules[{index}].{field}", severity="warning"
                    )
                )
        return out

    def next_due(self) -> float | None:
        return min((entry.due for entry in self._entries.values()), default=None)

    async def run(self) -> None:
        """Refresh now, then whenever a RequestAuthentication changes or a key set is due."""
        async with new_session() as session:
            while True:
                self._wake.clear()
                await self.refresh(session)
                due = self.next_due()
                delay = None if due is None else max(0.0, due - self._clock())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), delay)


def _where(key: JwksKey) -> str:
    return key.jwks_uri or f"issuer {key.issuer!r} (OpenID discovery)"


@contextlib.asynccontextmanager
async def _session(given: aiohttp.ClientSession | None) -> AsyncIterator[aiohttp.ClientSession]:
    if given is not None:
        yield given
        return
    async with new_session() as session:
        yield session
