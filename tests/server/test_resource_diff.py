"""The per-push difference of a type's resources, computed once for every stream in step."""

from __future__ import annotations

from pilot.cache.snapshot import Resource, TypeResources
from pilot.server.resource_diff import diff
from pilot.xds import types
from tests.server.resources import cluster


def _typed(*clusters: object, previous: TypeResources | None = None) -> TypeResources:
    return TypeResources.build(
        types.CLUSTER, (Resource.from_message(types.CLUSTER, c.name, c) for c in clusters), previous
    )


def test_updated_and_removed_once_per_pair() -> None:
    old = _typed(cluster("a"), cluster("b"), cluster("c"))
    new = _typed(cluster("a"), cluster("b", 5000), cluster("d"), previous=old)
    found = diff(old, new)
    assert [r.name for r in found.updated] == ["b", "d"]  # a is unchanged (shared or equal)
    assert found.removed == ("c",)
    assert diff(old, new) is found  # the second stream gets the same answer, not a new walk
    assert diff(new, new).updated == () and diff(new, new).removed == ()
