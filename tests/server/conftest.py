"""Fixtures of the server tests: a running AdsHarness per test, stopped in teardown."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from pilot.server.limits import UNLIMITED, StreamLimits
from tests.server.harness import AdsHarness, HarnessFactory
from tests.server.resources import VIEW, base_snapshot


@pytest.fixture
async def make_harness() -> AsyncIterator[HarnessFactory]:
    harnesses: list[AdsHarness] = []

    async def make(
        *,
        push_concurrency: int = 4,
        send_timeout: float = 5.0,
        port: int = 0,
        limits: StreamLimits = UNLIMITED,
    ) -> AdsHarness:
        harness = AdsHarness(
            push_concurrency=push_concurrency, send_timeout=send_timeout, port=port, limits=limits
        )
        harnesses.append(harness)
        await harness.start()
        return harness

    try:
        yield make
    finally:
        for harness in harnesses:
            await harness.stop()


@pytest.fixture
async def harness(make_harness: HarnessFactory) -> AdsHarness:
    """A running server whose cache already holds ``base_snapshot()`` for VIEW."""
    h = await make_harness()
    h.cache.set_snapshot(VIEW, base_snapshot())
    return h
