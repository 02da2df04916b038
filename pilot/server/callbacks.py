"""The server's view of whoever keeps the cache filled (push/, wired in by app.py).

The server never imports push/: it calls this protocol, which the pusher satisfies structurally
(go-control-plane's ``Callbacks``).
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Protocol

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
