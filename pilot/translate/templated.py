"""Templated resources: a resource serialized as the bytes of a part many resources share, then its own.

Resources of one shape (the clusters of one traffic policy, the routes of VirtualServices written
alike) differ in a few fields: names, cluster names, metadata. Such a resource is serialized as the
shape's common fields, serialized once, followed by its own fields, serialized by upb on their own.
A parser reads concatenated encodings as the merged message
(https://protobuf.dev/programming-guides/encoding/#last-one-wins: a singular scalar takes the last
value, embedded messages merge, repeated fields append), so the proxy gets the message the builder
would have made; the makers only template a shape where the two parts never set the same repeated
or map field. ``tests/translate/test_templated.py`` parses every templated resource of the bench
mesh and of the corpus and compares it with the message the builder makes.

The bytes are not what deterministic serialization of that message writes (field order differs),
so one resource must always come out of one path: a maker templates a resource or never does, by
its shape alone, and an edit rebuilds it the same way (its version is a hash of its bytes).
"""

from __future__ import annotations

from typing import Generic, TypeVar

from google.protobuf.message import Message

from pilot.cache.snapshot import Encoded

M = TypeVar("M", bound=Message)


class Templated(Encoded, Generic[M]):
    """A resource serialized as a template's bytes and its own fields' bytes; the message on demand
    (debug views, tests, whatever still reads fields), parsed once."""

    __slots__ = ("_kind", "_parsed")

    def __init__(self, value: bytes, kind: type[M]) -> None:
        super().__init__(value)
        self._kind = kind
        self._parsed: M | None = None

    def message(self) -> M:
        if self._parsed is None:
            self._parsed = self._kind.FromString(self.value)
        return self._parsed


__all__ = ["Templated"]
