"""What a NACK blames: the resources of a rejected response that failed, and sending the others again."""

from __future__ import annotations

from pilot.cache.snapshot import Resource, TypeResources
from pilot.server import ledger as rules
from pilot.server import rejections
from pilot.server.ledger import Sent, TypeLedger
from pilot.xds import types


def sent(nonce: str, of: TypeResources, names: frozenset[str] | None = None) -> Sent:
    return Sent(nonce, of.version, of, names)


def test_rejected_names_are_the_one_resource_carried_or_those_the_error_names() -> None:
    listeners = TypeResources.build(
        types.LISTENER, [Resource(n, "1", b"x") for n in ("0.0.0.0_80", "0.0.0.0_8080", "0.0.0.0_9080")]
    )
    one = Sent("1", listeners.version, listeners, frozenset({"0.0.0.0_80"}))
    assert rejections.rejected_names(one, "anything at all") == ("0.0.0.0_80",)
    every = Sent("2", listeners.version, listeners, None)
    envoy = "Error adding/updating listener(s) 0.0.0.0_8080: duplicate matcher; 0.0.0.0_9080: bad"
    assert rejections.rejected_names(every, envoy) == ("0.0.0.0_8080", "0.0.0.0_9080")
    # "0.0.0.0_80" is inside "0.0.0.0_8080" but never named as a whole: not rejected.
    assert rejections.rejected_names(every, "no resource named here") == ()
    routes = TypeResources.build(types.ROUTE, [Resource(n, "1", b"x") for n in ("80", "100")])
    both = Sent("3", routes.version, routes, None)
    assert rejections.rejected_names(both, "RE2 program size of 180 > max program size of 1000") == ()


def test_rejected_names_are_those_holding_a_value_the_error_quotes() -> None:
    routes = TypeResources.build(
        types.ROUTE, [Resource("80", "1", b"regex /(ab|cd){9} here"), Resource("90", "1", b"prefix /a")]
    )
    both = Sent("1", routes.version, routes, None)
    envoy = "regex '/(ab|cd){9}' RE2 program size of 45 > max program size of 20 set for the error level"
    assert rejections.rejected_names(both, envoy) == ("80",)
    assert rejections.rejected_names(both, "regex 'nowhere' is bad") == ()


def test_acquitted_resources_of_a_nacked_response_are_sent_again() -> None:
    ledger = TypeLedger(types.ROUTE, wildcard=False, names=frozenset({"80", "90"}))
    v1 = TypeResources.build(types.ROUTE, [Resource("80", "bad", b"x"), Resource("90", "new", b"y")])
    rejected = sent("1", v1)
    rules.record(ledger, rejected, None, drops_removed=False, keep_pending=False)
    rules.reject(ledger, rejected)
    rejections.acquit(ledger, rejected, ["80"])
    assert ledger.is_rejected("80", "bad") and not ledger.is_rejected("90", "new")
    updates, _ = rules.changes(ledger, v1)
    assert [r.name for r in updates] == ["90"]  # the proxy may have dropped it with the rest
