"""PeerAuthentications that lose to another: which one Istio applies and which it ignores.

Istio keeps one PeerAuthentication per level (pilot/pkg/model/authentication.go,
``addPeerAuthentication`` and ``ComposePeerAuthentication``), always the oldest (creation time, then
name, then namespace: ``ConfigObject.precedence``):

- mesh-wide (root namespace, no selector) and namespace-wide (no selector): the oldest of the
  namespace; the others are ignored with a warning in istiod's log;
- workload-level (a selector, outside the root namespace): of those selecting one workload, the
  oldest applies to it.

Istio has no analyzer for this (its messages.yaml has no PeerAuthentication conflict), so the
messages carry pilot's codes (pilot.inspect.messages: PLT0002, PLT0003). Workload conflicts are
judged only on the workloads the analyzed config knows (WorkloadEntries, ServiceEntry endpoints).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from pilot._gen import security_pb2 as sec
from pilot.config.objects import ConfigObject
from pilot.translate.policy_selection import selector_matches

PeerAuthenticationObject = ConfigObject[sec.PeerAuthentication]


@dataclass(frozen=True, slots=True)
class Conflict:
    """One PeerAuthentication among several at one level: ``winner`` applies, ``ignored`` does not
    (``workload``: the workload they all select; empty for mesh- and namespace-wide ones)."""

    ignored: PeerAuthenticationObject
    winner: PeerAuthenticationObject
    rivals: tuple[PeerAuthenticationObject, ...]  # every policy of the level, the winner first
    workload: str = ""

    def text(self, root_namespace: str) -> str:
        names = ",".join(p.name for p in self.rivals)
        namespace = self.winner.namespace
        if self.workload:
            return (
                f'The PeerAuthentications [{names}] in namespace "{namespace}" select the same workload '
                f'"{self.workload}": Istio applies the oldest, "{self.winner.name}", to it and ignores '
                f'"{self.ignored.name}" there.'
            )
        level = "mesh-wide" if namespace == root_namespace else "namespace-wide"
        return (
            f'The PeerAuthentications [{names}] in namespace "{namespace}" have no workload selector '
            f'({level}): Istio applies only the oldest, "{self.winner.name}", and ignores '
            f'"{self.ignored.name}".'
        )


def _selector(policy: PeerAuthenticationObject) -> Mapping[str, str]:
    return policy.spec.selector.match_labels


def wide_conflicts(policies: Iterable[PeerAuthenticationObject]) -> list[Conflict]:
    """More than one mesh- or namespace-wide policy in a namespace: one conflict per ignored policy."""
    by_namespace: dict[str, list[PeerAuthenticationObject]] = defaultdict(list)
    for policy in policies:
        if not _selector(policy):
            by_namespace[policy.namespace].append(policy)
    out = []
    for _, wide in sorted(by_namespace.items()):
        rivals = tuple(sorted(wide, key=lambda p: p.precedence))
        out += [Conflict(loser, rivals[0], rivals) for loser in rivals[1:]]
    return out


def workload_conflicts(
    policies: Iterable[PeerAuthenticationObject],
    workloads: Sequence[tuple[str, Mapping[str, str], str]],
    root_namespace: str,
) -> list[Conflict]:
    """Workload-level policies of one namespace selecting one known workload ``(namespace, labels,
    name)``: one conflict per policy ignored for it, the first workload that shows it."""
    selecting = [p for p in policies if _selector(p) and p.namespace != root_namespace]
    out = []
    reported: set[tuple[object, object]] = set()
    for namespace, labels, name in workloads:
        picking = sorted(
            (p for p in selecting if p.namespace == namespace and selector_matches(p.spec.selector, labels)),
            key=lambda p: p.precedence,
        )
        for loser in picking[1:]:
            pair = (loser.key, picking[0].key)
            if pair not in reported:
                reported.add(pair)
                out.append(Conflict(loser, picking[0], tuple(picking), name))
    return out


__all__ = ["Conflict", "wide_conflicts", "workload_conflicts"]
