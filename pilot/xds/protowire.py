"""Protocol-buffers wire format, the little of it pilot writes by hand.

Responses are built by concatenating already-serialized fields instead of building messages per
proxy; both the cache (``Any`` wrappers) and the server (DiscoveryResponse framing) need this.
https://protobuf.dev/programming-guides/encoding/
"""

from __future__ import annotations


def varint(value: int) -> bytes:
    """Base-128 varint of a non-negative int (lengths and tags)."""
    if value < 0x80:  # every length under 128 bytes: the common case for the short fields
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)
