"""How much one proxy may ask of the server: new streams per second (all proxies), requests per
second (each stream), and how often one stream's NACKs are logged.

istiod admits new ADS streams through one token bucket (``PILOT_MAX_REQUESTS_PER_SECOND``, burst
1): a stream that gets no token within a second ends with RESOURCE_EXHAUSTED, and its proxy
reconnects, to another replica at best (``WaitForRequestLimit`` in
https://github.com/istio/istio/blob/master/pilot/pkg/xds/discovery.go). pilot does the same, and
also bounds each stream's requests: past its rate a stream's next request is read only when the
bucket has a token again, so HTTP/2 flow control holds a flooding proxy back and the loop keeps
serving everyone else.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from aiolimiter import AsyncLimiter

__all__ = ["UNLIMITED", "LogGate", "StreamAdmission", "StreamLimits", "request_bucket"]

_ADMISSION_WAIT = 1.0  # seconds a new stream waits for a token (istiod's WaitForRequestLimit)


@dataclass(frozen=True, slots=True)
class StreamLimits:
    """The bounds above; 0 turns a rate off. The defaults here are off (tests, embedding); the
    command line's defaults are in :class:`pilot.settings.Settings`."""

    streams_per_second: float = 0.0  # new streams, all proxies together (burst 1)
    requests_per_second: float = 0.0  # requests of one stream ...
    request_burst: int = 100  # ... beyond a burst of this many
    nack_log_interval: float = 10.0  # one stream's NACKs: the first logged, then one per interval


UNLIMITED = StreamLimits()


class StreamAdmission:
    """The server-wide bucket new streams take a token from."""

    def __init__(self, per_second: float) -> None:
        self._bucket = AsyncLimiter(1, 1 / per_second) if per_second > 0 else None

    async def admit(self) -> bool:
        """Wait up to a second for a token; False if none came (refuse the stream)."""
        if self._bucket is None:
            return True
        try:
            await asyncio.wait_for(self._bucket.acquire(), _ADMISSION_WAIT)
        except TimeoutError:
            return False
        return True


def request_bucket(limits: StreamLimits) -> AsyncLimiter | None:
    """One stream's request bucket, or None when requests are not limited."""
    if limits.requests_per_second <= 0:
        return None
    burst = max(1, limits.request_burst)
    return AsyncLimiter(burst, burst / limits.requests_per_second)


class LogGate:
    """Lets the first line through, then at most one per ``interval`` seconds, telling how many
    were held back in between (one proxy's NACK storm must not fill the log)."""

    __slots__ = ("_interval", "_next", "_suppressed")

    def __init__(self, interval: float) -> None:
        self._interval = interval
        self._next = 0.0
        self._suppressed = 0

    def admit(self, now: float | None = None) -> int | None:
        """None: do not log this one. Else log it, with the returned count of lines held back."""
        now = time.monotonic() if now is None else now
        if now < self._next:
            self._suppressed += 1
            return None
        self._next = now + self._interval
        suppressed, self._suppressed = self._suppressed, 0
        return suppressed
