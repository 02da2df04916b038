"""Kubernetes Services, EndpointSlices and Pods: read and checked into the records both sources keep.

Both sources read these core objects the same way: the cluster source (pilot.sources.kube) from the API
server's watches, the folder source (pilot.sources.files, through pilot.config.parse) from YAML files such
as Istio's ``samples/bookinfo/platform/kube/bookinfo.yaml`` or a ``kubectl get -o yaml`` dump.

Each record holds what the object's ServiceEntry needs (pilot.config.kube_services joins them): a
Service's type, cluster IPs, ports (each port's protocol from ``appProtocol``, else the port name's
prefix, as Istio's ConvertProtocol in pilot/pkg/serviceregistry/kube/conversion.go), selector, labels
and exportTo (the ``networking.istio.io/exportTo`` annotation); an EndpointSlice's ready endpoints and
ports; a Pod's IP, labels, service account, readiness and named container ports. A field Kubernetes
would not accept is a ``CoreProblem`` at its path in the object.

A Pod is also a proxy's identity: ``pod_identity`` makes the store object (kind ``Pod``, a WorkloadEntry
spec: address, labels, service account) that tells pilot.translate.views the labels and service account
of a proxy whose node id names the Pod and whose metadata gives none, as istiod reads them from the Pod.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pilot.config import kinds
from pilot.config.addresses import is_ip
from pilot.config.objects import ConfigKey, ConfigObject
from pilot.config.protocols import Protocol, parse_protocol
from pilot.config.schema import describe
from pilot.config.yamlpos import YamlPath, format_path

SERVICE = "Service"
ENDPOINT_SLICE = "EndpointSlice"
POD = kinds.POD

# (apiVersion, kind) of the core objects both sources read.
CORE_KINDS: Mapping[tuple[str, str], str] = {
    ("v1", SERVICE): SERVICE,
    ("discovery.k8s.io/v1", ENDPOINT_SLICE): ENDPOINT_SLICE,
    ("v1", POD): POD,
}

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
EXPORT_TO_ANNOTATION = "networking.istio.io/exportTo"

# Kubernetes' standard appProtocol names (Istio handles these for appProtocol only).
_K8S_APP_PROTOCOLS = {"kubernetes.io/h2c": "HTTP2", "kubernetes.io/ws": "HTTP", "kubernetes.io/wss": "HTTPS"}
# Ports that are TCP when nothing else says so: sniffing would break their server-first protocols.
_WELL_KNOWN_PORTS = frozenset({25, 53, 3306, 27017})
_SERVICE_TYPES = ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName")
_PORT_PROTOCOLS = ("TCP", "UDP", "SCTP")
_ADDRESS_TYPES = ("IPv4", "IPv6", "FQDN")


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


Key = tuple[str, str]  # (namespace, name)
Labels = tuple[tuple[str, str], ...]


# -- records: what pilot keeps of each object ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServicePortRecord:
    name: str
    port: int
    protocol: str
    target_port: int  # 0 when named or unset
    target_name: str = ""  # a named targetPort (resolved per Pod)


@dataclass(frozen=True, slots=True)
class ServiceRecord:
    type: str
    cluster_ips: tuple[str, ...]
    headless: bool
    external_name: str
    ports: tuple[ServicePortRecord, ...]
    labels: Labels
    export_to: tuple[str, ...]
    selector: Labels = ()


@dataclass(frozen=True, slots=True)
class SliceEndpoint:
    address: str
    pod: Key | None


@dataclass(frozen=True, slots=True)
class SliceRecord:
    service: str  # the owning Service's name ("" when unlabelled)
    endpoints: tuple[SliceEndpoint, ...]  # ready ones only
    ports: tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True)
class PodRecord:
    ip: str  # status.podIP; "" before the Pod is scheduled (or in a manifest)
    labels: Labels
    service_account: str
    ready: bool  # the Ready condition; unset (a manifest) counts as ready
    ports: tuple[tuple[str, int], ...] = ()  # named container ports


Record = ServiceRecord | SliceRecord | PodRecord


@dataclass(frozen=True, slots=True)
class CoreObject:
    """One core object as a file held it: ``key`` (kind Service, EndpointSlice or Pod) and its record."""

    key: ConfigKey
    record: Record


@dataclass(frozen=True, slots=True)
class CoreProblem:
    """A field of a core object that is not what Kubernetes accepts. ``where``: its path in the object."""

    where: YamlPath
    message: str

    @property
    def path(self) -> str:
        return format_path(self.where)


@dataclass(slots=True)
class _Reader:
    problems: list[CoreProblem] = field(default_factory=list)

    def problem(self, where: YamlPath, message: str) -> None:
        self.problems.append(CoreProblem(where, message))

    def mapping(self, value: Any, where: YamlPath) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.problem(where, f"must be a mapping, got {describe(value)}")
            return {}
        return value

    def items(self, value: Any, where: YamlPath) -> list[tuple[YamlPath, dict[str, Any]]]:
        """The mappings of the list at ``where``, each with its path."""
        if value is None:
            return []
        if not isinstance(value, list):
            self.problem(where, f"must be a list, got {describe(value)}")
            return []
        out = []
        for index, item in enumerate(value):
            if isinstance(item, dict):
                out.append(((*where, index), item))
            else:
                self.problem((*where, index), f"must be a mapping, got {describe(item)}")
        return out

    def string(self, value: Any, where: YamlPath, choices: tuple[str, ...] = ()) -> str:
        if value is None:
            return ""
        if not isinstance(value, str):
            self.problem(where, f"must be a string, got {describe(value)}")
            return ""
        if choices and value not in choices:
            self.problem(where, f'unsupported value "{value}": must be one of {", ".join(choices)}')
            return ""
        return value

    def port(self, value: Any, where: YamlPath, *, required: bool) -> int:
        if value is None:
            if required:
                self.problem(where, "required: a port number")
            return 0
        if not isinstance(value, int) or isinstance(value, bool):
            self.problem(where, f"must be a port number, got {describe(value)}")
            return 0
        if not 1 <= value <= 65535:
            self.problem(where, f"must be between 1 and 65535, got {value}")
            return 0
        return value

    def labels(self, value: Any, where: YamlPath) -> Labels:
        out = []
        for key, item in self.mapping(value, where).items():
            if isinstance(item, str):
                out.append((str(key), item))
            else:
                self.problem((*where, str(key)), f"must be a string, got {describe(item)}")
        return tuple(sorted(out))


def _labels(obj: Mapping[str, Any], name: str = "labels") -> Labels:
    """Metadata labels or annotations as the API server gives them (checked by pilot.config.metadata)."""
    metadata = obj.get("metadata")
    raw = metadata.get(name) if isinstance(metadata, dict) else None
    if not isinstance(raw, dict):
        return ()
    return tuple(sorted((str(k), str(v)) for k, v in raw.items()))


def read_service(obj: Mapping[str, Any]) -> tuple[ServiceRecord, list[CoreProblem]]:
    """A Service's record and what is wrong with its fields (Kubernetes' own rules, as far as pilot reads)."""
    read = _Reader()
    spec = read.mapping(obj.get("spec"), ("spec",))
    service_type = read.string(spec.get("type"), ("spec", "type"), _SERVICE_TYPES) or "ClusterIP"
    cluster_ip = read.string(spec.get("clusterIP"), ("spec", "clusterIP"))
    raw_ips = spec.get("clusterIPs")
    ips = [cluster_ip]
    if isinstance(raw_ips, list) and raw_ips:
        ips = [read.string(ip, ("spec", "clusterIPs", i)) for i, ip in enumerate(raw_ips)]
    elif raw_ips is not None and not isinstance(raw_ips, list):
        read.problem(("spec", "clusterIPs"), f"must be a list, got {describe(raw_ips)}")
    headless = cluster_ip == "None"
    for index, ip in enumerate(ips):
        if ip and ip != "None" and not is_ip(ip):
            where: YamlPath = ("spec", "clusterIPs", index) if raw_ips else ("spec", "clusterIP")
            read.problem(where, f'"{ip}" is not an IP address (nor "None")')
    ports: list[ServicePortRecord] = []
    names: set[str] = set()
    entries = read.items(spec.get("ports"), ("spec", "ports"))
    for where, raw in entries:
        number = read.port(raw.get("port"), (*where, "port"), required=True)
        name = read.string(raw.get("name"), (*where, "name"))
        if name in names:
            read.problem((*where, "name"), f'duplicate port name "{name}"')
        names.add(name)
        if not name and len(entries) > 1:
            read.problem((*where, "name"), "required: a Service with several ports must name each")
        protocol = read.string(raw.get("protocol"), (*where, "protocol"), _PORT_PROTOCOLS) or "TCP"
        app_protocol = read.string(raw.get("appProtocol"), (*where, "appProtocol"))
        target = raw.get("targetPort")
        target_port, target_name = 0, ""
        if isinstance(target, str) and not target.isdigit():
            target_name = target
        elif isinstance(target, str):  # "9080": an int in a string, as kubectl accepts it
            target_port = read.port(int(target), (*where, "targetPort"), required=False)
        else:
            target_port = read.port(target, (*where, "targetPort"), required=False)
        if number:
            ports.append(
                ServicePortRecord(
                    name=name,
                    port=number,
                    protocol=convert_protocol(number, name, protocol, app_protocol or None),
                    target_port=target_port,
                    target_name=target_name,
                )
            )
    annotations = dict(_labels(obj, "annotations"))
    export_to = tuple(
        item.strip() for item in annotations.get(EXPORT_TO_ANNOTATION, "").split(",") if item.strip()
    )
    record = ServiceRecord(
        type=service_type,
        cluster_ips=() if headless else tuple(ip for ip in ips if ip and ip != "None" and is_ip(ip)),
        headless=headless,
        external_name=read.string(spec.get("externalName"), ("spec", "externalName")),
        ports=tuple(ports),
        labels=_labels(obj),
        export_to=export_to,
        selector=read.labels(spec.get("selector"), ("spec", "selector")),
    )
    return record, read.problems


def read_endpoint_slice(obj: Mapping[str, Any]) -> tuple[SliceRecord, list[CoreProblem]]:
    read = _Reader()
    labels = dict(_labels(obj))
    address_type = read.string(obj.get("addressType"), ("addressType",), _ADDRESS_TYPES)
    if obj.get("addressType") is None:
        read.problem(("addressType",), f"required: one of {', '.join(_ADDRESS_TYPES)}")
    usable = address_type in ("IPv4", "IPv6")  # FQDN slices are not addresses Envoy can use
    metadata = obj.get("metadata")
    own_namespace = metadata.get("namespace") if isinstance(metadata, dict) else ""
    endpoints = []
    for where, raw in read.items(obj.get("endpoints"), ("endpoints",)):
        conditions = read.mapping(raw.get("conditions"), (*where, "conditions"))
        ready = conditions.get("ready")
        addresses = raw.get("addresses")
        if not isinstance(addresses, list) or not addresses:
            read.problem((*where, "addresses"), "required: a list of at least one address")
            continue
        address = read.string(addresses[0], (*where, "addresses", 0))
        if usable and address and not is_ip(address):
            read.problem((*where, "addresses", 0), f'"{address}" is not an {address_type} address')
            continue
        if ready is False or not usable or not address:
            continue  # unset means ready (EndpointConditions: "nil should be interpreted as true")
        ref = raw.get("targetRef")
        pod = None
        if isinstance(ref, dict) and ref.get("kind") == POD and ref.get("name"):
            pod = (str(ref.get("namespace") or own_namespace or ""), str(ref["name"]))
        endpoints.append(SliceEndpoint(address, pod))
    ports = []
    for where, raw in read.items(obj.get("ports"), ("ports",)):
        number = read.port(raw.get("port"), (*where, "port"), required=False)
        name = read.string(raw.get("name"), (*where, "name"))
        if number:
            ports.append((name, number))
    return SliceRecord(labels.get(SERVICE_NAME_LABEL, ""), tuple(endpoints), tuple(ports)), read.problems


def read_pod(obj: Mapping[str, Any]) -> tuple[PodRecord, list[CoreProblem]]:
    read = _Reader()
    spec = read.mapping(obj.get("spec"), ("spec",))
    status = read.mapping(obj.get("status"), ("status",))
    account = read.string(spec.get("serviceAccountName"), ("spec", "serviceAccountName"))
    if not account:
        account = read.string(spec.get("serviceAccount"), ("spec", "serviceAccount"))
    ip = read.string(status.get("podIP"), ("status", "podIP"))
    if ip and not is_ip(ip):
        read.problem(("status", "podIP"), f'"{ip}" is not an IP address')
        ip = ""
    ready = True
    for where, condition in read.items(status.get("conditions"), ("status", "conditions")):
        if condition.get("type") == "Ready":
            ready = read.string(condition.get("status"), (*where, "status")) != "False"
    ports = []
    for container_where, container in read.items(spec.get("containers"), ("spec", "containers")):
        for where, raw in read.items(container.get("ports"), (*container_where, "ports")):
            number = read.port(raw.get("containerPort"), (*where, "containerPort"), required=True)
            name = read.string(raw.get("name"), (*where, "name"))
            if name and number:
                ports.append((name, number))
    return PodRecord(ip, _labels(obj), account, ready, tuple(sorted(ports))), read.problems


READERS: Mapping[str, Callable[[Mapping[str, Any]], tuple[Record, list[CoreProblem]]]] = {
    SERVICE: read_service,
    ENDPOINT_SLICE: read_endpoint_slice,
    POD: read_pod,
}


def pod_identity(namespace: str, name: str, pod: PodRecord, origin: str) -> ConfigObject:
    """The store object that says who a proxy in this Pod is (kind Pod, a WorkloadEntry spec)."""
    spec: Any = kinds.POD_INFO.new_spec()
    spec.address = pod.ip
    spec.labels.update(pod.labels)
    spec.service_account = pod.service_account
    return ConfigObject(ConfigKey(POD, namespace, name), "v1", spec, origin, labels=pod.labels)


__all__ = [
    "CORE_KINDS",
    "ENDPOINT_SLICE",
    "POD",
    "READERS",
    "SERVICE",
    "CoreObject",
    "CoreProblem",
    "PodRecord",
    "Record",
    "ServiceRecord",
    "SliceRecord",
    "convert_protocol",
    "pod_identity",
    "read_endpoint_slice",
    "read_pod",
    "read_service",
]
