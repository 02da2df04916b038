"""The subscription ledger's rules, without a stream: what differs, what a response leaves the
proxy holding, which responses an ACK or NACK settles, and the byte-bounded cache."""

from __future__ import annotations

from pilot.cache.snapshot import Resource, TypeResources
from pilot.server import ledger as rules
from pilot.server.bounded import BoundedCache
from pilot.server.ledger import Sent, TypeLedger
from pilot.xds import types


def typed(**versions: str) -> TypeResources:
    return TypeResources.build(types.ENDPOINT, [Resource(n, v, v.encode()) for n, v in versions.items()])


def sent(nonce: str, of: TypeResources, names: frozenset[str] | None = None) -> Sent:
    return Sent(nonce, of.version, of, names)


def test_a_proxy_in_step_holds_the_snapshot_itself_and_only_its_differences() -> None:
    ledger = TypeLedger(types.ENDPOINT, wildcard=True, names=frozenset())
    v1 = typed(a="1", b="1")
    updates, removed = rules.changes(ledger, v1, removals=True)
    assert [r.name for r in updates] == ["a", "b"] and removed == []
    rules.record(ledger, sent("1", v1), None, drops_removed=True, keep_pending=True)
    assert ledger.base is v1 and ledger.overrides == {}  # no name -> version map of its own
    assert rules.changes(ledger, v1, removals=True) == ([], [])

    v2 = typed(a="2", c="1")  # a changed, b gone, c new
    updates, removed = rules.changes(ledger, v2, removals=True)
    assert [(r.name, r.version) for r in updates] == [("a", "2"), ("c", "1")] and removed == ["b"]


def test_an_equal_rebuild_of_the_snapshot_replaces_the_one_held() -> None:
    ledger = TypeLedger(types.ENDPOINT, wildcard=True, names=frozenset())
    v1 = typed(a="1")
    rules.record(ledger, sent("1", v1), None, drops_removed=True, keep_pending=True)
    again = typed(a="1")
    assert again is not v1
    assert rules.changes(ledger, again, removals=True) == ([], [])
    assert ledger.base is again


def test_a_rejected_version_is_not_sent_and_the_proxy_keeps_what_it_had() -> None:
    ledger = TypeLedger(types.ENDPOINT, wildcard=False, names=frozenset({"a", "b"}))
    v1, v2 = typed(a="1", b="1"), typed(a="2", b="1")
    rules.record(ledger, sent("1", v1, frozenset({"a", "b"})), None, drops_removed=False, keep_pending=False)
    second = sent("2", v2, frozenset({"a"}))
    rules.record(ledger, second, None, drops_removed=False, keep_pending=False)
    rules.reject(ledger, second)
    assert ledger.is_rejected("a", "2") and ledger.rejected_nonce == "2"
    v3 = typed(a="2", b="3")
    updates, _ = rules.changes(ledger, v3)
    assert [r.name for r in updates] == ["b"]  # a's rejected version is not sent again
    rules.record(ledger, sent("3", v3, frozenset({"b"})), None, drops_removed=False, keep_pending=False)
    assert ledger.held_version("a") == "2"  # counted as applied, as the NACKed response was
    rules.accept(ledger, sent("4", typed(a="4"), frozenset({"a"})))
    assert not ledger.is_rejected("a", "2")


def test_settling_a_nonce_forgets_it_and_every_earlier_response() -> None:
    ledger = TypeLedger(types.ENDPOINT, wildcard=True, names=frozenset())
    responses = [sent(str(n), typed(a=str(n))) for n in range(1, 4)]
    for response in responses:
        rules.record(ledger, response, None, drops_removed=True, keep_pending=True)
    assert rules.settle(ledger, "2") is responses[1]
    assert ledger.pending == (responses[2],)
    assert rules.settle(ledger, "1") is None  # already settled: not in flight
    for n in range(4, 4 + rules.MAX_PENDING + 5):
        rules.record(ledger, sent(str(n), typed(a=str(n))), None, drops_removed=True, keep_pending=True)
    assert len(ledger.pending) == rules.MAX_PENDING
    # State of the world: the newest response supersedes every earlier one.
    rules.record(ledger, sent("x", typed(a="x")), None, drops_removed=False, keep_pending=False)
    assert [s.nonce for s in ledger.pending] == ["x"]


def test_newly_subscribed_names_are_held_as_nothing() -> None:
    ledger = TypeLedger(types.ENDPOINT, wildcard=False, names=frozenset({"a"}))
    v1 = typed(a="1", b="1")
    rules.record(ledger, sent("1", v1, frozenset({"a"})), None, drops_removed=False, keep_pending=False)
    rules.forget(ledger, "b")
    ledger.names = frozenset({"a", "b"})
    ledger.synced_with = None
    updates, _ = rules.changes(ledger, v1)
    assert [r.name for r in updates] == ["b"]


def test_bounded_cache_evicts_least_recently_used_by_entries_and_bytes() -> None:
    evicted: list[str] = []
    cache: BoundedCache[str, bytes] = BoundedCache(3, 10, len, lambda key, _: evicted.append(key))
    cache.put("a", b"1234")
    cache.put("b", b"1234")
    assert cache.get("a") == b"1234"  # a is now the most recently used
    cache.put("c", b"12")
    assert cache.bytes == 10 and not evicted
    cache.put("d", b"1")  # over 3 entries: b, the least recently used, goes
    assert evicted == ["b"] and len(cache) == 3 and cache.bytes == 7
    cache.put("e", b"x" * 50)  # alone over the byte bound: it stays, everything else goes
    assert list(evicted) == ["b", "a", "c", "d"] and len(cache) == 1 and cache.bytes == 50
    assert cache.pop("e") == b"x" * 50 and cache.bytes == 0
