"""PushRequest: what changed since the last push, as a frozen value that merges into a new one.

Istio's ``model.PushRequest`` with ``Merge``; here ``merge`` never mutates either input, so the
debouncer can be tested with literals and two requests never alias each other.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from pilot.config.objects import ConfigKey

# Reasons, as Istio's pilot_push_triggers{type} labels.
CONFIG = "config"
PROXY = "proxy"
GLOBAL = "global"
DEBUG = "debug"


@dataclass(frozen=True, slots=True)
class PushRequest:
    """One reason (or several merged) to push.

    ``full``: rebuild the PushContext and every view (every request is full today; the flag is here
    so an endpoint-only push can skip the context rebuild later, like Istio's EDS pushes).
    ``changed``: the config keys that changed (empty with ``full``: anything may have changed).
    ``reasons``: how many triggers of each kind were merged (pilot_push_triggers).
    ``start``: clock time of the oldest trigger merged in (for pilot_debounce_time).
    """

    full: bool
    changed: frozenset[ConfigKey] = frozenset()
    reasons: Mapping[str, int] = field(default_factory=dict, hash=False)
    start: float = 0.0

    def __post_init__(self) -> None:
        # Freeze a caller's dict so the value really is immutable.
        object.__setattr__(self, "reasons", MappingProxyType(dict(self.reasons)))

    @classmethod
    def for_config(cls, changed: Iterable[ConfigKey], start: float) -> PushRequest:
        """Config changed in the store: a full push naming the keys."""
        return cls(full=True, changed=frozenset(changed), reasons={CONFIG: 1}, start=start)

    def merge(self, other: PushRequest) -> PushRequest:
        """Both requests in one: full if either is, the union of keys, summed reasons, oldest start."""
        reasons = dict(self.reasons)
        for reason, count in other.reasons.items():
            reasons[reason] = reasons.get(reason, 0) + count
        return PushRequest(
            full=self.full or other.full,
            changed=self.changed | other.changed,
            reasons=reasons,
            start=min(self.start, other.start),
        )

    def describe(self) -> str:
        """Short text for logs: ``config x3 (2 keys)``."""
        reasons = ", ".join(f"{reason} x{count}" for reason, count in sorted(self.reasons.items()))
        return f"{reasons or 'no reason'} ({len(self.changed)} keys{', full' if self.full else ''})"
