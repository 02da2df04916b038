"""Config objects translation could not take as written, as the debug endpoints show them: what each
view's Snapshot says (``Snapshot.problems``, filled by pilot.translate.problems), gathered from the
cache per object with the reasons and the views that hold the fail-closed result.

``/debug/configz`` shows them on their objects (``untranslated``) and in a list of their own;
``/debug/proxyz`` on each proxy whose view they apply to.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Any

from pilot.cache.cache import SnapshotCache
from pilot.cache.snapshot import Snapshot
from pilot.config.objects import ConfigKey

Json = dict[str, Any]


def _entry(key: Hashable) -> Json:
    if isinstance(key, ConfigKey):
        return {"key": str(key), "kind": key.kind, "namespace": key.namespace, "name": key.name}
    return {"key": str(key), "kind": None, "namespace": None, "name": None}


def untranslated(snapshots: Iterable[tuple[Hashable, Snapshot]]) -> list[Json]:
    """One entry per config object some view could not translate as written: its key, the reasons
    (each once) and the views (by str) whose snapshot says so, sorted by key."""
    found: dict[str, Json] = {}
    for view, snapshot in snapshots:
        for key, reasons in snapshot.problems.items():
            entry = found.setdefault(str(key), {**_entry(key), "reasons": [], "views": [], "version": ""})
            entry["reasons"] += [reason for reason in reasons if reason not in entry["reasons"]]
            entry["views"].append(str(view))
            entry["version"] = max(entry["version"], snapshot.version, key=_version_order)
    for entry in found.values():
        entry["views"].sort()
    return [found[key] for key in sorted(found)]


def _version_order(version: str) -> tuple[int, str]:
    # Snapshot versions are store revisions (PushContext.version); newest first among equals.
    return (int(version), version) if version.isdigit() else (-1, version)


def of_snapshot(snapshot: Snapshot | None) -> list[Json]:
    """The objects one proxy's snapshot could not take, with the reasons (``/debug/proxyz``)."""
    if snapshot is None:
        return []
    return [
        {**_entry(key), "reasons": list(reasons)}
        for key, reasons in sorted(snapshot.problems.items(), key=lambda item: str(item[0]))
    ]


def in_cache(cache: SnapshotCache) -> list[Json]:
    """``untranslated`` over every view's snapshot the cache holds now."""
    found = ((key, cache.get_snapshot(key)) for key in cache.keys())
    return untranslated((key, snapshot) for key, snapshot in found if snapshot is not None)
