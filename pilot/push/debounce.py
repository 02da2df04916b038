"""Debouncer: Istio's push debounce as a pure state machine driven with explicit times.

Istio's ``debounce`` loop (pilot/pkg/xds/discovery.go) does, in our words:

1. The first request of a burst arms a timer for ``after`` and records the burst start.
2. Every later request records "last request time" and merges into the pending request.
3. When the timer fires, push if the quiet time ``now - last >= after`` or the burst age
   ``now - first >= max_wait``; otherwise re-arm the timer for the rest of the quiet window
   (``last + after``).
4. A push starts only after the previous one returned (the caller's loop, see ``Pusher.run``):
   a timer that fires during a push is acted on when the push finishes, by calling ``due`` then.

Nothing here sleeps or reads a clock: the caller passes ``now`` and sleeps until ``deadline()``.
Not thread-safe; one event loop owns it.
"""

from __future__ import annotations

from pilot.push.request import PushRequest
from pilot.settings import check_debounce


class Debouncer:
    def __init__(self, after: float, max_wait: float) -> None:
        check_debounce(after, max_wait)
        self._after = after
        self._max_wait = max_wait
        self._pending: PushRequest | None = None
        self._first = 0.0  # when the burst's first request arrived
        self._last = 0.0  # when its latest request arrived
        self._timer = 0.0  # when the (single) timer fires; meaningful only while pending
        self._events = 0

    @property
    def pending(self) -> PushRequest | None:
        return self._pending

    @property
    def events(self) -> int:
        """Requests merged into the pending one (Istio's debouncedEvents)."""
        return self._events

    def add(self, request: PushRequest, now: float) -> None:
        """A request arrived at ``now``; merge it into the pending one."""
        self._last = now
        if self._pending is None:
            self._first = now
            self._timer = now + self._after
            self._pending = request
        else:
            self._pending = self._pending.merge(request)
        self._events += 1

    def due(self, now: float) -> PushRequest | None:
        """The merged request if it should be pushed at ``now`` (and reset), else None.

        Before the timer fires this is always None; when it has fired and the burst is neither
        quiet nor too old, the timer is re-armed for ``last + after`` (Istio's rule 3).
        """
        if self._pending is None or now < self._timer:
            return None
        # Compared as sums, the way the timer is computed, so a due() exactly at deadline() pushes
        # (``now - last >= after`` can be false there by float rounding and spin the caller).
        if now >= self._first + self._max_wait or now >= self._last + self._after:
            request = self._pending
            self._pending = None
            self._events = 0
            return request
        self._timer = self._last + self._after
        return None

    def deadline(self) -> float | None:
        """When to call ``due`` next: the timer, or None when nothing is pending."""
        return self._timer if self._pending is not None else None
