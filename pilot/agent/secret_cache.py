"""The workload secret the agent serves, and its rotation (Istio's security/pkg/nodeagent/cache).

Istio's ``SecretManagerClient.rotateTime``: renew when ``SECRET_GRACE_PERIOD_RATIO`` (0.5) of the
lifetime is left, the lifetime counted from when the agent received the certificate, with a jitter
of ``SECRET_GRACE_PERIOD_RATIO_JITTER`` (1 %) of the grace period either way so that a fleet
started together does not renew together. A renewal that fails is retried with a doubling backoff
(1 s to 30 s) while the current certificate is still valid; SDS streams see each new secret as soon
as it is stored, and Envoy swaps it in without a restart.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import random
from collections.abc import Awaitable, Callable

from pilot.agent.workload_key import WorkloadSecret
from pilot.ca.authority import now
from pilot.errors import PilotError

log = logging.getLogger("pilot.agent")

RETRY_FIRST = 1.0
RETRY_MAX = 30.0


def renewal_delay(
    secret: WorkloadSecret,
    ratio: float,
    jitter: float,
    at: datetime.datetime,
    rng: random.Random | None = None,
) -> float:
    """Seconds from ``at`` until ``secret`` should be renewed (0 when that time has passed)."""
    grace = secret.lifetime * ratio
    offset = grace * jitter * ((rng or random).random() * 2 - 1)
    due = secret.not_after - grace + offset
    return max(0.0, (due - at).total_seconds())


class SecretCache:
    """The current secret, a generation counter, and a wait for the next one."""

    def __init__(self, secret: WorkloadSecret) -> None:
        self._secret = secret
        self._generation = 0
        self._changed = asyncio.Condition()

    @property
    def secret(self) -> WorkloadSecret:
        return self._secret

    @property
    def generation(self) -> int:
        return self._generation

    async def store(self, secret: WorkloadSecret) -> None:
        async with self._changed:
            self._secret = secret
            self._generation += 1
            self._changed.notify_all()

    async def wait_newer(self, generation: int) -> int:
        """Return the generation once it is past ``generation``."""
        async with self._changed:
            await self._changed.wait_for(lambda: self._generation > generation)
            return self._generation


async def rotate_forever(
    cache: SecretCache,
    fetch: Callable[[], Awaitable[WorkloadSecret]],
    ratio: float,
    jitter: float,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """Renew ``cache``'s secret at its renewal time, for ever (cancel to stop)."""
    while True:
        await sleep(renewal_delay(cache.secret, ratio, jitter, now()))
        backoff = RETRY_FIRST
        while True:
            try:
                secret = await fetch()
                break
            except PilotError as err:
                left = (cache.secret.not_after - now()).total_seconds()
                log.warning(
                    "renewing the workload certificate failed (%s); retrying in %.0fs, "
                    "the current one expires in %.0fs",
                    err,
                    backoff,
                    left,
                )
                await sleep(backoff)
                backoff = min(backoff * 2, RETRY_MAX)
        await cache.store(secret)
        log.info("rotated the workload certificate: serial %x until %s", secret.serial, secret.not_after)
