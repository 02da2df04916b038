"""The loop of one ADS stream, whichever protocol: the RPC's task reading and applying request
rules, a sender task writing every response, and a cache watch that only remembers the newest
snapshot.

The protocols (``sotw.py``, ``delta.py``) differ only in how a request is read (``_on_request``)
and what a response holds (``_cut``, ``_has_changes``); the ADS order, the cluster re-warm, the
record-before-write and every ACK/NACK bookkeeping are here and in :mod:`pilot.server.ledger`.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

import grpc
from prometheus_client import Counter

from pilot import metrics
from pilot.cache.cache import SnapshotCache
from pilot.cache.snapshot import Snapshot, TypeResources
from pilot.server import ledger as rules
from pilot.server.callbacks import Rejection
from pilot.server.connection import Connection
from pilot.server.fanout import ByteStream, FanOut, Interrupt, PushSlot, ResponseWriter
from pilot.server.ledger import Sent, TypeLedger
from pilot.server.limits import UNLIMITED, LogGate, StreamLimits, request_bucket
from pilot.server.rejections import StreamRejections
from pilot.server.requests import Request
from pilot.server.responses import SharedResponses
from pilot.server.size_guard import warn_if_oversized
from pilot.server.status import Backlog
from pilot.xds import types

__all__ = ["EOF", "AdsStream", "Cut", "StreamContext"]

log = logging.getLogger("pilot.server")

# grpc.aio returns this sentinel from read() once the client has half-closed the stream.
EOF: object = grpc.aio.EOF  # type: ignore[attr-defined]

_SEND_ORDER = frozenset(types.SEND_ORDER)


RequestT = TypeVar("RequestT", bound=Request)
RequestT_co = TypeVar("RequestT_co", bound=Request, covariant=True)
SharedT = TypeVar("SharedT")


def _no_watch() -> None:
    pass


_COUNTED: dict[str, tuple[Counter, Counter]] = {}


def _counters(short: str) -> tuple[Counter, Counter]:
    """The pushes and bytes counters of one type, labelled once (``labels`` costs more than the
    increment, and every response of every stream counts)."""
    found = _COUNTED.get(short)
    if found is None:
        found = _COUNTED[short] = (
            metrics.xds_pushes.labels(type=short),
            metrics.xds_push_bytes.labels(type=short),
        )
    return found


class StreamContext(ByteStream, Protocol[RequestT_co]):
    """What a stream needs of a grpc.aio ServicerContext (requests in, encoded bytes out)."""

    async def read(self) -> RequestT_co | object: ...


@dataclass(slots=True)
class Cut:
    """One response of one type, cut from a snapshot and not yet numbered."""

    version: str
    typed: TypeResources | None  # what it carries is read from here
    names: frozenset[str] | None  # the names it carries (None: all of ``typed``)
    changes: bool  # it carries a change (rather than only answering a request)
    encode: Callable[[str], bytes]  # the response's bytes, given its nonce
    summary: Callable[[], str]  # what it holds, for the debug log
    content: str | None = None  # a whole-state response's identity (see ledger.Sent)
    # What makes the response's bytes (nonce aside) within ``typed``: streams that cut the same
    # key from the same ``typed`` share one encoded response (pilot.server.responses). None: the
    # response is this stream's own.
    key: Hashable = None


class AdsStream(abc.ABC, Generic[RequestT, SharedT]):
    """The loop of one ADS stream, from its first request to its end; subclasses speak a protocol.

    One stream runs in two tasks. The *reader* (the task that calls ``run``) applies the request
    rules (``_on_request``); it never writes. The *sender* writes every response: answers to
    requests and pushes of new snapshots. They meet in the stream's :class:`TypeLedger` values and
    two :class:`Interrupt` flags, all on one event loop.

    Snapshots reach the stream through a cache watch that only remembers the latest one and wakes
    the sender, so a slow proxy holds at most one pending snapshot and never builds a queue. The
    sender *adopts* a new snapshot only while it holds a push slot (:class:`FanOut`), and then
    writes, in make-before-break order, what changed for this proxy (``_send``). Requests that
    arrive meanwhile are answered from the snapshot already adopted, without a slot, so they never
    wait behind other proxies' pushes and never overtake a push half-way through its order.

    ``run`` returns when the client half-closes the stream, raises ``XdsProtocolError`` when the
    client breaks the protocol, and is cancelled when the RPC ends. Not reusable.
    """

    # One slot per field, no instance dict: a server holds thousands of streams.
    __slots__ = (
        "_adopted",
        "_cache",
        "_cancel_watch",
        "_conn",
        "_context",
        "_control_plane",
        "_fanout",
        "_latest",
        "_limits",
        "_made_rejections",
        "_on_rejected",
        "_pending_since",
        "_reader",
        "_requested",
        "_requests",
        "_responses",
        "_shared",
        "_wake",
        "_writer",
    )

    # How a response changes what the proxy holds and which nonces stay in flight (ledger.record).
    _drops_removed = False
    _keeps_pending = False
    _log = log  # where each response is logged (at debug level), and under which label
    _label = "ADS"

    def __init__(
        self,
        conn: Connection,
        context: StreamContext[RequestT],
        cache: SnapshotCache,
        fanout: FanOut,
        shared: SharedT,
        responses: SharedResponses,
        control_plane: bytes = b"",
        limits: StreamLimits = UNLIMITED,
        on_rejected: Callable[[Rejection], None] | None = None,
    ) -> None:
        self._conn = conn
        self._shared = shared  # what responses are encoded from, shared by the server's streams
        self._responses = responses  # whole responses and their nonces, shared likewise
        self._control_plane = control_plane  # the responses' control_plane field, already tagged
        self._context = context
        self._cache = cache
        self._fanout = fanout
        self._writer = ResponseWriter(context, fanout, conn.node_id, conn.stream_id)
        self._latest: Snapshot | None = None  # newest snapshot from the cache
        self._pending_since: float | None = None  # monotonic time the first unadopted one arrived
        self._adopted: Snapshot | None = None  # the snapshot responses are cut from
        self._wake = Interrupt()  # anything for the sender to do
        self._requested = Interrupt()  # a request wants an answer (a TypeLedger.respond is set)
        self._requests = request_bucket(limits)  # this stream's request rate, if bounded
        self._limits = limits
        self._on_rejected = on_rejected
        self._made_rejections: StreamRejections | None = None  # made at the first NACK
        self._cancel_watch: Callable[[], None] = _no_watch
        self._reader: asyncio.Task[object] | None = None  # the reading task, while it reads

    @property
    def _rejections(self) -> StreamRejections:
        """What a NACK does (count, log, record, blame): sotw.py and delta.py call it. Made at the
        first NACK: most streams never see one."""
        if self._made_rejections is None:
            gate = LogGate(self._limits.nack_log_interval)
            self._made_rejections = StreamRejections(self._conn, gate, self._on_rejected)
        return self._made_rejections

    def move(self, view: Hashable) -> None:
        """Read ``view`` from now on; its current snapshot is pushed like any new snapshot (the
        ledgers diff it against what the proxy holds)."""
        self._conn.view = view
        if self._cancel_watch is _no_watch:
            return  # not running (yet or any more): ``run`` watches ``conn.view``
        self._cancel_watch()
        self._cancel_watch = self._cache.watch(view, self._on_snapshot)
        snapshot = self._cache.get_snapshot(view)
        if snapshot is not None:
            self._on_snapshot(snapshot)

    async def run(self, first: RequestT) -> None:
        """Serve the stream: read its requests in the calling task (the RPC's own) while one sender
        task writes. Two tasks per stream, as few as a stream that reads and writes at once can
        have: each costs about 1 KiB for the stream's whole life."""
        self._cancel_watch = self._cache.watch(self._conn.view, self._on_snapshot)
        try:
            # Read the current snapshot only after the watch exists, so no update falls between.
            if self._latest is None:
                self._latest = self._cache.get_snapshot(self._conn.view)
            self._wake.set()
            self._reader = asyncio.current_task()
            sender = asyncio.get_running_loop().create_task(
                self._send_loop(), name=f"ads-send-{self._conn.stream_id}"
            )
            sender.add_done_callback(self._sender_ended)
            # The reading, in this frame (one coroutine frame less per stream).
            request: RequestT | object | None = first
            del first
            try:
                while True:
                    self._on_request(request)  # type: ignore[arg-type]  # never EOF or None here
                    # Hold no request while waiting for the next: a request can be big (an EDS
                    # request names every cluster), and 1000 idle streams would each keep one.
                    request = None
                    if self._requests is not None:
                        if not self._requests.has_capacity():
                            metrics.xds_rate_limited.labels(scope="request").inc()
                        # Past its rate, the stream's next request waits in gRPC's flow-control window.
                        await self._requests.acquire()
                    request = await self._context.read()
                    if request is EOF:
                        log.debug(
                            "ADS: %s closed its side of stream %d", self._conn.node_id, self._conn.stream_id
                        )
                        return
            except asyncio.CancelledError:
                reader = self._reader
                if reader is not None and sender.done() and not sender.cancelled():
                    reader.uncancel()  # the cancel was ours: the sender's failure ends the stream
                    sender.result()
                raise
            finally:
                self._reader = None
                sender.remove_done_callback(self._sender_ended)
                sender.cancel()
                await asyncio.gather(sender, return_exceptions=True)
        finally:
            self._cancel_watch()
            self._cancel_watch = _no_watch

    def _sender_ended(self, task: asyncio.Task[None]) -> None:
        # The sender only ends by failing (or being cancelled by ``run``): end the reading too,
        # unless it is over already (a cancel then would hit whatever the task awaits next).
        if not task.cancelled() and self._reader is not None:
            self._reader.cancel()

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
    def _on_request(self, request: RequestT) -> None:
        """Apply one request; call ``_ask_answer`` for a type that needs a response."""

    @abc.abstractmethod
    def _has_changes(self, ledger: TypeLedger, snapshot: Snapshot) -> bool:
        """Whether ``snapshot`` holds anything of ``ledger``'s type this proxy would be sent."""

    @abc.abstractmethod
    def _cut(self, ledger: TypeLedger, snapshot: Snapshot, rewarm: frozenset[str]) -> Cut | None:
        """The response of ``ledger``'s type to send now (asked for, or changes in ``snapshot``;
        ``rewarm``: clusters whose endpoints go out again), or None. Clears ``respond``."""

    # -- the cache side --------------------------------------------------------------------------

    def _on_snapshot(self, snapshot: Snapshot) -> None:
        # Called synchronously by SnapshotCache.set_snapshot: remember, wake, never block.
        self._latest = snapshot
        if self._pending_since is None:
            self._pending_since = time.monotonic()
        self._wake.set()

    # -- the reader ------------------------------------------------------------------------------

    def _ask_answer(self, ledger: TypeLedger) -> None:
        ledger.respond = True
        self._requested.set()
        self._wake.set()

    def _record_stale(self, ledger: TypeLedger, nonce: str) -> None:
        """A request carried a nonce that is not the latest sent for its type: a newer response is
        on its way to the proxy and will be ACKed or NACKed itself. Count it; never answer it.
        https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol#resource-updates"""
        metrics.xds_expired_nonce.labels(type=types.short_name(ledger.type_url)).inc()
        log.debug(
            "ADS:%s %s stale nonce %s (sent %s)",
            types.short_name(ledger.type_url),
            self._conn.node_id,
            nonce,
            ledger.nonce_sent,
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

    def _changes_in(self, snapshot: Snapshot) -> bool:
        by_type = snapshot.by_type
        return any(
            ledger.nonce_sent
            and not rules.in_step(ledger, by_type.get(ledger.type_url))
            and self._has_changes(ledger, snapshot)
            for ledger in self._conn.types.values()
        )

    def _ordered_types(self) -> list[str]:
        """The stream's type URLs in make-before-break order (CDS, EDS, LDS, RDS, VHDS), then the rest.
        https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol#eventual-consistency-considerations"""
        in_order = [t for t in types.SEND_ORDER if t in self._conn.types]
        return in_order + sorted(t for t in self._conn.types if t not in _SEND_ORDER)

    async def _send(self, snapshot: Snapshot, slot: PushSlot | None, push_started: float | None) -> None:
        """Write, in ADS order, each type that was asked for or holds changes for this proxy;
        never what it last rejected.

        Order: CDS, EDS, LDS, RDS, so that nothing names a resource the proxy does not have yet.
        We do not wait for ACKs in between: on one ADS stream Envoy applies them in that order.
        https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol#eventual-consistency-considerations
        """
        updated_clusters: frozenset[str] = frozenset()
        for type_url in self._ordered_types():
            ledger = self._conn.types.get(type_url)  # the reader may have dropped it meanwhile
            if ledger is None:
                continue
            rewarming = type_url == types.ENDPOINT and updated_clusters
            if not ledger.respond and not rewarming and rules.in_step(ledger, snapshot.by_type.get(type_url)):
                continue  # an unchanged type: nothing to cut (most types of most pushes)
            cut = self._cut(ledger, snapshot, updated_clusters if type_url == types.ENDPOINT else frozenset())
            if cut is None:
                continue
            if type_url == types.CLUSTER:
                # Clusters the proxy has at another version: it rebuilds and re-warms them.
                updated_clusters = rules.updated(ledger, rules.carried(cut.typed, cut.names))
            await self._respond(ledger, cut, slot, push_started if cut.changes else None)

    async def _respond(
        self, ledger: TypeLedger, cut: Cut, slot: PushSlot | None, push_started: float | None
    ) -> None:
        shared_in = cut.typed if cut.key is not None else None
        response = self._responses.respond(shared_in, cut.key, self._conn.last_nonce, cut.encode)
        self._conn.last_nonce = response.number
        nonce, data = response.nonce, response.data
        warn_if_oversized(self._conn.node_id, ledger.type_url, len(data), cut.typed, cut.names)
        sent = Sent(nonce, cut.version, cut.typed, cut.names, cut.content)
        rules.record(
            ledger, sent, push_started, drops_removed=self._drops_removed, keep_pending=self._keeps_pending
        )
        short = types.short_name(ledger.type_url)
        try:
            await self._writer.write(data, slot)
        except asyncio.CancelledError:
            raise
        except Exception:
            metrics.xds_pushes.labels(type=f"{short}_senderr").inc()
            raise
        pushes, pushed_bytes = _counters(short)
        pushes.inc()
        pushed_bytes.inc(len(data))
        if self._log.isEnabledFor(logging.DEBUG):
            self._log.debug(
                "%s:%s sent %s version %s nonce %s: %s, %d bytes",
                self._label,
                short,
                self._conn.node_id,
                cut.version,
                nonce,
                cut.summary(),
                len(data),
            )
