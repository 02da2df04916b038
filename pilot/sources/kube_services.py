"""Kubernetes Services, EndpointSlices and Pods, joined into one synthetic ServiceEntry per Service.

The translator knows services only as ServiceEntries (pilot.translate.registry), so a Kubernetes Service
becomes the ServiceEntry Istio's own Kubernetes registry would be equivalent to
(pilot/pkg/serviceregistry/kube/conversion.go):

- host ``NAME.NAMESPACE.svc.cluster.local``, addresses = the cluster IPs, location MESH_INTERNAL;
- resolution STATIC (EDS); a headless Service (clusterIP None) is NONE (Istio's Passthrough); an
  ExternalName Service is DNS to the external name and MESH_EXTERNAL;
- each port's protocol from ``appProtocol``, else the port name's prefix, as Istio's ConvertProtocol;
- endpoints: the ready addresses of the Service's EndpointSlices (label ``kubernetes.io/service-name``;
  ``conditions.ready`` unset means ready), one per address and Pod, each with its Pod's labels (so
  DestinationRule subsets select them) and ``ports`` = service port name → the slice's port number (the
  resolved targetPort);
- exportTo from the ``networking.istio.io/exportTo`` annotation.

Key: ``ServiceEntry NAMESPACE/(svc)NAME``. Kubernetes names are lowercase RFC 1123 subdomains, which
cannot contain ``(``, and pilot rejects any other name, so no user object can take this key. ``(`` also
sorts before every valid name, so when a user ServiceEntry in the same namespace declares the same host,
the Kubernetes Service wins, as Istio's registry order has it. Origin: ``kube:Service/NAMESPACE/NAME``.

Cost: an event only updates the cached objects and marks the Services it touches; ``flush`` rebuilds each
marked Service once. An EndpointSlice event costs the size of its own Service, not of the mesh, and a
burst of events for one Service between two flushes costs one rebuild.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pilot.config import kinds
from pilot.config.objects import ConfigKey, ConfigObject
from pilot.config.protocols import Protocol, parse_protocol
from pilot.sources.kube_objects import origin_of

SERVICE = "Service"
ENDPOINT_SLICE = "EndpointSlice"
POD = "Pod"

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
EXPORT_TO_ANNOTATION = "networking.istio.io/exportTo"
SYNTHETIC_PREFIX = "(svc)"
API_VERSION = f"{kinds.NETWORKING_GROUP}/v1"

# Kubernetes' standard appProtocol names (Istio handles these for appProtocol only).
_K8S_APP_PROTOCOLS = {"kubernetes.io/h2c": "HTTP2", "kubernetes.io/ws": "HTTP", "kubernetes.io/wss": "HTTPS"}
# Ports that are TCP when nothing else says so: sniffing would break their server-first protocols.
_WELL_KNOWN_PORTS = frozenset({25, 53, 3306, 27017})


def convert_protocol(port: int, name: str, protocol: str, app_protocol: str | None) -> str:
    """Istio's kube.ConvertProtocol; "" when unknown (Istio then detects the protocol)."""
    if protocol == "UDP":
        return "UDP"
    text = name
    if app_protocol:
        special = _K8S_APP_PROTOCOLS.get(app_protocol)
        if special is not None:
            return special
        text = app_protocol
    if text.lower().startswith("grpc-web"):
        return "GRPC-Web"
    parsed = parse_protocol(text.split("-", 1)[0])
    if parsed is Protocol.UDP:
        return "TCP"  # a TCP port named udp-*: still TCP
    if parsed is Protocol.UNSUPPORTED:
        return "TCP" if port in _WELL_KNOWN_PORTS else ""
    return parsed.value


def synthetic_key(namespace: str, name: str) -> ConfigKey:
    return ConfigKey(kinds.SERVICE_ENTRY, namespace, f"{SYNTHETIC_PREFIX}{name}")


Key = tuple[str, str]  # (namespace, name)
_NO_POD: Key = ("", "")  # an endpoint without a Pod targetRef (sorts before every pod)
Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class _Port:
    name: str
    port: int
    protocol: str
    target_port: int  # 0 when named (resolved per endpoint by the EndpointSlice)


@dataclass(frozen=True, slots=True)
class _Service:
    type: str
    cluster_ips: tuple[str, ...]
    headless: bool
    external_name: str
    ports: tuple[_Port, ...]
    labels: Labels
    export_to: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Endpoint:
    address: str
    pod: Key | None


