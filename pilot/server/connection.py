"""Per-stream state of the ADS server, its read-only status, the server-wide push fan-out, and the
task structure both ADS protocols share.

A :class:`Connection` is one gRPC stream: who the node is, which view (cache key) it reads, and per
type URL a :class:`TypeState` (Istio's ``WatchedResource``): subscribed names, what was last sent
and acked, the last NACK. It is mutated only by its own stream's tasks, all on one event loop;
anyone else (``/debug/syncz``) reads frozen :class:`ConnectionStatus` values. The state is
protocol-neutral where it can be, so state-of-the-world (``sotw.py``) and delta (``delta.py``)
streams report the same status.

:class:`FanOut` bounds how many streams are written a push at once, and :class:`ResponseWriter`
makes sure a slow or dead proxy gives its slot back after ``send_timeout``.

:class:`AdsStream` is the loop of one stream, whichever protocol: a reader task applying request
rules, a sender task writing every response, and a cache watch that only remembers the newest
snapshot. The protocols differ only in how a request is read and what a response holds.
"""

from __future__ import annotations

import abc
import asyncio
import collections
import logging
import time
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any, Protocol

import grpc

from pilot import metrics
from pilot.cache.cache import SnapshotCache
from pilot.cache.snapshot import Snapshot
from pilot.xds import types

__all__ = [
    "AdsStream",
    "Backlog",
    "ByteStream",
    "Connection",
    "ConnectionStatus",
    "FanOut",
    "NackStatus",
    "PushSlot",
    "ResponseWriter",
    "StreamContext",
    "TypeState",
    "TypeStatus",
]

log = logging.getLogger("pilot.server")

# grpc.aio returns this sentinel from read() once the client has half-closed the stream.
_EOF: object = grpc.aio.EOF  # type: ignore[attr-defined]


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


@dataclass(frozen=True, slots=True)
class Backlog:
    """What one stream holds for its proxy beyond what it has written (debug and tests).

    A stream never queues: however many snapshots arrive while its proxy is slow, it keeps only
    the newest one it has not adopted yet, and writes one response at a time.
    """

    pending_snapshots: int  # 0 or 1: a snapshot newer than the one responses are cut from
    pending_since: float | None  # monotonic time the oldest unadopted snapshot arrived
    writing: bool  # a response is being written (the proxy reads slowly, or not at all)


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

    def record_ack(self, nonce: str, version: str) -> None:
        """The proxy ACKed the response ``nonce`` (of ``version``): record it, observe the
        convergence time of the push it carried, and forget the last NACK.
        https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol#ack"""
        if self.nonce_acked != nonce:
            self.nonce_acked = nonce
            self.version_acked = version
            if self.push_started is not None:
                metrics.proxy_convergence_time.observe(time.monotonic() - self.push_started)
                self.push_started = None
        self.last_nack = None

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

    __slots__ = ("_fanout", "held")

    def __init__(self, fanout: FanOut) -> None:
        self._fanout = fanout
        self.held = True

    def release(self) -> None:
        if self.held:
            self.held = False
            self._fanout._release()


class Interrupt(asyncio.Event):
    """An ``asyncio.Event`` that also completes the futures given to ``notify`` when it is set, so
    "a push slot or this event, whichever comes first" is one future, not two tasks."""

    def __init__(self) -> None:
        super().__init__()
        self._notify: list[asyncio.Future[PushSlot | None]] = []

    def notify(self, future: asyncio.Future[PushSlot | None]) -> None:
        self._notify.append(future)

    def forget(self, future: asyncio.Future[PushSlot | None]) -> None:
        try:
            self._notify.remove(future)
        except ValueError:
            pass

    def set(self) -> None:
        super().set()
        notify, self._notify = self._notify, []
        for future in notify:
            if not future.done():
                future.set_result(None)


