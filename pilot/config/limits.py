"""How much one file or object may hold: past a limit pilot refuses it with an error naming the file.

A config folder is written by people and tools pilot does not control; these bounds keep one file from
holding the server's memory or CPU (a 50 MB file, a ``kind: List`` of 100,000 items, a VirtualService
of 2 million hosts). The defaults are far above what Kubernetes itself stores (an object is at most
~1.5 MB in etcd), so only a file no API server would accept is refused by default.
"""

from __future__ import annotations

from dataclasses import dataclass

MiB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class ParseLimits:
    # Bytes of one file (checked with stat before it is read, and again on what was read).
    file_bytes: int = 10 * MiB
    # Objects in one file, counting every document and every item of a ``kind: List``.
    objects_per_file: int = 10_000
    # ``spec.hosts`` of one object (and, for a Gateway, the hosts of all its servers together).
    hosts_per_object: int = 10_000
    # HTTP, TLS and TCP routes of one VirtualService together.
    routes_per_object: int = 10_000
    # Nesting of YAML collections in one document.
    depth: int = 100
    # Problems reported per file; the rest are counted in one last message.
    errors_per_file: int = 1_000

    def __post_init__(self) -> None:
        for name in self.__slots__:
            if getattr(self, name) < 1:
                raise ValueError(f"limit {name} must be at least 1")


DEFAULT_LIMITS = ParseLimits()
