"""pilot.cache.cache.SnapshotCache: the latest snapshot per key, and watchers told of later ones."""

from __future__ import annotations

import logging

import pytest

from pilot.cache.cache import SnapshotCache
from pilot.cache.snapshot import Snapshot


def snapshot(version: str) -> Snapshot:
    return Snapshot.from_messages(version, {})


def test_watchers_hear_later_snapshots_of_their_key_only() -> None:
    cache = SnapshotCache()
    cache.set_snapshot("view", snapshot("1"))
    seen: list[str] = []
    cache.watch("view", lambda s: seen.append(s.version))
    cache.set_snapshot("other", snapshot("x"))
    cache.set_snapshot("view", snapshot("2"))
    assert seen == ["2"]
    assert cache.get_snapshot("view") == snapshot("2")
    assert sorted(map(str, cache.keys())) == ["other", "view"]


def test_cancel_is_idempotent_and_forgets_the_key() -> None:
    cache = SnapshotCache()
    seen: list[str] = []
    cancel = cache.watch("view", lambda s: seen.append(s.version))
    other = cache.watch("view", lambda s: None)
    assert cache.watcher_count("view") == 2
    cancel()
    cancel()
    assert cache.watcher_count("view") == 1
    other()
    assert cache.watcher_count("view") == 0
    cache.set_snapshot("view", snapshot("1"))
    assert seen == []


def test_a_failing_watcher_does_not_stop_the_others(caplog: pytest.LogCaptureFixture) -> None:
    cache = SnapshotCache()
    seen: list[str] = []

    def broken(_: Snapshot) -> None:
        raise RuntimeError("broken watcher")

    cache.watch("view", broken)
    cache.watch("view", lambda s: seen.append(s.version))
    with caplog.at_level(logging.ERROR, logger="pilot.cache"):
        cache.set_snapshot("view", snapshot("1"))
    assert seen == ["1"]
    assert "watch callback for view failed" in caplog.text


def test_cleared_keys_have_no_snapshot() -> None:
    cache = SnapshotCache()
    cache.set_snapshot("view", snapshot("1"))
    cache.clear_snapshot("view")
    cache.clear_snapshot("never-set")
    assert cache.get_snapshot("view") is None
    assert cache.keys() == []