class FanOut:
    """The server-wide bound on concurrent pushes (Istio's PILOT_PUSH_THROTTLE) and the time one
    write may hold a slot (PILOT_XDS_SEND_TIMEOUT). Shared by every stream of one server.

    Waiters queue in FIFO order, each as one future that a released slot (or an ``Interrupt``)
    completes; a slot given to a waiter that is gone is passed on."""

    def __init__(self, concurrency: int, send_timeout: float) -> None:
        if concurrency < 1:
            raise ValueError("push_concurrency must be at least 1")
        if send_timeout <= 0:
            raise ValueError("send_timeout must be positive")
        self.send_timeout = send_timeout
        self._free = concurrency
        self._waiting: collections.deque[asyncio.Future[PushSlot | None]] = collections.deque()

    async def acquire_unless(self, interrupt: asyncio.Event) -> PushSlot | None:
        """Wait for a slot; give up and return None as soon as ``interrupt`` is set, so that a
        stream waiting to push can still answer its proxy's requests meanwhile."""
        if interrupt.is_set():
            return None
        if self._free > 0 and not self._waiting:
            self._free -= 1
            return PushSlot(self)
        future: asyncio.Future[PushSlot | None] = asyncio.get_running_loop().create_future()
        self._waiting.append(future)
        watcher: asyncio.Task[bool] | None = None
        if isinstance(interrupt, Interrupt):
            interrupt.notify(future)
        else:  # any other Event: watch it with a task (the slow, general way)
            watcher = asyncio.ensure_future(interrupt.wait())

            def interrupted(_: object) -> None:
                if not future.done():
                    future.set_result(None)

            watcher.add_done_callback(interrupted)
        try:
            return await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled() and (slot := future.result()) is not None:
                slot.release()
            raise
        finally:
            if isinstance(interrupt, Interrupt):
                interrupt.forget(future)
            if watcher is not None:
                watcher.cancel()

    def _release(self) -> None:
        while self._waiting:
            future = self._waiting.popleft()
            if not future.done():
                future.set_result(PushSlot(self))
                return
        self._free += 1


class ByteStream(Protocol):
    """What a writer needs of a grpc.aio ServicerContext whose response serializer passes bytes."""

    async def write(self, message: bytes) -> None: ...


class ResponseWriter:
    """Writes one stream's encoded responses, one at a time (gRPC allows one pending write).

    A write made while holding a push slot gives the slot back after ``send_timeout`` and then
    keeps waiting for the write without it: the slow proxy still gets its update when it reads
    (or its stream ends), and the other proxies are not held up meanwhile. The timeout is a timer
    callback, not a task per write.
    """

    def __init__(self, stream: ByteStream, fanout: FanOut, describe: str) -> None:
        self._stream = stream
        self._fanout = fanout
        self._describe = describe
        self.writing = False  # a write is in flight

    async def write(self, data: bytes, slot: PushSlot | None) -> None:
        self.writing = True
        timer = None
        if slot is not None and slot.held:
            timer = asyncio.get_running_loop().call_later(self._fanout.send_timeout, self._timed_out, slot)
        try:
            await self._stream.write(data)
        finally:
            self.writing = False
            if timer is not None:
                timer.cancel()

    def _timed_out(self, slot: PushSlot) -> None:
        if not slot.held:
            return
        metrics.xds_send_timeouts.inc()
        log.warning(
            "ADS: send to %s took over %.1fs; giving its push slot to others",
            self._describe,
            self._fanout.send_timeout,
        )
        slot.release()


class StreamContext(ByteStream, Protocol):
    """What a stream needs of a grpc.aio ServicerContext (requests in, encoded bytes out)."""

    async def read(self) -> Any: ...


