"""The per-push difference of a type's resources, computed once for every stream in step."""

from __future__ import annotations

import gc
import weakref

from pilot.cache.snapshot import Resource, TypeResources
from pilot.server.resource_diff import diff, wanted, wanted_changes, wanted_names
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


def test_what_a_subscription_wants_is_walked_once_per_subscription() -> None:
    typed = _typed(cluster("c"), cluster("a"), cluster("b"))
    names = frozenset({"b", "a", "nope"})
    found = wanted(typed, names)
    assert [r.name for r in found] == ["a", "b"]  # name order; absent names left out
    assert wanted(typed, names) is found  # every stream with this (interned) subscription shares it
    assert [r.name for r in wanted(typed, None)] == list(typed.resources)  # wildcard: the type's order


def test_a_namespaced_subscription_wants_the_resources_of_its_namespaces() -> None:
    typed = TypeResources.build(
        types.VIRTUAL_HOST,
        [Resource(name, "1", b"x") for name in ("80/b.example:80", "81/c.example:81", "80/a.example:80")],
    )
    assert [r.name for r in wanted(typed, frozenset({"80"}))] == ["80/a.example:80", "80/b.example:80"]


def test_the_memos_keep_no_old_resources_alive() -> None:
    old = _typed(cluster("a"), cluster("b"))
    new = _typed(cluster("a", 5000), cluster("b"), previous=old)
    names = frozenset({"a"})
    diff(old, new)
    wanted(old, names)
    gone = weakref.ref(old)
    del old
    gc.collect()
    assert gone() is None  # a push later, nothing holds the older snapshot's resources
    assert [r.name for r in wanted(new, names)] == ["a"]


def test_the_names_a_subscription_wants_are_one_set_per_subscription() -> None:
    typed = _typed(cluster("c"), cluster("a"), cluster("b"))
    names = frozenset({"b", "a", "nope"})
    found = wanted_names(typed, names)
    assert found == {"a", "b"}  # what wanted() sends, absent names left out
    assert wanted_names(typed, names) is found  # every stream of a storm records this one set
    assert wanted_names(typed, None) == set(typed.resources)


def test_what_a_stream_in_step_is_sent_is_filtered_once_per_subscription() -> None:
    old = _typed(cluster("a"), cluster("b"), cluster("c"))
    new = _typed(cluster("a", 5000), cluster("b"), cluster("d"), previous=old)
    names = frozenset({"a", "c"})
    found = wanted_changes(old, new, names)
    assert ([r.name for r in found[0]], found[1]) == (["a"], ("c",))  # only what it subscribes to
    assert wanted_changes(old, new, names) is found  # every stream of the view shares the answer
    every = wanted_changes(old, new, None)
    assert ([r.name for r in every[0]], every[1]) == (["a", "d"], ("c",))  # wildcard: all of it