@dataclass(frozen=True, slots=True)
class _Slice:
    service: str  # the owning Service's name ("" when unlabelled)
    endpoints: tuple[_Endpoint, ...]  # ready ones only
    ports: tuple[tuple[str, int], ...]


class ServiceIndex:
    """The cached Kubernetes objects and the ServiceEntries made of them. Not thread-safe (event loop)."""

    def __init__(self, cluster_domain: str = "cluster.local") -> None:
        self.cluster_domain = cluster_domain
        self._services: dict[Key, _Service] = {}
        self._slices: dict[Key, _Slice] = {}
        self._slices_of: dict[Key, set[str]] = {}  # service → its slices' names
        self._pod_labels: dict[Key, Labels] = {}
        self._pod_users: dict[Key, set[Key]] = {}  # pod → services whose endpoints it is
        self._pods_of: dict[Key, set[Key]] = {}  # service → pods of its endpoints
        self._dirty: set[Key] = set()

    def __len__(self) -> int:
        return len(self._services)

    # -- events ---------------------------------------------------------------------------------------

    def service(self, namespace: str, name: str, obj: Mapping[str, Any] | None) -> None:
        """A Service was added or changed (``obj``) or deleted (None)."""
        key = (namespace, name)
        if obj is None:
            self._services.pop(key, None)
        else:
            self._services[key] = _read_service(obj)
        self._dirty.add(key)

    def endpoint_slice(self, namespace: str, name: str, obj: Mapping[str, Any] | None) -> None:
        key = (namespace, name)
        old = self._slices.pop(key, None)
        if old is not None and old.service:
            self._unlink_slice(namespace, old.service, name)
        if obj is None:
            return
        new = _read_slice(obj)
        self._slices[key] = new
        if new.service:
            self._slices_of.setdefault((namespace, new.service), set()).add(name)
            self._dirty.add((namespace, new.service))

    def pod(self, namespace: str, name: str, obj: Mapping[str, Any] | None) -> None:
        """Pods matter for their labels only; most pod updates (status) change nothing here."""
        key = (namespace, name)
        labels = None if obj is None else _labels(obj)
        if self._pod_labels.get(key) == labels:
            return
        if labels is None:
            self._pod_labels.pop(key, None)
        else:
            self._pod_labels[key] = labels
        self._dirty.update(self._pod_users.get(key, ()))

    def _unlink_slice(self, namespace: str, service: str, name: str) -> None:
        owner = (namespace, service)
        names = self._slices_of.get(owner)
        if names is not None:
            names.discard(name)
            if not names:
                del self._slices_of[owner]
        self._dirty.add(owner)

    # -- output ---------------------------------------------------------------------------------------

    def flush(self) -> list[tuple[str, ConfigObject | None]]:
        """(origin, ServiceEntry) for every Service changed since the last flush; None: deleted."""
        out: list[tuple[str, ConfigObject | None]] = []
        for key in sorted(self._dirty):
            out.append((origin_of(SERVICE, *key), self._build(key)))
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
        info = kinds.KINDS[kinds.SERVICE_ENTRY]
        spec: Any = info.new_spec()
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
            for address, ports, labels in self._endpoints(key, pods):
                endpoint = spec.endpoints.add()
                endpoint.address = address
                endpoint.ports.update(ports)
                endpoint.labels.update(labels)
        self._set_pods(key, pods)
        return ConfigObject(
            synthetic_key(namespace, name),
            API_VERSION,
            spec,
            origin_of(SERVICE, namespace, name),
            labels=service.labels,
        )

    def _endpoints(self, key: Key, pods: set[Key]) -> list[tuple[str, dict[str, int], Labels]]:
        """The ready endpoints of all the Service's slices, one per (address, pod), sorted (stable output).

        An endpoint listed by two slices (it moves between them) is one endpoint: for each port name the
        first slice, by name, wins. Two *pods* at one address (hostNetwork pods on one node, each with its
        own port) are two endpoints, each with its own ports and labels. Istio keys its slice cache by
        (address, port name) instead, and keeps only one of them.
        """
        namespace, _ = key
        merged: dict[tuple[str, Key], tuple[dict[str, int], Labels]] = {}
        for slice_name in sorted(self._slices_of.get(key, ())):
            endpoint_slice = self._slices.get((namespace, slice_name))
            if endpoint_slice is None:
                continue
            for endpoint in endpoint_slice.endpoints:
                labels: Labels = ()
                if endpoint.pod is not None:
                    pods.add(endpoint.pod)
                    labels = self._pod_labels.get(endpoint.pod, ())
                ports, _ = merged.setdefault((endpoint.address, endpoint.pod or _NO_POD), ({}, labels))
                for port_name, number in endpoint_slice.ports:
                    ports.setdefault(port_name, number)
        return [(address, ports, labels) for (address, _), (ports, labels) in sorted(merged.items())]

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