class AdsStream(abc.ABC):
    """The loop of one ADS stream, from its first request to its end; subclasses speak a protocol.

    One stream runs two tasks. The *reader* applies the request rules (``_on_request``); it never
    writes. The *sender* writes every response: answers to requests and pushes of new snapshots.
    They meet in the stream's :class:`TypeState` values and two events, all on one event loop.

    Snapshots reach the stream through a cache watch that only remembers the latest one and wakes
    the sender, so a slow proxy holds at most one pending snapshot and never builds a queue. The
    sender *adopts* a new snapshot only while it holds a push slot (:class:`FanOut`), and then
    writes, in make-before-break order, what changed for this proxy (``_send``). Requests that
    arrive meanwhile are answered from the snapshot already adopted, without a slot, so they never
    wait behind other proxies' pushes and never overtake a push half-way through its order.

    ``run`` returns when the client half-closes the stream, raises ``XdsProtocolError`` when the
    client breaks the protocol, and is cancelled when the RPC ends. Not reusable.
    """

    def __init__(
        self, conn: Connection, context: StreamContext, cache: SnapshotCache, fanout: FanOut
    ) -> None:
        self._conn = conn
        self._context = context
        self._cache = cache
        self._fanout = fanout
        self._writer = ResponseWriter(context, fanout, f"{conn.node_id} (stream {conn.stream_id})")
        self._latest: Snapshot | None = None  # newest snapshot from the cache
        self._pending_since: float | None = None  # monotonic time the first unadopted one arrived
        self._adopted: Snapshot | None = None  # the snapshot responses are cut from
        self._wake = asyncio.Event()  # anything for the sender to do
        self._requested = Interrupt()  # a request wants an answer (a TypeState.respond is set)

    async def run(self, first: Any) -> None:
        cancel_watch = self._cache.watch(self._conn.view, self._on_snapshot)
        try:
            # Read the current snapshot only after the watch exists, so no update falls between.
            if self._latest is None:
                self._latest = self._cache.get_snapshot(self._conn.view)
            self._wake.set()
            reader = asyncio.create_task(self._read_loop(first), name=f"ads-read-{self._conn.stream_id}")
            del first  # held by the reader until it is applied
            sender = asyncio.create_task(self._send_loop(), name=f"ads-send-{self._conn.stream_id}")
            try:
                done, _ = await asyncio.wait((reader, sender), return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    task.result()  # re-raise what ended the stream
            finally:
                for task in (reader, sender):
                    task.cancel()
                await asyncio.gather(reader, sender, return_exceptions=True)
        finally:
            cancel_watch()

    def backlog(self) -> Backlog:
        """What this stream holds that its proxy has not been written yet (at most one snapshot)."""
        pending = self._latest is not None and self._latest is not self._adopted
        return Backlog(
            pending_snapshots=1 if pending else 0,
            pending_since=self._pending_since if pending else None,
            writing=self._writer.writing,
        )

    # -- what a protocol provides ----------------------------------------------------------------

    @abc.abstractmethod
    def _on_request(self, request: Any) -> None:
        """Apply one request; call ``_ask_answer`` for a type that needs a response."""

    @abc.abstractmethod
    def _changes_in(self, snapshot: Snapshot) -> bool:
        """Whether ``snapshot`` holds anything this proxy would be sent (given what it was sent)."""

    @abc.abstractmethod
    async def _send(self, snapshot: Snapshot, slot: PushSlot | None, push_started: float | None) -> None:
        """Write, in ADS order, every answer asked for and every change in ``snapshot``."""

    # -- the cache side --------------------------------------------------------------------------

    def _on_snapshot(self, snapshot: Snapshot) -> None:
        # Called synchronously by SnapshotCache.set_snapshot: remember, wake, never block.
        self._latest = snapshot
        if self._pending_since is None:
            self._pending_since = time.monotonic()
        self._wake.set()

    # -- the reader ------------------------------------------------------------------------------

    async def _read_loop(self, first: Any) -> None:
        request = first
        del first
        while True:
            self._on_request(request)
            # Hold no request while waiting for the next: a request can be big (an EDS request
            # names every cluster), and 1000 idle streams would each keep their last one.
            request = None
            request = await self._context.read()
            if request is _EOF:
                log.debug("ADS: %s closed its side of stream %d", self._conn.node_id, self._conn.stream_id)
                return

    def _ask_answer(self, state: TypeState) -> None:
        state.respond = True
        self._requested.set()
        self._wake.set()

    def _record_nack(
        self, state: TypeState | None, type_url: str, nonce: str, version: str, error: Any
    ) -> None:
        """A request carried ``error_detail``: the proxy rejected the response ``nonce`` and keeps
        running ``version``. Count, log and record it; the caller decides what not to resend.
        https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol#nack"""
        short = types.short_name(type_url)
        message: str = error.message
        metrics.xds_rejects.labels(type=short).inc()
        log.warning(
            "ADS:%s NACK from %s (stream %d) nonce %s, keeps version %r: %s",
            short,
            self._conn.node_id,
            self._conn.stream_id,
            nonce,
            version,
            message,
        )
        if state is not None:
            state.last_nack = NackStatus(
                message=message, code=error.code, nonce=nonce, version=version, at=time.time()
            )

    def _record_stale(self, state: TypeState, nonce: str) -> None:
        """A request carried a nonce that is not the latest sent for its type: a newer response is
        on its way to the proxy and will be ACKed or NACKed itself. Count it; never answer it.
        https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol#resource-updates"""
        metrics.xds_expired_nonce.labels(type=types.short_name(state.type_url)).inc()
        log.debug(
            "ADS:%s %s stale nonce %s (sent %s)",
            types.short_name(state.type_url),
            self._conn.node_id,
            nonce,
            state.nonce_sent,
        )

    # -- the sender ------------------------------------------------------------------------------

    async def _send_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self._send_pending()

    async def _send_pending(self) -> None:
        latest = self._latest
        if latest is None:
            return  # requests wait until the view has a snapshot
        if self._adopted is None:
            # The first responses of a stream answer its requests: no push slot needed.
            self._requested.clear()
            started = self._pending_since
            self._adopt(latest)
            await self._send(latest, None, started)
            return
        if latest is self._adopted:
            self._pending_since = None  # the same snapshot set again: nothing is pending
            if self._requested.is_set():
                self._requested.clear()
                await self._send(self._adopted, None, None)
            return
        if not self._changes_in(latest):
            # Nothing this proxy receives differs (the change was to names it does not watch):
            # take the snapshot without a push slot.
            self._adopt(latest)
            if self._requested.is_set():
                self._requested.clear()
                await self._send(latest, None, None)
            return
        slot = await self._fanout.acquire_unless(self._requested)
        if slot is None:
            # A request came in while we waited for a slot: answer it from the snapshot the proxy
            # already has, then come back for the push.
            self._requested.clear()
            await self._send(self._adopted, None, None)
            self._wake.set()
            return
        try:
            latest = self._latest or latest  # the newest one, which may have come while we waited
            started = self._pending_since
            self._adopt(latest)
            self._requested.clear()
            await self._send(latest, slot, started)
        finally:
            slot.release()

    def _adopt(self, snapshot: Snapshot) -> None:
        self._adopted = snapshot
        self._pending_since = None

    def _ordered_types(self) -> list[str]:
        """The stream's type URLs in make-before-break order (CDS, EDS, LDS, RDS), then the rest.
        https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol#eventual-consistency-considerations"""
        in_order = [t for t in types.PUSH_ORDER if t in self._conn.types]
        return in_order + sorted(t for t in self._conn.types if t not in _PUSH_ORDER)

    async def _write(self, state: TypeState, data: bytes, slot: PushSlot | None) -> None:
        """Write one encoded response of ``state``'s type and count it."""
        short = types.short_name(state.type_url)
        try:
            await self._writer.write(data, slot)
        except asyncio.CancelledError:
            raise
        except Exception:
            metrics.xds_pushes.labels(type=f"{short}_senderr").inc()
            raise
        metrics.xds_pushes.labels(type=short).inc()
        metrics.xds_push_bytes.labels(type=short).inc(len(data))


_PUSH_ORDER = frozenset(types.PUSH_ORDER)
