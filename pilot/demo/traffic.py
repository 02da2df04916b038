"""Counting where requests went: a per-window tally, and how long an edit took to take effect."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from pilot.demo.scenario import Phase

__all__ = ["EditWatch", "Tally"]


class Tally:
    """Replies per backend version (and failures) over some window."""

    def __init__(self) -> None:
        self.versions: Counter[str] = Counter()
        self.errors = 0

    def add(self, version: str | None) -> None:
        if version is None:
            self.errors += 1
        else:
            self.versions[version] += 1

    @property
    def total(self) -> int:
        return sum(self.versions.values()) + self.errors

    def share(self, version: str) -> float:
        """Fraction of successful replies that came from ``version`` (0 when there were none)."""
        ok = sum(self.versions.values())
        return self.versions[version] / ok if ok else 0.0

    def bar(self, versions: Iterable[str], width: int = 40) -> str:
        """A stacked bar: each version's share drawn with its digit (``1111112222``)."""
        versions = list(versions)
        cells = ""
        for version in versions:
            cells += version[-1] * round(self.share(version) * width)
        cells = cells[:width]
        return cells + "." * (width - len(cells))


class EditWatch:
    """Propagation of one edit: seconds from the file write until replies follow the new phase.

    ``first_new`` is when the first reply came that only the new config could produce (a v3
    reply, say). ``converged`` is when 100% of replies started following the new config: the
    first reply after the last one that broke the new phase's rules, and not before ``first_new``
    (until a reply proves the new route, a reply both routes allow proves nothing).
    """

    def __init__(self, phase: Phase, written_at: float) -> None:
        self.phase = phase
        self.written_at = written_at
        self.first_new: float | None = None
        self.last_old: float | None = None
        self.first_since_old: float | None = None
        self.reported = False

    def observe(self, sent_at: float, received_at: float, version: str | None, jason: bool) -> None:
        if sent_at < self.written_at:
            return  # in flight across the write: it may rightly follow either config
        after = received_at - self.written_at
        if version in self.phase.new_versions and self.first_new is None:
            self.first_new = after
        if self.phase.allows(version, jason):
            if self.first_since_old is None:
                self.first_since_old = after
        else:
            self.last_old, self.first_since_old = after, None

    @property
    def converged(self) -> float | None:
        if self.first_since_old is None or (self.phase.new_versions and self.first_new is None):
            return None
        return max(self.first_since_old, self.first_new or 0.0)

    def settled(self, now: float, quiet: float = 2.0) -> bool:
        """True once ``quiet`` seconds of replies all followed the new phase."""
        converged = self.converged
        return converged is not None and now - (self.written_at + converged) >= quiet

    def describe(self) -> str:
        converged = self.converged
        if converged is None:
            return "not all requests on the new route yet"
        text = f"100% on the new route {converged:.2f}s after the write"
        if self.first_new is not None:
            first = "/".join(sorted(self.phase.new_versions))
            text = f"first {first} reply {self.first_new:.2f}s after the write, 100% after {converged:.2f}s"
        if self.last_old is not None:
            text += f" (last old-route reply at {self.last_old:.2f}s)"
        return text
