"""Read-only status of the ADS server's streams: what ``/debug/syncz`` and tests read.

A stream's tasks own its mutable state (:mod:`pilot.server.ledger`); anyone else reads these frozen
values, which are safe to keep and serialize. Both protocols report the same status.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MAX_DETAIL_BYTES", "Backlog", "ConnectionStatus", "NackStatus", "TypeStatus", "bounded_text"]

# What is kept, shown or logged of a proxy's ``error_detail.message``: Envoy's own NACK text is a
# few hundred bytes, and a proxy can send megabytes (gRPC's default 4 MB message limit).
MAX_DETAIL_BYTES = 4096


def bounded_text(text: str, limit: int = MAX_DETAIL_BYTES) -> str:
    """``text`` if it fits in ``limit`` UTF-8 bytes, else its head with a note of how much was
    cut, the whole at most ``limit`` bytes."""
    data = text.encode("utf-8", "surrogatepass")
    if len(data) <= limit:
        return text
    note = f" ... [{len(data)} bytes, cut to {limit}]"
    head = data[: max(0, limit - len(note))].decode("utf-8", "ignore")  # never half a character
    return head + note


@dataclass(frozen=True, slots=True)
class NackStatus:
    """The last rejection of one type by one proxy (``error_detail`` of its request)."""

    message: str  # at most MAX_DETAIL_BYTES (bounded_text)
    code: int
    nonce: str
    version: str  # the version the proxy says it still runs
    at: float  # wall-clock seconds


@dataclass(frozen=True, slots=True)
class TypeStatus:
    """Read-only status of one type URL on one stream (a row of ``/debug/syncz``)."""

    type_url: str
    wildcard: bool
    names: tuple[str, ...]  # subscribed names (sorted); empty and wildcard=True for "all"
    version_sent: str
    nonce_sent: str
    version_acked: str
    nonce_acked: str
    last_nack: NackStatus | None
    last_sent_at: float | None  # wall-clock seconds


@dataclass(frozen=True, slots=True)
class ConnectionStatus:
    """Read-only status of one stream, safe to keep and serialize."""

    stream_id: int
    node_id: str
    peer: str
    connected_at: float  # wall-clock seconds
    view: str  # str() of the cache key the stream reads
    protocol: str  # "sotw" (state of the world) or "delta"
    types: dict[str, TypeStatus]
    identity: str = ""  # NS/SA the stream authenticated as (secure port), "" when unauthenticated


@dataclass(frozen=True, slots=True)
class Backlog:
    """What one stream holds for its proxy beyond what it has written (debug and tests).

    A stream never queues: however many snapshots arrive while its proxy is slow, it keeps only
    the newest one it has not adopted yet, and writes one response at a time.
    """

    pending_snapshots: int  # 0 or 1: a snapshot newer than the one responses are cut from
    pending_since: float | None  # monotonic time the oldest unadopted snapshot arrived
    writing: bool  # a response is being written (the proxy reads slowly, or not at all)
