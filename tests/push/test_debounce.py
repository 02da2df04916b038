"""The debouncer with literal times: no clock, no sleeps (Istio's TestDebounce, without timers)."""

import pytest

from pilot.config.objects import ConfigKey
from pilot.push.debounce import Debouncer
from pilot.push.request import PushRequest


def key(name: str) -> ConfigKey:
    return ConfigKey("VirtualService", "default", name)


def config(name: str, start: float) -> PushRequest:
    return PushRequest.for_config([key(name)], start=start)


def test_nothing_pending_is_never_due():
    debouncer = Debouncer(after=0.1, max_wait=10)
    assert debouncer.deadline() is None
    assert debouncer.due(100.0) is None


def test_burst_is_merged_into_one_push_after_the_quiet_period():
    # Binary fractions, so the sums are exact.
    debouncer = Debouncer(after=0.25, max_wait=10)
    debouncer.add(config("a", 1.0), 1.0)
    debouncer.add(config("b", 1.125), 1.125)
    debouncer.add(config("a", 1.1875), 1.1875)
    assert debouncer.events == 3
    # The timer armed by the first request fires at 1.25, but the burst is not quiet yet.
    assert debouncer.deadline() == 1.25
    assert debouncer.due(1.25) is None
    # Re-armed for the rest of the quiet window: last request + after.
    assert debouncer.deadline() == 1.4375
    assert debouncer.due(1.4) is None
    pushed = debouncer.due(1.4375)
    assert pushed is not None
    assert pushed.changed == {key("a"), key("b")}
    assert dict(pushed.reasons) == {"config": 3}
    assert pushed.start == 1.0
    assert pushed.full


def test_due_exactly_at_the_deadline_pushes_despite_float_rounding():
    debouncer = Debouncer(after=0.1, max_wait=10)
    debouncer.add(config("a", 1.08), 1.08)
    deadline = debouncer.deadline()
    assert deadline is not None
    assert debouncer.due(deadline) is not None


def test_a_single_request_waits_for_the_quiet_period():
    debouncer = Debouncer(after=0.1, max_wait=10)
    debouncer.add(config("a", 5.0), 5.0)
    assert debouncer.due(5.0) is None
    assert debouncer.due(5.099) is None
    assert debouncer.due(5.1) is not None


def test_before_the_timer_fires_nothing_is_due_even_if_quiet_long_enough():
    # Istio only evaluates the conditions when its timer fires; the timer is the deadline.
    debouncer = Debouncer(after=1.0, max_wait=10)
    debouncer.add(config("a", 0.0), 0.0)
    assert debouncer.due(0.5) is None
    assert debouncer.deadline() == 1.0


def simulate(debouncer: Debouncer, arrivals: list[float], until: float) -> list[tuple[float, PushRequest]]:
    """Pusher.run's loop in virtual time: wake at the next arrival or the deadline, whichever is first."""
    pushes = []
    pending = sorted(arrivals)
    now = 0.0
    while now <= until:
        deadline = debouncer.deadline()
        next_arrival = pending[0] if pending else None
        candidates = [t for t in (deadline, next_arrival) if t is not None]
        if not candidates:
            break
        now = min(candidates)
        if next_arrival is not None and next_arrival == now:
            pending.pop(0)
            debouncer.add(PushRequest.for_config([key(f"at{now}")], start=now), now)
        request = debouncer.due(now)
        if request is not None:
            pushes.append((now, request))
    return pushes


def test_max_wait_bounds_a_continuous_stream():
    debouncer = Debouncer(after=0.25, max_wait=2.0)
    # A request every 1/8 s for 5 s: never quiet for 1/4 s.
    arrivals = [i / 8 for i in range(40)]
    pushes = simulate(debouncer, arrivals, until=10)
    times = [t for t, _ in pushes]
    # The first timer tick at or after first + max_wait pushes (Istio re-arms every `after`).
    assert 2.0 <= times[0] <= 2.25
    assert pushes[0][1].start == 0.0
    # The next burst starts after that push and is again bounded by max_wait...
    assert pushes[1][1].start > times[0]
    assert times[1] - pushes[1][1].start <= 2.25
    # ... and the tail is pushed once the stream stops (last arrival 4.875, quiet 0.25 later).
    assert times[-1] == 4.875 + 0.25
    # Every request was pushed exactly once.
    assert sum(r.reasons["config"] for _, r in pushes) == len(arrivals)


def test_sparse_requests_are_pushed_one_by_one():
    debouncer = Debouncer(after=0.25, max_wait=2.0)
    pushes = simulate(debouncer, [1.0, 3.0, 5.0], until=10)
    assert [t for t, _ in pushes] == [1.25, 3.25, 5.25]


def test_state_is_reset_after_a_push():
    debouncer = Debouncer(after=0.1, max_wait=1.0)
    debouncer.add(config("a", 0.0), 0.0)
    assert debouncer.due(0.1) is not None
    assert debouncer.deadline() is None
    assert debouncer.events == 0
    assert debouncer.due(5.0) is None
    # A new burst starts its own timer and its own max_wait window.
    debouncer.add(config("b", 7.0), 7.0)
    assert debouncer.deadline() == pytest.approx(7.1)
    pushed = debouncer.due(7.1)
    assert pushed is not None
    assert pushed.changed == {key("b")}
    assert dict(pushed.reasons) == {"config": 1}


def test_timer_that_fired_during_a_push_is_acted_on_when_the_push_returns():
    # The caller does not call due() while pushing; it calls it when the push returns.
    debouncer = Debouncer(after=0.1, max_wait=10)
    debouncer.add(config("a", 0.0), 0.0)
    assert debouncer.due(2.0) is not None  # pushed late, as if the previous push was slow
    debouncer.add(config("b", 2.5), 2.5)  # arrives during that push
    pushed = debouncer.due(4.0)  # the push returned at 4.0: long quiet, push right away
    assert pushed is not None and pushed.changed == {key("b")}


def test_zero_after_pushes_at_once():
    debouncer = Debouncer(after=0.0, max_wait=0.0)
    debouncer.add(config("a", 3.0), 3.0)
    assert debouncer.deadline() == 3.0
    assert debouncer.due(3.0) is not None


def test_rejects_bad_settings():
    with pytest.raises(ValueError):
        Debouncer(after=1.0, max_wait=0.5)
    with pytest.raises(ValueError):
        Debouncer(after=-1, max_wait=1)


def test_push_request_merge_returns_a_new_value():
    a = PushRequest(full=False, changed=frozenset({key("a")}), reasons={"config": 1}, start=2.0)
    b = PushRequest(full=True, changed=frozenset({key("b")}), reasons={"config": 2, "proxy": 1}, start=1.0)
    merged = a.merge(b)
    assert merged == PushRequest(
        full=True, changed=frozenset({key("a"), key("b")}), reasons={"config": 3, "proxy": 1}, start=1.0
    )
    # Inputs are untouched and immutable.
    assert dict(a.reasons) == {"config": 1} and not a.full
    assert dict(b.reasons) == {"config": 2, "proxy": 1}
    with pytest.raises(TypeError):
        a.reasons["config"] = 5  # type: ignore[index]
    assert hash(a) != hash(merged) or a != merged
    assert "config x3" in merged.describe()


def test_push_request_freezes_the_callers_dict():
    reasons = {"config": 1}
    request = PushRequest(full=True, reasons=reasons)
    reasons["config"] = 9
    assert dict(request.reasons) == {"config": 1}
