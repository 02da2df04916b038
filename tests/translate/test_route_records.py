"""Route configurations serialized from kept virtual hosts parse as their messages (templated
routes make the bytes differ from deterministic serialization: tests/translate/test_templated.py),
and an edit of one VirtualService re-serializes only the virtual hosts it routes."""

from __future__ import annotations

from pathlib import Path

import pytest
from envoy.config.route.v3 import route_pb2

from pilot.cache.snapshot import Resource
from pilot.config.kinds import VIRTUAL_SERVICE
from pilot.config.objects import ConfigKey
from pilot.translate.context import PushContext
from pilot.translate.generators import RDS
from pilot.translate.route_records import EncodedRouteConfiguration
from pilot.translate.routes import kept_configuration
from pilot.translate.snapshot import build_snapshot
from pilot.xds import types
from tests import factories
from tests.push import test_incremental as incremental
from tests.translate import test_pieces as pieces


@pytest.mark.parametrize("path", incremental.SCENARIOS, ids=lambda p: p.stem)
def test_encoded_route_configurations_parse_as_their_messages(path: Path) -> None:
    context = PushContext.build(factories.store_snapshot(factories.load_yaml(path), 1))
    for view in pieces.VIEWS:
        encoded = RDS.generate_encoded(view, context)
        messages = RDS.generate(view, context)
        assert [name for name, _ in encoded] == [name for name, _ in messages]
        for (name, made), (_, message) in zip(encoded, messages, strict=True):
            sent = Resource.from_message(types.ROUTE, name, made).unpack(route_pb2.RouteConfiguration())
            assert sent == message, (name, view)
            if isinstance(made, EncodedRouteConfiguration):
                assert made.message() == message
                assert made.virtual_host_names == tuple(vh.name for vh in message.virtual_hosts)
        snapshot = build_snapshot(view, context)
        assert {
            n: r.unpack(route_pb2.RouteConfiguration()) for n, r in snapshot.resources(types.ROUTE).items()
        } == dict(messages)


def test_a_route_edit_serializes_only_the_virtual_hosts_it_routes() -> None:
    objects = pieces._mesh(9)
    view = factories.sidecar("default")
    before = PushContext.build(factories.store_snapshot(objects, 1))
    scope = before.scope_of(view)
    old = kept_configuration(80, view, scope)
    assert old is not None and old.encoded.value  # serialized once, kept
    index = next(i for i, o in enumerate(objects) if o.key == ConfigKey(VIRTUAL_SERVICE, "default", "svc-0"))
    objects[index] = pieces._with_timeout(objects[index])
    after = PushContext.build(factories.store_snapshot(objects, 2), before)
    new = kept_configuration(80, view, after.scope_of(view))
    assert new is not None and new is not old
    edited = [n for n, o in zip(new.records, old.records, strict=True) if n is not o]
    # svc-0's own virtual host and the one port 80 lists for its host (istiod's rule for hosts
    # that are no service on the port; here the host is both, by its short name's two spellings).
    assert edited and all("svc-0." in record.name for record in edited)
    assert new.encoded.value != old.encoded.value
    fresh = kept_configuration(
        80, view, PushContext.build(factories.store_snapshot(objects, 2)).scope_of(view)
    )
    assert fresh is not None and fresh.encoded.value == new.encoded.value
