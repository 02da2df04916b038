"""Istio's distribution tracking: of the proxies that use a config object, how many run its current
version (pilot/pkg/status/distribution in istiod; its ``Reconciled`` condition reads "N/M proxies up
to date.").

A proxy is up to date at store revision R when its stream has sent it the newest snapshot of its
view, built at R or later, and the proxy has ACKed every response of the types that snapshot holds
(the last nonce sent is the last nonce ACKed, per type, the rule ``istioctl proxy-status`` calls
SYNCED). An object at revision O is
up to date on that proxy when R >= O. A proxy uses an object when some resource of its snapshot came
from it (``Snapshot.origins``, pilot.translate.provenance). A proxy in the middle of a push counts as
not up to date for every object it uses until it ACKs: istiod's reporter, which compares each
proxy's ACKed push version with each object's version, says the same of it.

/debug/convergence (pilot.debug.convergence) answers the same question for one revision with a
finer rule: it also compares every resource the proxy holds with the snapshot's. That copies each
proxy's held versions, which is fine for one request and too much for every proxy every second;
here the stream's nonces and backlog say it (ACKed what was sent, and nothing newer waiting).

Everything here reads frozen values (the server's ``ConnectionStatus``, cached snapshots) through
structural types: the server, the cache and the pusher are wired in by app.py.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from pilot.cache.snapshot import Snapshot
from pilot.config.objects import ConfigKey, ConfigObject


class TypeSync(Protocol):
    """One type of one stream (``pilot.server.status.TypeStatus``, structurally)."""

    @property
    def nonce_sent(self) -> str: ...
    @property
    def nonce_acked(self) -> str: ...


class StreamSync(Protocol):
    """One stream (``pilot.server.status.ConnectionStatus``, structurally)."""

    @property
    def stream_id(self) -> int: ...
    @property
    def node_id(self) -> str: ...
    @property
    def types(self) -> Mapping[str, TypeSync]: ...


class StreamBacklog(Protocol):
    """What a stream has not written yet (``pilot.server.status.Backlog``, structurally)."""

    @property
    def pending_snapshots(self) -> int: ...
    @property
    def writing(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class ProxyProgress:
    """One proxy: the store revision it runs (None: it has not ACKed its view's newest snapshot) and
    the objects its config came from."""

    node_id: str
    revision: int | None
    uses: frozenset[ConfigKey]


@dataclass(frozen=True, slots=True)
class Progress:
    """Of the proxies that use one object, how many run its current version."""

    acked: int
    total: int

    @property
    def complete(self) -> bool:
        return self.acked == self.total

    def __str__(self) -> str:
        return f"{self.acked}/{self.total} proxies up to date."


def proxy_progress(
    streams: Iterable[StreamSync],
    views: Mapping[int, Hashable],
    snapshot_of: Callable[[Hashable], Snapshot | None],
    backlog_of: Callable[[int], StreamBacklog | None],
) -> list[ProxyProgress]:
    """Every open stream's proxy (``views``: the view each stream reads, by stream id)."""
    uses_of: dict[int, frozenset[ConfigKey]] = {}  # by snapshot identity: views share snapshots
    out = []
    for stream in streams:
        view = views.get(stream.stream_id)
        snapshot = snapshot_of(view) if view is not None else None
        if snapshot is None:
            continue  # not registered yet, or closing: no config to speak of
        uses = uses_of.get(id(snapshot))
        if uses is None:
            uses = uses_of[id(snapshot)] = _keys(snapshot)
        backlog = backlog_of(stream.stream_id)
        idle = backlog is None or (backlog.pending_snapshots == 0 and not backlog.writing)
        # Of the types its snapshot holds (a request for a type it does not hold is answered empty,
        # and says nothing of the config).
        held = [t for type_url, t in stream.types.items() if type_url in snapshot.by_type]
        acked = all(t.nonce_sent == t.nonce_acked for t in held)
        revision = _revision(snapshot) if idle and acked and held else None
        out.append(ProxyProgress(stream.node_id, revision, uses))
    return out


def progress(
    proxies: Iterable[ProxyProgress],
    objects: Mapping[ConfigKey, ConfigObject],
    held: Mapping[ConfigKey, frozenset[str]] | None = None,
) -> dict[ConfigKey, Progress]:
    """Every object's progress; an object no proxy uses is 0/0 (complete, as in Istio). ``held``: the
    node ids that rejected each object (pilot.push.holds): they run an older version of it, whatever
    revision they ACKed."""
    held = held or {}
    counts: dict[ConfigKey, list[int]] = {key: [0, 0] for key in objects}
    # Proxies of one view share one ``uses`` set: count each (set, revision) once, times its proxies.
    groups: dict[tuple[int, int | None], list[ProxyProgress]] = {}
    for proxy in proxies:
        groups.setdefault((id(proxy.uses), proxy.revision), []).append(proxy)
    for (_, revision), members in groups.items():
        size = len(members)
        for key in members[0].uses:
            count = counts.get(key)
            if count is None:
                continue
            count[1] += size
            if revision is not None and revision >= objects[key].revision:
                count[0] += size
                rejecting = held.get(key)
                if rejecting:
                    count[0] -= sum(1 for proxy in members if proxy.node_id in rejecting)
    return {key: Progress(acked, total) for key, (acked, total) in counts.items()}


def _keys(snapshot: Snapshot) -> frozenset[ConfigKey]:
    return frozenset(
        key
        for names in snapshot.origins.values()
        for keys in names.values()
        for key in keys
        if isinstance(key, ConfigKey)
    )


def _revision(snapshot: Snapshot) -> int | None:
    try:
        return int(snapshot.version)
    except ValueError:  # a snapshot not built from a PushContext (tests, hand-made)
        return None


__all__ = [
    "Progress",
    "ProxyProgress",
    "StreamBacklog",
    "StreamSync",
    "TypeSync",
    "progress",
    "proxy_progress",
]
