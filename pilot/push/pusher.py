"""Pusher: the conveyor from "the store changed" to "every connected view has a new snapshot".

It satisfies ``pilot.server.callbacks.StreamCallbacks`` structurally (the server never imports
push/): a stream's first request registers the proxy's view and, if needed, translates it; the
last stream of a view going away drops the view's snapshot from the cache.

Store events go through the ``Debouncer``; ``run`` pushes each debounced request by building ONE
``PushContext`` from the store snapshot and then one ``Snapshot`` per active view (never one per
proxy: proxies with equal views share it). A view is translated incrementally from its previous
snapshot when the translator can (``IncrementalTranslator``): only the types the changed config
can affect are generated again. Pushes are
serialized (Istio: "a new push starts only after the previous push function returns"), so
PushContext builds never overlap. A translation failure for one view is a bug in pilot: it is
logged and counted, that view keeps its previous snapshot and the others still get theirs.

Building a PushContext and translating a view run on the pusher's own worker thread, one at a
time, never on the event loop: a gateway bound to a 16,000-host VirtualService takes a quarter of
a second per push, which on the loop would stall every xDS stream and /ready that long. The
translator reads only frozen inputs (a store snapshot, a PushContext, a previous Snapshot), so it
needs no lock; the pusher's own state and the cache are touched on the loop only. The worker
holds the GIL while it runs pure Python, but gives it up every switch interval (5 ms), which is
what keeps the loop's added latency small (``tests/push/test_pusher_off_loop.py`` measures it).

A proxy's view depends on the config too (its service targets, the selectors naming its labels:
pilot.translate.views), so the pusher keeps each stream's ``Proxy`` and computes every stream's
view again on each push. A stream whose view changed is moved, once the new view's snapshot is in
the cache, through ``move_stream`` (the server's ``AdsServer.move_stream``, wired by app.py).

Runs on one event loop; not thread-safe.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from envoy.config.core.v3 import base_pb2
from google.protobuf.json_format import MessageToDict

from pilot import metrics
from pilot.cache.cache import SnapshotCache
from pilot.cache.snapshot import Snapshot
from pilot.config.objects import ConfigEvent
from pilot.config.store import ConfigStore
from pilot.push.debounce import Debouncer
from pilot.push.holds import Holds, ObjectRejection, RejectionReport
from pilot.push.request import CONFIG, GLOBAL, PushRequest
from pilot.push.translator import (
    IncrementalTranslator,
    IstioTranslator,
    StableViewsTranslator,
    Translator,
    VersionedContext,
    ViewingTranslator,
)
from pilot.translate.proxy import Proxy, ProxyView

log = logging.getLogger("pilot.push")

Clock = Callable[[], float]
T = TypeVar("T")


@dataclass(slots=True)
class _Reader:
    """One stream: its proxy (kept to compute its view at each push) and the view it reads."""

    proxy: Proxy
    view: ProxyView


@dataclass(frozen=True, slots=True)
class PushStatus:
    """What the last push did (for /debug and logs)."""

    number: int
    version: str
    revision: int
    views: int
    failed_views: int
    duration: float
    finished_at: float  # wall-clock seconds since the epoch
    reasons: tuple[tuple[str, int], ...]
    moved_streams: int = 0  # streams whose view changed with this push
    view_time: float = 0.0  # seconds spent computing every stream's view


class Pusher:
    def __init__(
        self,
        store: ConfigStore,
        cache: SnapshotCache,
        *,
        debounce_after: float,
        debounce_max: float,
        clock: Clock = time.monotonic,
        translator: Translator | None = None,
    ) -> None:
        self._store = store
        self._cache = cache
        self._clock = clock
        self._translator: Translator = translator if translator is not None else IstioTranslator()
        self._debouncer = Debouncer(debounce_after, debounce_max)
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()  # one push at a time
        self._translating = asyncio.Lock()  # one view translation at a time (push or stream open)
        # The one thread translation runs on; its threads end with the executor (garbage collected).
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pilot-translate")
        self._context: VersionedContext | None = None
        self._viewed_at: VersionedContext | None = None  # see _changed_views
        self._revision = -1  # store revision of the current context
        self._event_revision = -1  # newest store revision a config event announced
        self._streams: dict[int, _Reader] = {}
        # Told when a stream must read another view (app.py: AdsServer.move_stream).
        self.move_stream: Callable[[int, Hashable], None] = _stay
        self._views: dict[ProxyView, set[int]] = {}
        # Each view read by some stream, as the one object its streams share (not one per stream).
        self._view_keys: dict[ProxyView, ProxyView] = {}
        # view -> the context its cached snapshot was built from (the base of its next, incremental,
        # translation; an older context stays alive only while some view still needs it)
        self._built: dict[ProxyView, VersionedContext] = {}
        # Views a push builds for streams about to move there: wanted before any stream reads them.
        self._incoming: set[ProxyView] = set()
        self._holds = Holds()  # objects a proxy rejected, held back for its view (push/holds.py)
        self._rebuilds: set[asyncio.Task[bool]] = set()
        self.push_count = 0
        self.last_push: PushStatus | None = None
        store.subscribe(self._on_config_event)

    # -- status, read by app.py for /ready and /debug ------------------------------------------

    @property
    def context(self) -> VersionedContext | None:
        """The PushContext of the last push (None before the first)."""
        return self._context

    def views(self) -> dict[ProxyView, int]:
        """Active views and how many streams read each."""
        return {view: len(streams) for view, streams in self._views.items()}

    def stream_views(self) -> dict[int, ProxyView]:
        """The view each open stream reads, by stream id."""
        return {stream_id: reader.view for stream_id, reader in self._streams.items()}

    def view_revisions(self) -> dict[str, int]:
        """Per active view (its str()), the store revision its snapshot in the cache was built from
        (for /debug/convergence: which edits a proxy of the view can hold)."""
        out: dict[str, int] = {}
        for view, context in self._built.items():
            revision = getattr(context, "revision", None)
            if view in self._views and isinstance(revision, int):
                out[str(view)] = revision
        return out

    def rejections(self) -> list[ObjectRejection]:
        """Every config object held back for some view because a proxy rejected it."""
        return self._holds.rejections()

    # -- StreamCallbacks -----------------------------------------------------------------------

    def on_rejected(self, rejection: RejectionReport) -> None:
        """A proxy NACKed a response (server's RejectionListener): hold back the objects it came
        from and build the view again now, at the same revision."""
        view = rejection.view
        if self._holds.on_rejected(rejection) and isinstance(view, ProxyView) and view in self._views:
            self._built.pop(view, None)  # not built at this revision any more: a full translation
            task = asyncio.ensure_future(self._translate(view))
            self._rebuilds.add(task)
            task.add_done_callback(self._rebuilds.discard)

    async def on_stream_open(self, stream_id: int, node: base_pb2.Node) -> Hashable:
        """Register the stream under its proxy's view; translate the view on its first use."""
        if not node.id:
            raise ValueError("node.id is empty: every proxy needs a node id")
        proxy = Proxy.from_node(node.id, MessageToDict(node.metadata))
        if self._context is None:
            async with self._lock:  # the first context: never two builds at once
                if self._context is None:
                    await self._new_context()
        context = self._context
        if context is None:
            raise ValueError("no PushContext could be built (see pilot's log)")
        # Registered before translating, so a push that runs meanwhile builds the view too and a
        # translation that ends after its last stream left is dropped (see _translate).
        view = self._join(stream_id, self._view_of(proxy, context))
        self._streams[stream_id] = _Reader(proxy, view)
        try:
            if not await self._translate(view) and self._cache.get_snapshot(view) is None:
                raise ValueError(f"no config could be built for view {view} (see pilot's log)")
        except BaseException:
            self.on_stream_closed(stream_id)  # refused or cancelled: the server will not call it
            raise
        log.debug("stream %d: proxy %s joined view %s", stream_id, proxy.id, view)
        return view

    def on_stream_closed(self, stream_id: int) -> None:
        reader = self._streams.pop(stream_id, None)
        if reader is None:
            return
        self._leave(stream_id, reader.view)

    def _join(self, stream_id: int, view: ProxyView) -> ProxyView:
        """Add ``stream_id`` to the readers of ``view``; returns the view object they share."""
        streams = self._views.get(view)
        if streams is None:
            streams = self._views[view] = set()
            self._view_keys[view] = view
        streams.add(stream_id)
        return self._view_keys[view]

    def _leave(self, stream_id: int, view: ProxyView) -> None:
        streams = self._views.get(view)
        if streams is not None:
            streams.discard(stream_id)
            if not streams:
                # Nobody reads this view any more: free its snapshot; it is rebuilt on next use.
                del self._views[view]
                del self._view_keys[view]
                self._drop(view)

    def _drop(self, view: ProxyView) -> None:
        self._built.pop(view, None)
        self._holds.forget(view)
        self._cache.clear_snapshot(view)
        log.debug("view %s has no streams left; snapshot dropped", view)

    # -- the push loop --------------------------------------------------------------------------

    def _on_config_event(self, event: ConfigEvent) -> None:
        self._event_revision = max(self._event_revision, event.revision)
        now = self._clock()
        self._debouncer.add(PushRequest.for_config(event.changed, start=now), now)
        self._wake.set()

    def request(self, request: PushRequest) -> None:
        """Queue a push through the debouncer (what a config event does)."""
        self._debouncer.add(request, self._clock())
        self._wake.set()

    async def run(self) -> None:
        """Push debounced requests forever, one at a time. Cancel to stop."""
        while True:
            now = self._clock()
            request = self._debouncer.due(now)
            if request is not None:
                if self._already_pushed(request):
                    log.debug("skipping a push: the current context already has %s", request.describe())
                else:
                    await self.push(request)
                continue  # Istio checks again as soon as a push returns
            deadline = self._debouncer.deadline()
            # No await between due() and clear(): an event can only arrive while we wait.
            self._wake.clear()
            timeout = None if deadline is None else max(0.0, deadline - now)
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                pass

    def _already_pushed(self, request: PushRequest) -> bool:
        """Config events the current context was built after (e.g. the initial load, pushed directly
        at start-up while its events sat in the debouncer) need no second push."""
        only_config = set(request.reasons) <= {CONFIG}
        return only_config and self._context is not None and self._revision >= self._event_revision

    async def push(self, request: PushRequest | None = None) -> PushStatus:
        """Build a PushContext from the store and a snapshot for every active view, now.

        Serialized: a second call waits for the first to finish.
        """
        if request is None:
            request = PushRequest(full=True, reasons={GLOBAL: 1}, start=self._clock())
        async with self._lock:
            return await self._push(request)

    async def _push(self, request: PushRequest) -> PushStatus:
        started = self._clock()
        metrics.debounce_time.observe(max(0.0, started - request.start))
        for reason, count in request.reasons.items():
            metrics.push_triggers.labels(reason).inc(count)
        context = await self._new_context()
        done = failed = 0
        moves: dict[int, ProxyView] = {}
        view_time = 0.0
        moved = 0
        if context is None:
            failed = len(self._views)  # every view keeps its snapshot from the previous context
        else:
            view_started = self._clock()
            moves = self._changed_views(context)
            view_time = self._clock() - view_started
            targets = dict.fromkeys(moves.values())
            self._incoming = set(targets)
            # Views every stream leaves are not translated again: they go once the streams moved.
            staying = {reader.view for sid, reader in self._streams.items() if sid not in moves}
            for view in dict.fromkeys([*(v for v in self._views if v in staying), *targets]):
                # A view may have lost its last stream while we yielded, or been built meanwhile by
                # a new stream that already saw this context.
                if (view not in self._views and view not in targets) or self._is_built(view, context):
                    continue
                if await self._translate(view):
                    done += 1
                else:
                    failed += 1
            self._incoming = set()
            moved = self._move(moves)
            for view in targets.keys() - self._views.keys():
                self._drop(view)  # built for streams that closed meanwhile
        duration = self._clock() - started
        metrics.push_time.observe(duration)
        self.push_count += 1
        status = PushStatus(
            number=self.push_count,
            version=self._context.version if self._context is not None else "",
            revision=self._revision,
            views=done,
            failed_views=failed,
            duration=duration,
            finished_at=time.time(),
            reasons=tuple(sorted(request.reasons.items())),
            moved_streams=moved,
            view_time=view_time,
        )
        self.last_push = status
        log.info(
            "push %d: revision %d, version %s, %d views (%d failed), %.1f ms, %s",
            status.number,
            status.revision,
            status.version,
            done,
            failed,
            duration * 1000,
            request.describe(),
        )
        return status

    async def _off_loop(self, work: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._worker, work)

    async def _new_context(self) -> VersionedContext | None:
        """One PushContext per push, from one store snapshot (translation never reads the live store).

        None when building it failed (a bug in pilot): logged and counted, the previous context stays.
        """
        snapshot = self._store.snapshot()
        translator = self._translator
        try:
            async with self._translating:
                context = await self._off_loop(lambda: translator.build_context(snapshot))
        except Exception:
            metrics.translation_errors.inc()
            log.exception(
                "building the PushContext at revision %d failed; keeping the previous one", snapshot.revision
            )
            return None
        self._context = context
        self._revision = snapshot.revision
        return context

    def _view_of(self, proxy: Proxy, context: VersionedContext) -> ProxyView:
        if isinstance(self._translator, ViewingTranslator):
            return self._translator.view_of(proxy, context)
        return proxy.view()

    def _changed_views(self, context: VersionedContext) -> dict[int, ProxyView]:
        """Every stream whose view under ``context`` differs from the one it reads, and its new view.

        Every stream's view is its view at ``_viewed_at`` (the context of the last push, or the one
        a newer stream opened at, which is the same or newer than it with the same views): when
        the translator knows that no view differs from that context to this one, none is computed
        again (1000 proxies cost 16 ms of the event loop per push at K=1000)."""
        older, self._viewed_at = self._viewed_at, context
        translator = self._translator
        if older is not None and isinstance(translator, StableViewsTranslator):
            if translator.same_views(older, context):
                return {}
        out: dict[int, ProxyView] = {}
        for stream_id, reader in self._streams.items():
            view = self._view_of(reader.proxy, context)
            if view != reader.view:
                out[stream_id] = view
        return out

    def _move(self, moves: dict[int, ProxyView]) -> int:
        """Move each stream to its new view, when that view has a snapshot (else it stays: a failed
        translation keeps a proxy on its last config). Returns how many moved."""
        moved = 0
        for stream_id, view in moves.items():
            reader = self._streams.get(stream_id)
            if reader is None or reader.view == view or self._cache.get_snapshot(view) is None:
                continue
            old = reader.view
            reader.view = view = self._join(stream_id, view)
            self.move_stream(stream_id, view)
            self._leave(stream_id, old)
            log.debug("stream %d: proxy %s moved from view %s to %s", stream_id, reader.proxy.id, old, view)
            moved += 1
        return moved

    def _is_built(self, view: ProxyView, context: VersionedContext) -> bool:
        built = self._built.get(view)
        return built is not None and built.version == context.version

    async def _translate(self, view: ProxyView) -> bool:
        """Build and publish one view's snapshot from the newest context, off the loop (unless it
        is built from it already); on a bug keep its old snapshot and say False."""
        async with self._translating:
            context = self._context
            if context is None:
                return False
            previous = self._cache.get_snapshot(view)
            if previous is not None and self._is_built(view, context):
                return True  # a push or another stream of the view built it while we waited
            return await self._translate_now(view, context, self._built.get(view), previous)

    async def _translate_now(
        self,
        view: ProxyView,
        context: VersionedContext,
        previous_context: VersionedContext | None,
        previous: Snapshot | None,
    ) -> bool:
        translator = self._translator
        held = self._holds.store_for(view, context)
        try:
            if held is not None:  # some objects are held back for this view: its own context
                context = await self._off_loop(lambda: translator.build_context(held))
            if (
                previous is not None
                and previous_context is not None
                and isinstance(translator, IncrementalTranslator)
            ):
                base = previous_context
                snapshot = await self._off_loop(
                    lambda: translator.update_snapshot(view, context, base, previous)
                )
            else:
                snapshot = await self._off_loop(lambda: translator.build_snapshot(view, context))
        except Exception:
            metrics.translation_errors.inc()
            log.exception(
                "translating view %s at version %s failed; it keeps its last snapshot", view, context.version
            )
            return False
        if view not in self._views and view not in self._incoming:
            return True  # its last stream left while it was translated: nobody reads it
        self._cache.set_snapshot(view, snapshot)
        self._built[view] = context
        self._holds.built(view, snapshot, context)
        return True


def _stay(stream_id: int, view: Hashable) -> None:
    """No server to tell (tests without one): the stream keeps reading its old key."""
