"""The server-wide push fan-out and the writer of one stream's responses.

:class:`FanOut` bounds how many streams are written a push at once (Istio's PILOT_PUSH_THROTTLE),
and :class:`ResponseWriter` makes sure a slow or dead proxy gives its slot back after
``send_timeout`` (PILOT_XDS_SEND_TIMEOUT). Both protocols' streams share one FanOut per server.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from typing import Any, Protocol

from pilot import metrics

__all__ = ["ByteStream", "FanOut", "Interrupt", "PushSlot", "ResponseWriter"]

log = logging.getLogger("pilot.server")


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


class Interrupt:
    """A flag that completes the futures given to ``notify`` when it is set, so "a push slot or this
    flag, whichever comes first" is one future, not two tasks; ``wait`` is one such future.

    Like ``asyncio.Event`` without its waiter deque (an empty ``collections.deque`` costs about
    600 bytes, and each stream keeps two flags for its whole life): the list of futures exists
    only while someone waits."""

    __slots__ = ("_notify", "_value")

    def __init__(self) -> None:
        self._value = False
        self._notify: list[asyncio.Future[Any]] | None = None

    def is_set(self) -> bool:
        return self._value

    def notify(self, future: asyncio.Future[Any]) -> None:
        if self._notify is None:
            self._notify = [future]
        else:
            self._notify.append(future)

    def forget(self, future: asyncio.Future[Any]) -> None:
        if self._notify is not None:
            try:
                self._notify.remove(future)
            except ValueError:
                pass

    def set(self) -> None:
        self._value = True
        notify, self._notify = self._notify, None
        for future in notify or ():
            if not future.done():
                future.set_result(None)

    def clear(self) -> None:
        self._value = False

    def wait(self) -> asyncio.Future[None]:
        """A future done once the flag is set (done at once if it is). Awaiting it holds no
        coroutine frame of its own (a stream's sender waits on one for most of its life); a
        cancelled one is dropped at the next ``set``."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._value:
            future.set_result(None)
        else:
            self.notify(future)
        return future


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

    async def acquire_unless(self, interrupt: asyncio.Event | Interrupt) -> PushSlot | None:
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

    __slots__ = ("_fanout", "_node_id", "_stream", "_stream_id", "writing")

    def __init__(self, stream: ByteStream, fanout: FanOut, node_id: str, stream_id: int = 0) -> None:
        self._stream = stream
        self._fanout = fanout
        self._node_id = node_id  # whom it writes to, for the log (the stream's own strings)
        self._stream_id = stream_id
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
            "ADS: send to %s (stream %d) took over %.1fs; giving its push slot to others",
            self._node_id,
            self._stream_id,
            self._fanout.send_timeout,
        )
        slot.release()
