"""Kubernetes Services joined with their EndpointSlices, or their Pods, into one ServiceEntry per Service.

The translator knows services only as ServiceEntries (pilot.translate.registry), so a Kubernetes Service
(its records read by pilot.config.kube_core, the same way for both sources) becomes the ServiceEntry
Istio's own Kubernetes registry would be equivalent to (pilot/pkg/serviceregistry/kube/conversion.go):

- host ``NAME.NAMESPACE.svc.cluster.local``, addresses = the cluster IPs, location MESH_INTERNAL;
- resolution STATIC (EDS); a headless Service (clusterIP None) is NONE (Istio's Passthrough); an
  ExternalName Service is DNS to the external name and MESH_EXTERNAL;
- each port's protocol from ``appProtocol``, else the port name's prefix, as Istio's ConvertProtocol;
- endpoints: the ready addresses of the Service's EndpointSlices (label ``kubernetes.io/service-name``;
  ``conditions.ready`` unset means ready), one per address and Pod, each with its Pod's labels (so
  DestinationRule subsets select them) and ``ports`` = service port name → the slice's port number (the
  resolved targetPort);
- with ``endpoints_from_pods`` (the folder source: nothing there runs the EndpointSlice controller), a
  Service with a selector and no EndpointSlice gets the endpoints that controller would write: every
  ready Pod of its namespace with an IP whose labels hold the selector, each port's targetPort resolved
  by number, or by name among the Pod's container ports;
- exportTo from the ``networking.istio.io/exportTo`` annotation.

Key: ``ServiceEntry NAMESPACE/(svc)NAME``. Kubernetes names are lowercase RFC 1123 subdomains, which
cannot contain ``(``, and pilot rejects any other name, so no user object can take this key. ``(`` also
sorts before every valid name, so when a user ServiceEntry in the same namespace declares the same host,
the Kubernetes Service wins, as Istio's registry order has it.

Cost: an event only updates the cached records and marks the Services it touches; ``flush`` rebuilds each
marked Service once. An EndpointSlice event costs the size of its own Service, not of the mesh, and a
burst of events for one Service between two flushes costs one rebuild.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from pilot.config import kinds
from pilot.config.kube_core import Key, Labels, PodRecord, ServiceRecord, SliceRecord
from pilot.config.objects import ConfigKey, ConfigObject

SYNTHETIC_PREFIX = "(svc)"
API_VERSION = f"{kinds.NETWORKING_GROUP}/v1"


def synthetic_key(namespace: str, name: str) -> ConfigKey:
    return ConfigKey(kinds.SERVICE_ENTRY, namespace, f"{SYNTHETIC_PREFIX}{name}")


_NO_POD: Key = ("", "")  # an endpoint without a Pod targetRef (sorts before every pod)
# A built endpoint: address, port name → number, its Pod's labels and service account.
_FoundEndpoint = tuple[str, dict[str, int], Labels, str]


class ServiceIndex:
    """The cached records and the ServiceEntries made of them. Not thread-safe (event loop).

    ``origin_of(namespace, name)`` names the store origin of each Service's ServiceEntry.
    """

    def __init__(
        self,
        cluster_domain: str = "cluster.local",
        *,
        origin_of: Callable[[str, str], str],
        endpoints_from_pods: bool = False,
    ) -> None:
        self.cluster_domain = cluster_domain
        self._origin_of = origin_of
        self._from_pods = endpoints_from_pods
        self._services: dict[Key, ServiceRecord] = {}
        self._slices: dict[Key, SliceRecord] = {}
        self._slices_of: dict[Key, set[str]] = {}  # service → its slices' names
        self._pods: dict[Key, PodRecord] = {}
        self._pod_users: dict[Key, set[Key]] = {}  # pod → services whose endpoints it is
        self._pods_of: dict[Key, set[Key]] = {}  # service → pods of its endpoints
        self._dirty: set[Key] = set()

    def __len__(self) -> int:
        return len(self._services)

    # -- events ---------------------------------------------------------------------------------------

    def service(self, namespace: str, name: str, record: ServiceRecord | None) -> None:
        """A Service was added or changed (``record``) or deleted (None)."""
        key = (namespace, name)
        if record is None:
            self._services.pop(key, None)
        else:
            self._services[key] = record
        self._dirty.add(key)

    def endpoint_slice(self, namespace: str, name: str, record: SliceRecord | None) -> None:
        key = (namespace, name)
        old = self._slices.pop(key, None)
        if old is not None and old.service:
            self._unlink_slice(namespace, old.service, name)
        if record is None:
            return
        self._slices[key] = record
        if record.service:
            self._slices_of.setdefault((namespace, record.service), set()).add(name)
            self._dirty.add((namespace, record.service))

    def pod(self, namespace: str, name: str, record: PodRecord | None) -> bool:
        """Whether the Pod's record changed. Most pod updates (status) change nothing here: only labels
        matter to EndpointSlice endpoints; with ``endpoints_from_pods`` its address, readiness and ports
        too."""
        key = (namespace, name)
        old = self._pods.get(key)
        if old == record:
            return False
        if record is None:
            self._pods.pop(key, None)
        else:
            self._pods[key] = record
        if old is None or record is None or old.labels != record.labels:
            self._dirty.update(self._pod_users.get(key, ()))
        if self._from_pods:
            # The Services of its namespace whose selector its old or new labels hold.
            held = [set(pod.labels) for pod in (old, record) if pod is not None]
            self._dirty.update(
                service
                for service, svc in self._services.items()
                if service[0] == namespace
                and svc.selector
                and any(set(svc.selector) <= labels for labels in held)
            )
        return True

    def _unlink_slice(self, namespace: str, service: str, name: str) -> None:
        owner = (namespace, service)
        names = self._slices_of.get(owner)
        if names is not None:
            names.discard(name)
            if not names:
                del self._slices_of[owner]
        self._dirty.add(owner)

    # -- output ---------------------------------------------------------------------------------------

    def flush(self) -> list[tuple[Key, str, ConfigObject | None]]:
        """(service, origin, ServiceEntry) for every Service changed since the last flush; None: deleted."""
        out: list[tuple[Key, str, ConfigObject | None]] = []
        for key in sorted(self._dirty):
            out.append((key, self._origin_of(*key), self._build(key)))
        self._dirty.clear()
        return out

    def build_all(self) -> list[ConfigObject]:
        """Every ServiceEntry as it stands (for tests and debugging)."""
        return [obj for key in sorted(self._services) if (obj := self._build(key)) is not None]

    def _build(self, key: Key) -> ConfigObject | None:
        namespace, name = key
        service = self._services.get(key)
        pods: set[Key] = set()
        if service is None:
            self._set_pods(key, pods)
            return None
        spec: Any = kinds.SERVICE_ENTRY_INFO.new_spec()
        entry = type(spec)
        spec.hosts.append(f"{name}.{namespace}.svc.{self.cluster_domain}")
        for port in service.ports:
            out = spec.ports.add()
            out.number = port.port
            out.name = port.name
            out.protocol = port.protocol
            out.target_port = port.target_port
        spec.export_to.extend(service.export_to)
        if service.type == "ExternalName":
            spec.resolution = entry.DNS
            spec.location = entry.MESH_EXTERNAL
            if service.external_name:
                endpoint = spec.endpoints.add()
                endpoint.address = service.external_name
        else:
            spec.resolution = entry.NONE if service.headless else entry.STATIC
            spec.location = entry.MESH_INTERNAL
            spec.addresses.extend(service.cluster_ips)
            if key in self._slices_of or not self._from_pods:
                found = self._slice_endpoints(key, pods)
            else:
                found = self._pod_endpoints(key, service, pods)
            for address, ports, labels, account in found:
                endpoint = spec.endpoints.add()
                endpoint.address = address
                endpoint.ports.update(ports)
                endpoint.labels.update(labels)
                endpoint.service_account = account
        self._set_pods(key, pods)
        return ConfigObject(
            synthetic_key(namespace, name), API_VERSION, spec, self._origin_of(*key), labels=service.labels
        )

    def _slice_endpoints(self, key: Key, pods: set[Key]) -> list[_FoundEndpoint]:
        """The ready endpoints of all the Service's slices, one per (address, pod), sorted (stable output).

        An endpoint listed by two slices (it moves between them) is one endpoint: for each port name the
        first slice, by name, wins. Two *pods* at one address (hostNetwork pods on one node, each with its
        own port) are two endpoints, each with its own ports and labels. Istio keys its slice cache by
        (address, port name) instead, and keeps only one of them.
        """
        namespace, _ = key
        merged: dict[tuple[str, Key], tuple[dict[str, int], Labels, str]] = {}
        for slice_name in sorted(self._slices_of.get(key, ())):
            endpoint_slice = self._slices.get((namespace, slice_name))
            if endpoint_slice is None:
                continue
            for endpoint in endpoint_slice.endpoints:
                labels: Labels = ()
                account = ""
                if endpoint.pod is not None:
                    pods.add(endpoint.pod)
                    pod = self._pods.get(endpoint.pod)
                    labels, account = ((), "") if pod is None else (pod.labels, pod.service_account)
                entry = merged.setdefault((endpoint.address, endpoint.pod or _NO_POD), ({}, labels, account))
                ports = entry[0]
                for port_name, number in endpoint_slice.ports:
                    ports.setdefault(port_name, number)
        return [(address, *found) for (address, _), found in sorted(merged.items())]

    def _pod_endpoints(self, key: Key, service: ServiceRecord, pods: set[Key]) -> list[_FoundEndpoint]:
        """What the EndpointSlice controller would write for ``service``: every ready Pod of its namespace
        with an IP whose labels hold the selector, sorted by address. A port with a named targetPort the
        Pod does not declare is left out for that Pod, as the controller does."""
        if not service.selector:
            return []  # a Service without a selector has the endpoints someone writes for it
        namespace, _ = key
        out = []
        for pod_key, pod in sorted(self._pods.items()):
            if pod_key[0] != namespace or not pod.ip or not pod.ready:
                continue
            if not set(service.selector) <= set(pod.labels):
                continue
            named = dict(pod.ports)
            ports: dict[str, int] = {}
            for port in service.ports:
                number = named.get(port.target_name) if port.target_name else port.target_port or port.port
                if number:
                    ports[port.name] = number
            if ports:
                pods.add(pod_key)
                out.append((pod.ip, ports, pod.labels, pod.service_account))
        return sorted(out, key=lambda item: item[0])

    def _set_pods(self, key: Key, pods: set[Key]) -> None:
        """Keep the pod → services index in step with the endpoints just built."""
        old = self._pods_of.pop(key, set())
        for pod in old - pods:
            users = self._pod_users.get(pod)
            if users is not None:
                users.discard(key)
                if not users:
                    del self._pod_users[pod]
        for pod in pods - old:
            self._pod_users.setdefault(pod, set()).add(key)
        if pods:
            self._pods_of[key] = pods


def services_in(objects: Iterable[ConfigObject]) -> list[ConfigObject]:
    """The synthetic ServiceEntries among ``objects``."""
    return [
        obj for obj in objects if obj.kind == kinds.SERVICE_ENTRY and obj.name.startswith(SYNTHETIC_PREFIX)
    ]


__all__ = ["SYNTHETIC_PREFIX", "ServiceIndex", "services_in", "synthetic_key"]
