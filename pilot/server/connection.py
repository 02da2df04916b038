"""Per-stream state of the ADS server, its read-only status, and the server-wide push fan-out.

A :class:`Connection` is one gRPC stream: who the node is, which view (cache key) it reads, and per
type URL a :class:`TypeState` (Istio's ``WatchedResource``): subscribed names, what was last sent
and acked, the last NACK. It is mutated only by its own stream's tasks, all on one event loop;
anyone else (``/debug/syncz``) reads frozen :class:`ConnectionStatus` values. The state is
protocol-neutral where it can be so that the delta stream (``delta.py``) can keep the same status.

:class:`FanOut` bounds how many streams are written a push at once, and :class:`ResponseWriter`
makes sure a slow or dead proxy gives its slot back after ``send_timeout``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Protocol

from pilot import metrics
from pilot.cache.snapshot import Snapshot

__all__ = [
    "ByteStream",
    "Connection",
    "ConnectionStatus",
    "FanOut",
    "NackStatus",
    "PushSlot",
    "ResponseWriter",
    "TypeState",
    "TypeStatus",
]

log = logging.getLogger("pilot.server")


@dataclass(frozen=True, slots=True)
class NackStatus:
    """The last rejection of one type by one proxy (``error_detail`` of its request)."""

    message: str
    code: int
    nonce: str
    version: str  # the version the proxy says it still runs
    at: float  # wall-clock seconds


@dataclass(frozen=True, slots=True)
class TypeStatus:
    """Read-only status of one type URL on one stream (a row of ``/debug/syncz``)."""

    type_url: str
    wildcard: bool
    names: tuple[str, ...]  # subscribed names (sorted); empty and wildcard=True for "all"
    version_sent: str
    nonce_sent: str
    version_acked: str
    nonce_acked: str
    last_nack: NackStatus | None
    last_sent_at: float | None  # wall-clock seconds


@dataclass(frozen=True, slots=True)
class ConnectionStatus:
    """Read-only status of one stream, safe to keep and serialize."""

    stream_id: int
    node_id: str
    peer: str
    connected_at: float  # wall-clock seconds
    view: str  # str() of the cache key the stream reads
    protocol: str  # "sotw" (state of the world) or "delta"
    types: dict[str, TypeStatus]


@dataclass(slots=True)
class TypeState:
    """One type URL on one stream. Owned by the stream's tasks; never shared between streams."""

    type_url: str
    wildcard: bool
    names: frozenset[str]
    # A request asked for a response (first request, reconnect, newly subscribed names).
    respond: bool = False
    nonce_sent: str = ""
    version_sent: str = ""
    content_sent: str | None = None  # Selection.content of the last response
    sent_from: Snapshot | None = None  # the snapshot the last response was cut from
    sent_at: float | None = None
    nonce_acked: str = ""
    version_acked: str = ""
    last_nack: NackStatus | None = None
    # The nonce and content the proxy rejected: never sent again, and a later request that still
    # carries that nonce is not an ACK.
    rejected_nonce: str = ""
    rejected_content: str | None = None
    # Monotonic time the snapshot behind the last response reached the stream (for convergence
    # time); None when the last response answered a request rather than pushed a change.
    push_started: float | None = None

    def status(self) -> TypeStatus:
        return TypeStatus(
            type_url=self.type_url,
            wildcard=self.wildcard,
            names=tuple(sorted(self.names)),
            version_sent=self.version_sent,
            nonce_sent=self.nonce_sent,
            version_acked=self.version_acked,
            nonce_acked=self.nonce_acked,
            last_nack=self.last_nack,
            last_sent_at=self.sent_at,
        )


@dataclass(slots=True, eq=False)
class Connection:
    """One ADS stream. Created after the first request identified the node."""

    stream_id: int
    node_id: str
    peer: str
    view: Hashable
    protocol: str
    connected_at: float = field(default_factory=time.time)
    types: dict[str, TypeState] = field(default_factory=dict)
    _nonces: int = 0

    def next_nonce(self) -> str:
        """A nonce unique on this stream. A nonce only has to tell this stream's responses apart.
        https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol#when-to-send-an-update"""
        self._nonces += 1
        return str(self._nonces)

    def status(self) -> ConnectionStatus:
        return ConnectionStatus(
            stream_id=self.stream_id,
            node_id=self.node_id,
            peer=self.peer,
            connected_at=self.connected_at,
            view=str(self.view),
            protocol=self.protocol,
            types={url: state.status() for url, state in self.types.items()},
        )


class PushSlot:
    """One of the server's ``push_concurrency`` slots, held while one push is written to one
    stream. ``release`` is idempotent."""

    __slots__ = ("_semaphore", "held")

    def __init__(self, semaphore: asyncio.Semaphore) -> None:
        self._semaphore = semaphore
        self.held = True

    def release(self) -> None:
        if self.held:
            self.held = False
            self._semaphore.release()


class FanOut:
    """The server-wide bound on concurrent pushes (Istio's PILOT_PUSH_THROTTLE) and the time one
    write may hold a slot (PILOT_XDS_SEND_TIMEOUT). Shared by every stream of one server."""

    def __init__(self, concurrency: int, send_timeout: float) -> None:
        if concurrency < 1:
            raise ValueError("push_concurrency must be at least 1")
        if send_timeout <= 0:
            raise ValueError("send_timeout must be positive")
        self.send_timeout = send_timeout
        self._semaphore = asyncio.Semaphore(concurrency)

    async def acquire_unless(self, interrupt: asyncio.Event) -> PushSlot | None:
        """Wait for a slot; give up and return None as soon as ``interrupt`` is set, so that a
        stream waiting to push can still answer its proxy's requests meanwhile."""
        if interrupt.is_set():
            return None
        acquire = asyncio.ensure_future(self._semaphore.acquire())
        interrupted = asyncio.ensure_future(interrupt.wait())
        try:
            await asyncio.wait((acquire, interrupted), return_when=asyncio.FIRST_COMPLETED)
        finally:
            interrupted.cancel()
            acquire.cancel()  # a no-op once acquired; Semaphore.acquire undoes a cancelled wake-up
            await asyncio.gather(acquire, interrupted, return_exceptions=True)
        if acquire.cancelled() or acquire.exception() is not None:
            return None
        return PushSlot(self._semaphore)


class ByteStream(Protocol):
    """What a writer needs of a grpc.aio ServicerContext whose response serializer passes bytes."""

    async def write(self, message: bytes) -> None: ...


class ResponseWriter:
    """Writes one stream's encoded responses, one at a time (gRPC allows one pending write).

    A write made while holding a push slot gives the slot back after ``send_timeout`` and then
    keeps waiting for the write without it: the slow proxy still gets its update when it reads
    (or its stream ends), and the other proxies are not held up meanwhile.
    """

    def __init__(self, stream: ByteStream, fanout: FanOut, describe: str) -> None:
        self._stream = stream
        self._fanout = fanout
        self._describe = describe

    async def write(self, data: bytes, slot: PushSlot | None) -> None:
        write: asyncio.Future[None] = asyncio.ensure_future(self._stream.write(data))
        try:
            if slot is None or not slot.held:
                await write
                return
            try:
                await asyncio.wait_for(asyncio.shield(write), self._fanout.send_timeout)
            except TimeoutError:
                metrics.xds_send_timeouts.inc()
                log.warning(
                    "ADS: send to %s took over %.1fs; giving its push slot to others",
                    self._describe,
                    self._fanout.send_timeout,
                )
                slot.release()
                await write
        except BaseException:
            write.cancel()  # the stream is ending (or broke): abandon the write still in flight
            raise
