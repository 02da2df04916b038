"""The server's view of whoever keeps the cache filled (push/, wired in by app.py).

The server never imports push/: it calls this protocol, which the pusher satisfies structurally
(go-control-plane's ``Callbacks``).
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from envoy.config.core.v3 import base_pb2


class StreamCallbacks(Protocol):
    async def on_stream_open(self, stream_id: int, node: base_pb2.Node) -> Hashable:
        """A stream sent its first request. Return the cache key (the proxy's view) it reads;
        when this returns, the cache holds a snapshot for that key. Raise ValueError to refuse
        the node (the stream is ended with INVALID_ARGUMENT and the message)."""
        ...

    def on_stream_closed(self, stream_id: int) -> None:
        """The stream ended (any reason). Called once per successful ``on_stream_open``."""
        ...


@dataclass(frozen=True, slots=True)
class Rejection:
    """A proxy NACKed one of our responses: what the server knows of it (never what config made
    it: the pusher traces the resources to their config objects through ``Snapshot.origins``)."""

    view: Hashable  # the cache key the stream reads
    stream_id: int
    node_id: str
    type_url: str
    type_version: str  # the type's version in the snapshot the rejected response was cut from
    resources: tuple[str, ...]  # the rejected resources; empty when the response cannot tell
    error: str  # the proxy's error_detail message, at most 4 KiB (status.bounded_text)


@runtime_checkable
class RejectionListener(Protocol):
    """Callbacks that also want to hear of NACKs (the pusher holds back what was rejected)."""

    def on_rejected(self, rejection: Rejection) -> None:
        """Called on the event loop, from the stream's reader; must not block."""
        ...
