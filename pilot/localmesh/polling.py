"""Wait for a condition with a deadline: poll, never a fixed sleep standing in for "long enough"."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

__all__ = ["Timeout", "wait_until", "wait_until_async"]

T = TypeVar("T")


class Timeout(AssertionError):
    """The condition did not hold before the deadline (an AssertionError so tests report it plainly)."""


def _describe(message: str, timeout: float, last_error: BaseException | None) -> str:
    text = f"{message or 'condition'} not met within {timeout:.1f}s"
    if last_error is not None:
        text += f" (last error: {type(last_error).__name__}: {last_error})"
    return text


def wait_until(
    predicate: Callable[[], T],
    timeout: float = 10.0,
    interval: float = 0.05,
    message: str = "",
    *,
    ignore: tuple[type[BaseException], ...] = (OSError,),
) -> T:
    """Call ``predicate`` until it returns something truthy, and return that; Timeout after ``timeout``.

    Exceptions listed in ``ignore`` count as "not yet" (a server still starting refuses connections).
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            result = predicate()
        except ignore as err:
            last_error = err
        else:
            if result:
                return result
        if time.monotonic() >= deadline:
            raise Timeout(_describe(message, timeout, last_error))
        time.sleep(interval)


async def wait_until_async(
    predicate: Callable[[], Awaitable[T]],
    timeout: float = 10.0,
    interval: float = 0.05,
    message: str = "",
    *,
    ignore: tuple[type[BaseException], ...] = (OSError,),
) -> T:
    """``wait_until`` for an async predicate."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            result = await predicate()
        except ignore as err:
            last_error = err
        else:
            if result:
                return result
        if time.monotonic() >= deadline:
            raise Timeout(_describe(message, timeout, last_error))
        await asyncio.sleep(interval)
