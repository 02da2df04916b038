"""pilot.xds.protowire: the hand-written varint is byte for byte what protobuf writes.

tests/xds has no ``__init__.py``: as a package it would be imported as ``xds`` (tests/ is not a
package) and hide the ``xds`` package of the xDS protos.
"""

from __future__ import annotations

import pytest
from google.protobuf import wrappers_pb2

from pilot.xds.protowire import varint


def test_zero_is_one_byte() -> None:
    assert varint(0) == b"\x00"


@pytest.mark.parametrize("value", [1, 127, 128, 300, 16_383, 16_384, 2**21, 2**32, 2**63 - 1, 2**64 - 1])
def test_varint_matches_protobuf(value: int) -> None:
    # UInt64Value has one field, number 1, wire type 0 (varint): its bytes are the tag 0x08 and then
    # the value's varint. https://protobuf.dev/programming-guides/encoding/#varints
    assert b"\x08" + varint(value) == wrappers_pb2.UInt64Value(value=value).SerializeToString()
