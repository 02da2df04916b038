"""One ADS stream as the server's registry sees it: who the node is, which view (cache key) it
reads, and per type URL its :class:`~pilot.server.ledger.TypeLedger`.

A connection is mutated only by its own stream's tasks, all on one event loop; anyone else
(``/debug/syncz``) reads the frozen :class:`~pilot.server.status.ConnectionStatus` it gives.
"""

from __future__ import annotations

import time
from collections.abc import Hashable
from dataclasses import dataclass, field

from pilot.server.ledger import TypeLedger
from pilot.server.status import Backlog, ConnectionStatus, NackStatus, TypeStatus

__all__ = ["Backlog", "Connection", "ConnectionStatus", "NackStatus", "TypeStatus"]


@dataclass(slots=True, eq=False)
class Connection:
    """One ADS stream. Created after the first request identified the node."""

    stream_id: int
    node_id: str
    peer: str
    view: Hashable
    protocol: str
    identity: str = ""  # NS/SA the stream authenticated as on the secure port; "" on the plain port
    connected_at: float = field(default_factory=time.time)
    types: dict[str, TypeLedger] = field(default_factory=dict)
    # The number of the last nonce sent on this stream. Nonces are numbered by one counter per
    # server (pilot.server.responses) and only grow on a stream, so each is unique on it.
    # https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol#when-to-send-an-update
    last_nonce: int = 0

    def status(self) -> ConnectionStatus:
        return ConnectionStatus(
            stream_id=self.stream_id,
            node_id=self.node_id,
            peer=self.peer,
            connected_at=self.connected_at,
            view=str(self.view),
            protocol=self.protocol,
            identity=self.identity,
            types={url: _status(ledger) for url, ledger in self.types.items()},
        )

    def held(self) -> dict[str, dict[str, str]]:
        """Per type URL, the version of each resource the proxy holds as the stream last brought it
        in line (sent and not rejected; ACKed once the type's last nonce is): for per-resource
        diffs in ``/debug/proxyz``. A copy: safe to keep."""
        out: dict[str, dict[str, str]] = {}
        for url, ledger in self.types.items():
            names = {*(ledger.base.resources if ledger.base is not None else ()), *ledger.overrides}
            held = {name: ledger.held_version(name) for name in sorted(names) if ledger.wants(name)}
            out[url] = {name: version for name, version in held.items() if version is not None}
        return out


def _status(ledger: TypeLedger) -> TypeStatus:
    return TypeStatus(
        type_url=ledger.type_url,
        wildcard=ledger.wildcard,
        names=tuple(sorted(ledger.names)),
        version_sent=ledger.version_sent,
        nonce_sent=ledger.nonce_sent,
        version_acked=ledger.version_acked,
        nonce_acked=ledger.nonce_acked,
        last_nack=ledger.last_nack,
        last_sent_at=ledger.sent_at,
    )
