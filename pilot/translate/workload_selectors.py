"""The workload selectors a VirtualService or DestinationRule entry names, each found once per
entry object: a context built from the previous one keeps every unchanged entry (the same
object), so ``PushContext.selectors`` walks the specs of the changed entries only (at K=1000, a
walk of every spec cost the event loop about 10 ms per push, where views are compared).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from pilot.translate.config_entries import DestinationRuleEntry, VirtualServiceEntry

__all__ = ["Selector", "SelectorParts", "entry_selectors", "selectors_of"]

Selector = frozenset[tuple[str, str]]
# id(entry) -> (the entry, its selectors): the entry is kept so that its id names it.
SelectorParts = dict[int, tuple[object, frozenset[Selector]]]


def entry_selectors(entry: VirtualServiceEntry | DestinationRuleEntry) -> frozenset[Selector]:
    """VirtualService match ``sourceLabels`` (HTTP, TCP, TLS), or a DestinationRule's
    ``workloadSelector``."""
    if isinstance(entry, DestinationRuleEntry):
        return frozenset({frozenset(entry.spec.workload_selector.match_labels.items())})
    found: set[Selector] = set()
    spec = entry.spec
    for http in spec.http:
        found.update(frozenset(match.source_labels.items()) for match in http.match)
    for tcp in spec.tcp:
        found.update(frozenset(match.source_labels.items()) for match in tcp.match)
    for tls in spec.tls:
        found.update(frozenset(match.source_labels.items()) for match in tls.match)
    return frozenset(found)


def selectors_of(
    entries: Iterable[VirtualServiceEntry | DestinationRuleEntry],
    earlier: Mapping[int, tuple[object, frozenset[Selector]]],
    parts: SelectorParts,
) -> set[Selector]:
    """Every selector of ``entries``, taking each entry's from ``earlier`` (another context's
    parts) when it is the same object there; records each in ``parts``."""
    found: set[Selector] = set()
    for entry in entries:
        part = earlier.get(id(entry))
        if part is None or part[0] is not entry:
            part = (entry, entry_selectors(entry))
        parts[id(entry)] = part
        found.update(part[1])
    return found
