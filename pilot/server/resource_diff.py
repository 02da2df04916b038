"""What changed between two versions of one type's resources, computed once and shared by every
stream that is in step with the older one; and everything one subscription wants of a type, for
the streams that hold nothing yet (a connect storm: 1000 proxies of one view subscribing to the
same 3000 clusters).

A push brings each stream of a view from the same ``TypeResources`` to the same newer one; a stream
that holds exactly the older one (no overrides) needs only the resources whose version changed,
and then only those it wants. Walking every resource per stream costs O(resources) per proxy
(3000 assignments, or 1000 VHDS virtual hosts, at K=1000); the walk is done once per pair here.
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from dataclasses import dataclass
from typing import Generic, TypeVar

from pilot.cache.snapshot import Resource, TypeResources
from pilot.xds import types

__all__ = ["Diff", "diff", "wanted", "wanted_changes", "wanted_names"]

_MAX_ENTRIES = 64  # (old, new) pairs remembered: a few per view in flight
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Diff:
    """``new``'s resources not in ``old`` at their version (in ``new``'s order), and the names of
    ``old`` that ``new`` lacks (sorted)."""

    updated: tuple[Resource, ...]
    removed: tuple[str, ...]


class _Memo(Generic[T]):
    """Answers keyed by the identity of two objects, the newest ``_MAX_ENTRIES``, none past the
    life of either: an entry goes as soon as one of its objects is collected (a weak reference
    watches it), so an id is never reused while an entry names it, and the memo keeps no old
    snapshot's resources alive (nor, through them, the encoded selections and responses that go
    with them). What cannot be referenced weakly (an interned subscription, None) is held."""

    def __init__(self) -> None:
        self._entries: OrderedDict[tuple[int, int], tuple[tuple[object, ...], T]] = OrderedDict()

    def get(self, first: object, second: object) -> T | None:
        key = (id(first), id(second))
        found = self._entries.get(key)
        if found is None:
            return None
        self._entries.move_to_end(key)
        return found[1]

    def put(self, first: object, second: object, answer: T) -> T:
        key = (id(first), id(second))
        held: list[object] = []
        for part in (first, second):
            try:
                weakref.finalize(part, self._entries.pop, key, None)
            except TypeError:
                held.append(part)
        self._entries[key] = (tuple(held), answer)
        if len(self._entries) > _MAX_ENTRIES:
            self._entries.popitem(last=False)
        return answer


_diffs: _Memo[Diff] = _Memo()
_wanted: _Memo[tuple[Resource, ...]] = _Memo()
_wanted_names: _Memo[frozenset[str]] = _Memo()
# Per (old, new): per subscription, what wanted_changes answers.
_wanted_changes: _Memo[dict[frozenset[str] | None, tuple[tuple[Resource, ...], tuple[str, ...]]]] = _Memo()


def diff(old: TypeResources, new: TypeResources) -> Diff:
    """The difference from ``old`` to ``new``, memoized by identity. Event-loop only."""
    found = _diffs.get(old, new)
    if found is not None:
        return found
    before = old.resources
    updated = tuple(
        resource
        for name, resource in new.resources.items()
        if (held := before.get(name)) is not resource and (held is None or held.version != resource.version)
    )
    removed = tuple(sorted(before.keys() - new.resources.keys()))
    return _diffs.put(old, new, Diff(updated, removed))


def wanted(typed: TypeResources, names: frozenset[str] | None) -> tuple[Resource, ...]:
    """Every resource of ``typed`` a subscription wants: all of them in ``typed``'s order for a
    wildcard (``names`` None); else those ``names`` names (for namespaced types, VHDS: those in a
    named namespace) in name order. Memoized by the identity of both (subscriptions are interned,
    see selections.NameSets). Event-loop only."""
    found = _wanted.get(typed, names)
    if found is not None:
        return found
    resources = typed.resources
    result: tuple[Resource, ...]
    if names is None:
        result = tuple(resources.values())
    elif typed.type_url in types.NAMESPACED_TYPES:
        result = tuple(sorted((r for n, r in resources.items() if types.namespace_of(n) in names), key=_name))
    else:
        result = tuple(resources[n] for n in sorted(names) if n in resources)
    return _wanted.put(typed, names, result)


def wanted_changes(
    old: TypeResources, new: TypeResources, names: frozenset[str] | None
) -> tuple[tuple[Resource, ...], tuple[str, ...]]:
    """What a stream in step with ``old`` (no overrides, nothing rejected) is sent of ``new``: the
    updated resources its subscription (``names``, None: wildcard) wants, in ``new``'s order for a
    wildcard and else in name order, and the removed names it wants (sorted). Memoized by the
    identity of all three, so the streams of a view filter and sort once per push, not each.
    Event-loop only."""
    by_names = _wanted_changes.get(old, new)
    if by_names is None:
        by_names = _wanted_changes.put(old, new, {})
    found = by_names.get(names)
    if found is not None:
        return found
    changed = diff(old, new)
    if names is None:
        found = (changed.updated, changed.removed)
    else:
        namespaced = new.type_url in types.NAMESPACED_TYPES

        def wants(name: str) -> bool:
            return name in names or (namespaced and types.namespace_of(name) in names)

        updated = sorted((r for r in changed.updated if wants(r.name)), key=_name)
        found = (tuple(updated), tuple(n for n in changed.removed if wants(n)))
    by_names[names] = found
    return found


def wanted_names(typed: TypeResources, names: frozenset[str] | None) -> frozenset[str]:
    """The names of :func:`wanted`'s resources, one set shared by every stream that is sent them
    (a delta response records the names it carried: 3000 clusters per proxy in a storm at K=1000).
    Memoized like :func:`wanted`. Event-loop only."""
    found = _wanted_names.get(typed, names)
    if found is not None:
        return found
    return _wanted_names.put(typed, names, frozenset(r.name for r in wanted(typed, names)))


def _name(resource: Resource) -> str:
    return resource.name
