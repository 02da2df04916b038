"""pilot.push.holds: a rejection is traced to the objects that changed since the view's last
accepted build, held there, and cleared by the next edit of the object."""

from __future__ import annotations

import dataclasses

from pilot import metrics
from pilot.config.objects import ConfigObject
from pilot.push.holds import Holds
from pilot.server.callbacks import Rejection
from pilot.translate.context import PushContext
from pilot.translate.snapshot import build_snapshot
from pilot.xds import types
from tests import factories as f

VIEW = f.sidecar()


def vs(name: str, weight: int) -> ConfigObject:
    host = f"{name}.default.svc.cluster.local"
    return f.virtual_service(
        name,
        hosts=[name],
        http=[
            {
                "route": [
                    {"destination": {"host": host, "subset": "v1"}, "weight": weight},
                    {"destination": {"host": host, "subset": "v2"}, "weight": 100 - weight},
                ]
            }
        ],
    )


SERVICES = (f.http_service("a", port=9080), f.http_service("b", port=9080))


def build(holds: Holds, revision: int, *objects: ConfigObject) -> tuple[PushContext, object]:
    """The view built as the pusher builds it: held objects swapped in, the build recorded."""
    context = f.push_context(*SERVICES, *objects, revision=revision)
    held = holds.store_for(VIEW, context)
    if held is not None:
        context = PushContext.build(held)
    snapshot = build_snapshot(VIEW, context)
    holds.built(VIEW, snapshot, context)
    return context, snapshot


def accepted_then_edited(holds: Holds) -> tuple[ConfigObject, ConfigObject, ConfigObject, object]:
    """a1 and b1 built (accepted), then a2 and b1 built: (a1, a2, b1, that second snapshot)."""
    a1, b1 = vs("a", 90), vs("b", 90)
    build(holds, 1, a1, b1)
    a2 = dataclasses.replace(vs("a", 50), revision=2)
    _, snapshot = build(holds, 2, a2, b1)
    return a1, a2, b1, snapshot


def rds_rejection(snapshot, names=("9080",)) -> Rejection:
    return Rejection(
        VIEW, 1, "proxy-1", types.ROUTE, snapshot.type_version(types.ROUTE), tuple(names), "bad route"
    )


def test_the_changed_object_is_held_at_its_accepted_version_and_others_flow() -> None:
    holds = Holds(clock=lambda: 1000.0)
    a1, a2, _, rejected = accepted_then_edited(holds)
    assert holds.on_rejected(rds_rejection(rejected))
    [report] = holds.rejections()
    assert (report.key, report.resource, report.proxy, report.error) == (
        a2.key,
        "9080",
        "proxy-1",
        "bad route",
    )
    assert metrics.config_rejected_objects._value.get() == 1

    # Rebuilt: a held at a1; a new version of b goes through.
    b2 = vs("b", 20)
    context, _ = build(holds, 3, a2, b2)
    assert context.objects[a2.key] is a1 and context.objects[b2.key] is b2

    # An edit of a clears the hold.
    a3 = vs("a", 10)
    context, _ = build(holds, 4, a3, b2)
    assert context.objects[a3.key] is a3 and holds.rejections() == []
    assert metrics.config_rejected_objects._value.get() == 0


def test_an_object_without_an_accepted_version_is_left_out() -> None:
    holds = Holds()
    a1, b1 = vs("a", 90), vs("b", 90)
    _, first = build(holds, 1, a1, b1)  # the proxy's first config: nothing accepted before
    assert holds.on_rejected(rds_rejection(first))
    context, _ = build(holds, 1, a1, b1)
    assert a1.key not in context.objects and b1.key not in context.objects  # both came into the route
    assert {r.held_revision for r in holds.rejections()} == {None}


def test_a_rejection_naming_no_resource_holds_nothing() -> None:
    holds = Holds()
    *_, rejected = accepted_then_edited(holds)
    assert not holds.on_rejected(rds_rejection(rejected, names=()))
    assert holds.rejections() == []


def test_a_rejection_of_a_build_the_holds_superseded_changes_nothing() -> None:
    holds = Holds()
    _, a2, _, rejected = accepted_then_edited(holds)
    b2 = vs("b", 20)
    _, also_rejected = build(holds, 3, a2, b2)  # pushed before the first NACK arrived
    assert holds.on_rejected(rds_rejection(rejected))
    # The NACK of the next response (it still had a2) must not hold b back.
    assert not holds.on_rejected(rds_rejection(also_rejected))
    assert [r.key for r in holds.rejections()] == [a2.key]


def test_a_rejection_of_an_unknown_snapshot_holds_nothing() -> None:
    holds = Holds()
    _, snapshot = build(holds, 1, vs("a", 90))
    unknown = Rejection(VIEW, 1, "p", types.ROUTE, "not-a-version", ("9080",), "bad")
    assert not holds.on_rejected(unknown)
    assert not holds.on_rejected(dataclasses.replace(rds_rejection(snapshot), view=f.sidecar("other")))


def test_holds_outlive_the_views_streams() -> None:
    holds = Holds()
    a1, a2, b1, rejected = accepted_then_edited(holds)
    assert holds.on_rejected(rds_rejection(rejected))
    holds.forget(VIEW)
    context, _ = build(holds, 2, a2, b1)  # a proxy of the view comes back
    assert context.objects[a2.key] is a1
