"""``/debug/convergence?revision=R``: did the config of store revision R reach every proxy?

A proxy has ACKed revision R (or a later one) when all of these hold:

- its view's snapshot was built from revision R or later (the pusher's ``view_revisions``);
- the proxy holds that snapshot: for every type it subscribes to, its last response is ACKed (no
  response in flight, no NACK outstanding) and every resource it wants is held at the snapshot's
  version (``Connection.held``, what ``/debug/proxyz`` diffs);
- no config object edited at R or before is held back for its view because a proxy rejected it
  (pilot.push.holds): such a proxy runs an older version of that object, so the edit did not land.

Any other proxy is pending, with the reason: ``building`` (its view is not built from R yet),
``syncing`` (a response is not ACKed yet; also a proxy taking a revision later than R, until it
ACKs it), ``nacked`` (the proxy rejected a response and pilot could not trace it to an object) or
``held`` (with the objects held back, their files and lines and the proxy's error). Istio's
analogue is istiod's distribution tracking (``Reconciled`` in an object's status).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

from pilot.cache.snapshot import Snapshot
from pilot.debug.views import SYNC_TYPES
from pilot.server.status import ConnectionStatus

Json = dict[str, Any]
Held = Mapping[str, Mapping[str, str]]  # type URL -> name -> version the proxy holds


def holds_snapshot(conn: ConnectionStatus, held: Held, snapshot: Snapshot) -> str | None:
    """None when the proxy holds ``snapshot`` for every type it subscribes to; else why not
    (``syncing`` or ``nacked``)."""
    for _, _, type_url in SYNC_TYPES:
        status = conn.types.get(type_url)
        if status is None:
            continue  # not subscribed: nothing of this type is owed to it
        if status.nonce_sent and status.nonce_sent != status.nonce_acked:
            nack = status.last_nack
            return "nacked" if nack is not None and nack.nonce == status.nonce_sent else "syncing"
        current = snapshot.resources(type_url)
        has = held.get(type_url, {})
        wanted = current.keys() if status.wildcard else set(status.names) & current.keys()
        if any(has.get(name) != current[name].version for name in wanted):
            return "syncing"
        if status.wildcard and has.keys() - current.keys():
            return "syncing"  # a removal not sent or not ACKed yet
    return None


def _blocking(rejections: Sequence[Json], view: str, revision: int) -> list[Json]:
    """The objects held back for ``view`` whose rejected version is at or before ``revision`` (a
    removal, revision -1, always is)."""
    return [r for r in rejections if r["view"] == view and r["rejected_revision"] <= revision]


def convergence(
    revision: int,
    store_revision: int,
    connections: Sequence[ConnectionStatus],
    view_revisions: Mapping[str, int],
    rejections: Sequence[Json],
    proxy_state: Callable[[str], tuple[Held | None, Snapshot | None]],
) -> Json:
    """The answer for ``revision``; ``proxy_state(node_id)`` is what the proxy holds and its view's
    snapshot now. One entry per proxy (its newest stream)."""
    newest: dict[str, ConnectionStatus] = {}
    for conn in connections:  # oldest first: the last one of a node is its newest stream
        newest[conn.node_id] = conn
    acked: list[Json] = []
    pending: list[Json] = []
    for node_id, conn in sorted(newest.items()):
        built = view_revisions.get(conn.view)
        entry: Json = {"proxy": node_id, "view": conn.view, "built_revision": built}
        held, snapshot = proxy_state(node_id)
        blocking = _blocking(rejections, conn.view, revision)
        if blocking:
            reason: str | None = "held"
            entry["rejected_objects"] = blocking
        elif built is None or built < revision or held is None or snapshot is None:
            reason = "building"
        else:
            reason = holds_snapshot(conn, held, snapshot)
        if reason is None:
            acked.append(entry)
        else:
            pending.append({**entry, "reason": reason})
    return {
        "revision": revision,
        "store_revision": store_revision,
        "proxies": len(newest),
        "acked": len(acked),
        "acked_proxies": acked,
        "pending": pending,
    }


def state_reader(
    held_resources: Callable[[str], Held | None],
    find_view: Callable[[str], Hashable | None],
    get_snapshot: Callable[[Hashable], Snapshot | None],
) -> Callable[[str], tuple[Held | None, Snapshot | None]]:
    """``proxy_state`` for :func:`convergence` from the server and the cache."""

    def read(node_id: str) -> tuple[Held | None, Snapshot | None]:
        view = find_view(node_id)
        return held_resources(node_id), get_snapshot(view) if view is not None else None

    return read
