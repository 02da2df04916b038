"""The mesh a folder describes, as the analyzers see it: its objects by kind, its hosts and workloads.

What a folder knows of the mesh is its ServiceEntries (services) and WorkloadEntries and ServiceEntry
endpoints (workloads), named by Istio's host rules: a short host is ``name.NAMESPACE.svc.cluster.local``
and a wildcard host covers the hosts it matches (istio/istio pkg/config/host).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from google.protobuf.message import Message as ProtoMessage

from pilot._gen import networking_pb2 as net
from pilot.config import kinds
from pilot.config.objects import ConfigObject, FieldError

_Spec = TypeVar("_Spec", bound=ProtoMessage)
CLUSTER_SUFFIX = "svc.cluster.local"


@dataclass(frozen=True, slots=True)
class Workload:
    """A workload the folder knows: a WorkloadEntry, or an endpoint of a ServiceEntry."""

    namespace: str
    labels: Mapping[str, str]
    ports: frozenset[int]
    source: str


@dataclass
class Mesh:
    """Every object of the analyzed config, by kind, plus the problems the parser found."""

    objects: Sequence[ConfigObject]
    errors: Sequence[FieldError] = ()
    by_kind: dict[str, list[ConfigObject]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for obj in sorted(self.objects, key=lambda o: o.key):
            self.by_kind.setdefault(obj.kind, []).append(obj)

    def of(self, info: kinds.KindInfo[_Spec]) -> list[ConfigObject[_Spec]]:
        return [obj for obj in self.by_kind.get(info.kind, []) if info.holds(obj)]

    def service_hosts(self) -> list[tuple[str, ConfigObject[net.ServiceEntry]]]:
        return [(host, se) for se in self.of(kinds.SERVICE_ENTRY_INFO) for host in se.spec.hosts]

    def workloads(self) -> list[Workload]:
        found = [
            Workload(we.namespace, dict(we.spec.labels), frozenset(we.spec.ports.values()), str(we.key))
            for we in self.of(kinds.WORKLOAD_ENTRY_INFO)
        ]
        for se in self.of(kinds.SERVICE_ENTRY_INFO):
            for endpoint in se.spec.endpoints:
                ports = frozenset(endpoint.ports.values()) or frozenset(p.number for p in se.spec.ports)
                found.append(Workload(se.namespace, dict(endpoint.labels), ports, str(se.key)))
        return found


def fqdn(host: str, namespace: str) -> str:
    """Istio's host resolution: a short name is ``name.<namespace>.svc.cluster.local``."""
    if "." in host or host.startswith("*") or not host:
        return host
    return f"{host}.{namespace}.{CLUSTER_SUFFIX}"


def host_matches(a: str, b: str) -> bool:
    """Either host (wildcards ``*.x`` allowed) covers the other (istio host.Name.Matches, both ways)."""
    if a == b:
        return True
    return ("*" in b and fnmatch.fnmatchcase(a, b)) or ("*" in a and fnmatch.fnmatchcase(b, a))


def selects(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())
