"""The service registry built from ServiceEntries (and the WorkloadEntries they select).

Istio's serviceregistry/serviceentry/conversion.go: one ``Service`` per host of a ServiceEntry, its
ports with their protocol (Istio's ``protocol.Parse``, or the port name's prefix), and its endpoints.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from pilot._gen import networking_pb2 as nw
from pilot.config.objects import ConfigKey, ConfigObject
from pilot.config.protocols import Protocol, port_protocol
from pilot.translate import hosts

PUBLIC = "*"
PRIVATE = "."
NOBODY = "~"


class Resolution(enum.StrEnum):
    NONE = "NONE"
    STATIC = "STATIC"
    DNS = "DNS"
    DNS_ROUND_ROBIN = "DNS_ROUND_ROBIN"


@dataclass(frozen=True, slots=True)
class ServicePort:
    number: int
    name: str
    protocol: Protocol
    target_port: int = 0


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One workload behind a service: a ServiceEntry endpoint or a selected WorkloadEntry."""

    address: str
    ports: tuple[tuple[str, int], ...] = ()
    labels: tuple[tuple[str, str], ...] = ()
    weight: int = 0
    locality: str = ""
    # The workload's Kubernetes service account (WorkloadEntry ``serviceAccount``, a Pod's): its identity.
    service_account: str = ""
    # ``labels`` as a dict, made once (every subset cluster of every view selects by it).
    _labels: dict[str, str] = field(init=False, compare=False, hash=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_labels", dict(self.labels))

    def port_for(self, port: ServicePort) -> int:
        """``ports[name]``, else the service port's targetPort, else its number."""
        return dict(self.ports).get(port.name) or port.target_port or port.number

    def has_labels(self, selector: Mapping[str, str]) -> bool:
        labels = self._labels
        for key, value in selector.items():
            if labels.get(key) != value:
                return False
        return True


@dataclass(frozen=True, slots=True)
class Service:
    """One host of one ServiceEntry (Istio's model.Service)."""

    hostname: str
    namespace: str
    ports: tuple[ServicePort, ...]
    resolution: Resolution
    key: ConfigKey
    mesh_external: bool = True
    addresses: tuple[str, ...] = ()
    endpoints: tuple[Endpoint, ...] = ()
    export_to: frozenset[str] = frozenset({PUBLIC})
    # The ServiceEntry's subjectAltNames: verified on upstream TLS when the DestinationRule names none.
    subject_alt_names: tuple[str, ...] = ()

    def port(self, number: int) -> ServicePort | None:
        for port in self.ports:
            if port.number == number:
                return port
        return None


def export_set(values: Iterable[str], namespace: str, default: frozenset[str]) -> frozenset[str]:
    """exportTo with ``.`` replaced by the owner's namespace; empty means the mesh default."""
    given = list(values) or list(default)
    return frozenset(namespace if v == PRIVATE else v for v in given if v != NOBODY)


def visible(export_to: frozenset[str], namespace: str) -> bool:
    return PUBLIC in export_to or namespace in export_to


def services_of(
    se: ConfigObject[nw.ServiceEntry],
    workloads: Sequence[ConfigObject[nw.WorkloadEntry]],
    default_export_to: frozenset[str] = frozenset({PUBLIC}),
) -> list[Service]:
    """One Service per host of a ServiceEntry. Short hosts are resolved in its namespace (Istio
    takes them literally; without Kubernetes, ``reviews`` should mean the same as in a VirtualService)."""
    spec = se.spec
    namespace = se.namespace
    resolution = Resolution(nw.ServiceEntry.Resolution.Name(spec.resolution))
    ports = tuple(
        ServicePort(p.number, p.name, port_protocol(p.protocol, p.name), p.target_port) for p in spec.ports
    )
    endpoints = [_endpoint(we, {}) for we in spec.endpoints]
    if spec.HasField("workload_selector"):
        selector = dict(spec.workload_selector.labels)
        for wle in workloads:
            if wle.namespace == namespace:
                endpoint = _endpoint(wle.spec, dict(wle.labels))
                if endpoint.has_labels(selector):
                    endpoints.append(endpoint)
    export_to = export_set(spec.export_to, namespace, default_export_to)
    out = []
    for raw in spec.hosts:
        host = hosts.resolve_shortname(raw, namespace)
        own = tuple(endpoints)
        dns = resolution in (Resolution.DNS, Resolution.DNS_ROUND_ROBIN)
        if not own and dns and not hosts.is_wildcard(host):
            own = (Endpoint(address=host),)  # Istio resolves the host itself
        out.append(
            Service(
                hostname=host,
                namespace=namespace,
                ports=ports,
                resolution=resolution,
                key=se.key,
                mesh_external=spec.location == nw.ServiceEntry.MESH_EXTERNAL,
                addresses=tuple(spec.addresses),
                endpoints=own,
                export_to=export_to,
                subject_alt_names=tuple(spec.subject_alt_names),
            )
        )
    return out


def _endpoint(we: nw.WorkloadEntry, object_labels: Mapping[str, str]) -> Endpoint:
    """A WorkloadEntry's labels are its spec's and its object's, the object's winning (Istio's
    serviceentry ``ConvertWorkloadEntry``)."""
    labels = dict(we.labels)
    if object_labels:
        labels.update(object_labels)
    ports = we.ports
    return Endpoint(
        address=we.address,
        ports=tuple(sorted(ports.items())) if ports else (),
        labels=tuple(sorted(labels.items())),
        weight=we.weight,
        locality=we.locality,
        service_account=we.service_account,
    )