def _labels(obj: Mapping[str, Any], field: str = "labels") -> Labels:
    metadata = obj.get("metadata")
    raw = metadata.get(field) if isinstance(metadata, dict) else None
    if not isinstance(raw, dict):
        return ()
    return tuple(sorted((str(k), str(v)) for k, v in raw.items()))


def _read_service(obj: Mapping[str, Any]) -> _Service:
    spec = obj.get("spec")
    spec = spec if isinstance(spec, dict) else {}
    cluster_ip = str(spec.get("clusterIP") or "")
    raw_ips = spec.get("clusterIPs")
    ips = [str(ip) for ip in raw_ips] if isinstance(raw_ips, list) and raw_ips else [cluster_ip]
    headless = cluster_ip == "None"
    ports = []
    for raw in spec.get("ports") or ():
        if not isinstance(raw, dict):
            continue
        number = _int(raw.get("port"))
        name = str(raw.get("name") or "")
        target = raw.get("targetPort")
        app_protocol = raw.get("appProtocol")
        ports.append(
            _Port(
                name=name,
                port=number,
                protocol=convert_protocol(
                    number,
                    name,
                    str(raw.get("protocol") or "TCP"),
                    str(app_protocol) if app_protocol else None,
                ),
                target_port=target if isinstance(target, int) and not isinstance(target, bool) else 0,
            )
        )
    annotations = dict(_labels(obj, "annotations"))
    export_to = tuple(
        item.strip() for item in annotations.get(EXPORT_TO_ANNOTATION, "").split(",") if item.strip()
    )
    return _Service(
        type=str(spec.get("type") or "ClusterIP"),
        cluster_ips=() if headless else tuple(ip for ip in ips if ip and ip != "None"),
        headless=headless,
        external_name=str(spec.get("externalName") or ""),
        ports=tuple(ports),
        labels=_labels(obj),
        export_to=export_to,
    )


def _read_slice(obj: Mapping[str, Any]) -> _Slice:
    labels = dict(_labels(obj))
    usable = obj.get("addressType") in ("IPv4", "IPv6")  # FQDN slices are not addresses Envoy can use
    endpoints = []
    for raw in (obj.get("endpoints") or ()) if usable else ():
        if not isinstance(raw, dict):
            continue
        conditions = raw.get("conditions")
        ready = conditions.get("ready") if isinstance(conditions, dict) else None
        addresses = raw.get("addresses")
        if ready is False or not isinstance(addresses, list) or not addresses:
            continue  # unset means ready (EndpointConditions: "nil should be interpreted as true")
        ref = raw.get("targetRef")
        pod = None
        if isinstance(ref, dict) and ref.get("kind") == POD and ref.get("name"):
            metadata = obj.get("metadata")
            own_namespace = metadata.get("namespace") if isinstance(metadata, dict) else ""
            pod = (str(ref.get("namespace") or own_namespace or ""), str(ref["name"]))
        endpoints.append(_Endpoint(str(addresses[0]), pod))
    ports = tuple(
        (str(port.get("name") or ""), number)
        for port in obj.get("ports") or ()
        if isinstance(port, dict) and (number := _int(port.get("port")))
    )
    return _Slice(labels.get(SERVICE_NAME_LABEL, ""), tuple(endpoints), ports)


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def services_in(objects: Iterable[ConfigObject]) -> list[ConfigObject]:
    """The synthetic ServiceEntries among ``objects``."""
    return [
        obj for obj in objects if obj.kind == kinds.SERVICE_ENTRY and obj.name.startswith(SYNTHETIC_PREFIX)
    ]


__all__ = [
    "ENDPOINT_SLICE",
    "POD",
    "SERVICE",
    "SYNTHETIC_PREFIX",
    "ServiceIndex",
    "convert_protocol",
    "services_in",
    "synthetic_key",
]
