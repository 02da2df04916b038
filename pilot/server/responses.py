"""Whole encoded responses, nonce included, shared by the streams that send the same thing.

A push of one snapshot sends the very same response to every proxy in step with its view: the
same resources at the same versions. Only the nonce told them apart, and a nonce only has to be
unique on its stream (https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol#when-to-send-an-update).
So nonces are numbers from one counter per server, and the nonces of one stream only grow: a
response encoded once with nonce X can go to every stream whose last nonce is below X, unchanged,
and the stream records X in its own ledger like any other nonce (ACK and NACK state stays per
stream). A stream that already sent a nonce at or above X (it answered a request meanwhile) gets
a response of its own under a new number, which later streams then share.

Entries belong to the snapshot's ``TypeResources`` they were cut from and go with it.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Hashable
from typing import NamedTuple

from pilot.cache.snapshot import TypeResources
from pilot.server.bounded import OwnedCache

__all__ = ["Response", "SharedResponses"]


class Response(NamedTuple):
    """One encoded response and its nonce (as a number, and as sent)."""

    number: int
    nonce: str
    data: bytes


class SharedResponses:
    """Encoded responses by (type resources, what the response holds), each with its nonce.
    Use from one event loop."""

    def __init__(self, max_entries: int = 1024, max_bytes: int = 256 * 1024 * 1024) -> None:
        self._numbers = itertools.count(1)
        self._entries: OwnedCache[Response] = OwnedCache(max_entries, max_bytes, _size)

    def respond(
        self, typed: TypeResources | None, key: Hashable, after: int, encode: Callable[[str], bytes]
    ) -> Response:
        """The response ``key`` names within ``typed`` (None: not shared), for a stream whose last
        nonce number is ``after``; ``encode`` makes its bytes, given a nonce."""
        if typed is not None:
            found = self._entries.get(typed, key)
            if found is not None and found.number > after:
                return found
        number = next(self._numbers)
        nonce = str(number)
        response = Response(number, nonce, encode(nonce))
        if typed is not None:
            self._entries.put(typed, key, response)
        return response

    @property
    def encoded_bytes(self) -> int:
        return self._entries.bytes

    def __len__(self) -> int:
        return len(self._entries)


def _size(response: Response) -> int:
    return len(response.data)
