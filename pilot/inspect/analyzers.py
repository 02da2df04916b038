"""Istio's config analyzers (``istioctl analyze``) as pure functions over parsed config objects.

Each analyzer takes a :class:`~pilot.inspect.mesh.Mesh` (every object of a folder, indexed) and
returns :class:`~pilot.inspect.messages.Message` values with Istio's code, name and level (the
analyzers under istio/istio pkg/config/analysis/analyzers). Checks that need workloads run only where
the folder knows some (WorkloadEntries, ServiceEntry endpoints).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TypeVar

from pilot._gen import networking_pb2 as net
from pilot.config import kinds
from pilot.config.objects import ConfigKey, ConfigObject
from pilot.config.yamlpos import YamlPath
from pilot.inspect import peer_authentication_conflicts as pa_conflicts
from pilot.inspect.mesh import Mesh, Workload, fqdn, host_matches, selects
from pilot.inspect.messages import (
    CONFLICTING_DR_SELECTORS,
    CONFLICTING_GATEWAYS,
    CONFLICTING_MESH_GATEWAY_HOSTS,
    CONFLICTING_PEER_AUTHENTICATION_SELECTORS,
    CONFLICTING_SIDECAR_SELECTORS,
    GATEWAY_PORT_NOT_ON_WORKLOAD,
    LEVELS,
    MULTIPLE_SIDECARS_WITHOUT_SELECTOR,
    MULTIPLE_WIDE_PEER_AUTHENTICATIONS,
    NO_SERVER_CERT_VERIFICATION_DR,
    NO_SERVER_CERT_VERIFICATION_PORT,
    REFERENCED_RESOURCE_NOT_FOUND,
    SCHEMA_VALIDATION_ERROR,
    SUBSET_SELECTS_NO_PODS,
    Message,
    MessageType,
)
from pilot.translate.context import MeshSettings

MESH_GATEWAY = "mesh"


def _message(kind: MessageType, text: str, obj: ConfigObject | None, path: YamlPath = ()) -> Message:
    return Message(kind, text, obj.key if obj else None, obj.origin if obj else "", path=path)


# -- IST0106 ------------------------------------------------------------------------------------


def schema_validation(mesh: Mesh) -> list[Message]:
    """pilot's own validation errors (warnings stay warnings), as Istio's SchemaValidationError."""
    out = []
    for error in mesh.errors:
        level: MessageType = SCHEMA_VALIDATION_ERROR
        if error.severity == "warning":
            level = MessageType(SCHEMA_VALIDATION_ERROR.code, SCHEMA_VALIDATION_ERROR.name, "Warning")
        where = f"{error.path}: " if error.path else ""
        out.append(
            Message(
                level, f"Schema validation error: {where}{error.message}", error.key, error.origin, error.line
            )
        )
    return out


# -- IST0101 --------------------------------------------------------------------------------------


def _destinations(vs: net.VirtualService) -> Iterable[tuple[YamlPath, net.Destination]]:
    """Every destination with its field path (``spec.http[0].route[1].destination``)."""
    for i, http in enumerate(vs.http):
        for j, route in enumerate(http.route):
            yield ("spec", "http", i, "route", j, "destination"), route.destination
        if http.HasField("mirror"):
            yield ("spec", "http", i, "mirror"), http.mirror
    for i, tls in enumerate(vs.tls):
        for j, tls_route in enumerate(tls.route):
            yield ("spec", "tls", i, "route", j, "destination"), tls_route.destination
    for i, tcp in enumerate(vs.tcp):
        for j, tcp_route in enumerate(tcp.route):
            yield ("spec", "tcp", i, "route", j, "destination"), tcp_route.destination


def referenced_resources(mesh: Mesh) -> list[Message]:
    """A VirtualService naming a gateway, a destination host or a host+subset that does not exist
    (istio virtualservice/gateways.go, destinationhosts.go, destinationrules.go)."""
    gateways = {(gw.namespace, gw.name) for gw in mesh.of(kinds.GATEWAY_INFO)}
    services = [host for host, _ in mesh.service_hosts()]
    subsets: dict[str, set[str]] = defaultdict(set)
    for dr in mesh.of(kinds.DESTINATION_RULE_INFO):
        subsets[fqdn(dr.spec.host, dr.namespace)].update(s.name for s in dr.spec.subsets)
    out = []
    for vs in mesh.of(kinds.VIRTUAL_SERVICE_INFO):
        for g, gateway in enumerate(vs.spec.gateways):
            if gateway == MESH_GATEWAY:
                continue
            namespace, _, name = gateway.rpartition("/")
            if (namespace or vs.namespace, name) not in gateways:
                text = f'Referenced gateway not found: "{namespace or vs.namespace}/{name}"'
                out.append(_message(REFERENCED_RESOURCE_NOT_FOUND, text, vs, ("spec", "gateways", g)))
        for path, destination in _destinations(vs.spec):
            host = fqdn(destination.host, vs.namespace)
            if not any(host_matches(host, fqdn(known, vs.namespace)) for known in services):
                text = f'Referenced host not found: "{destination.host}"'
                out.append(_message(REFERENCED_RESOURCE_NOT_FOUND, text, vs, (*path, "host")))
            elif destination.subset and destination.subset not in subsets.get(host, set()):
                text = (
                    "Referenced host+subset in destinationrule not found: "
                    f'"{destination.host}+{destination.subset}"'
                )
                out.append(_message(REFERENCED_RESOURCE_NOT_FOUND, text, vs, (*path, "subset")))
    return out


def subsets_select_workloads(mesh: Mesh) -> list[Message]:
    """A DestinationRule subset whose labels no workload of its host has (istio
    destinationrule/subset.go), where the folder knows that host's workloads."""
    workloads = mesh.workloads()
    out = []
    for dr in mesh.of(kinds.DESTINATION_RULE_INFO):
        host = fqdn(dr.spec.host, dr.namespace)
        entries = [se for known, se in mesh.service_hosts() if host_matches(host, fqdn(known, se.namespace))]
        candidates = [
            w
            for se in entries
            for w in workloads
            if w.source == str(se.key)
            or (se.spec.HasField("workload_selector") and selects(se.spec.workload_selector.labels, w.labels))
        ]
        if not candidates:
            continue
        for i, subset in enumerate(dr.spec.subsets):
            if not any(selects(subset.labels, w.labels) for w in candidates):
                text = (
                    f"The Subset {subset.name} defined in the DestinationRule does not select any pods. "
                    "Which may lead to 503 UH (NoHealthyUpstream)."
                )
                out.append(_message(SUBSET_SELECTS_NO_PODS, text, dr, ("spec", "subsets", i)))
    return out


# -- IST0104, IST0145 -----------------------------------------------------------------------------


def gateway_ports(mesh: Mesh) -> list[Message]:
    """A Gateway server port that no workload its selector picks exposes, where it picks some."""
    workloads = mesh.workloads()
    out = []
    for gw in mesh.of(kinds.GATEWAY_INFO):
        selector = dict(gw.spec.selector)
        picked = [w for w in workloads if selector and selects(selector, w.labels)]
        if not picked:
            continue
        exposed = frozenset().union(*(w.ports for w in picked))
        for i, server in enumerate(gw.spec.servers):
            if server.port.number not in exposed:
                text = (
                    "The gateway refers to a port that is not exposed on the workload "
                    f"(pod selector {_selector_text(selector)}; port {server.port.number})"
                )
                out.append(_message(GATEWAY_PORT_NOT_ON_WORKLOAD, text, gw, ("spec", "servers", i, "port")))
    return out


def _selector_text(selector: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(selector.items()))


def _strip_namespace(host: str) -> str:
    return host.rpartition("/")[2]


def conflicting_gateways(mesh: Mesh) -> list[Message]:
    """Gateways with the same selector, port and bind whose hosts overlap (istio
    gateway/conflictinggateway.go, host duplicates as model.CheckDuplicates)."""
    gateways = mesh.of(kinds.GATEWAY_INFO)
    out = []
    for gw in gateways:
        selector = _selector_text(gw.spec.selector)
        for i, server in enumerate(gw.spec.servers):
            others = sorted(
                f"{other.namespace}/{other.name}"
                for other in gateways
                if other.key != gw.key and _selector_text(other.spec.selector) == selector
                for theirs in other.spec.servers
                if theirs.port.number == server.port.number
                and theirs.bind == server.bind
                and any(
                    host_matches(_strip_namespace(a), _strip_namespace(b))
                    for a in server.hosts
                    for b in theirs.hosts
                )
            )
            if others:
                text = (
                    f"Conflict with gateways {','.join(dict.fromkeys(others))} "
                    f"(workload selector {selector}, "
                    f"port {server.port.number}, hosts {','.join(server.hosts)})."
                )
                out.append(_message(CONFLICTING_GATEWAYS, text, gw, ("spec", "servers", i)))
    return out


# -- IST0109 --------------------------------------------------------------------------------------


def conflicting_mesh_gateway_hosts(mesh: Mesh) -> list[Message]:
    """Two VirtualServices bound to the mesh gateway for one host (istio
    virtualservice/conflictingmeshgatewayhosts.go; exportTo: all namespaces only)."""
    by_host: dict[str, list[ConfigObject[net.VirtualService]]] = defaultdict(list)
    for vs in mesh.of(kinds.VIRTUAL_SERVICE_INFO):
        if vs.spec.gateways and MESH_GATEWAY not in vs.spec.gateways:
            continue
        if list(vs.spec.export_to) not in ([], ["*"]):
            continue
        for host in dict.fromkeys(fqdn(h, vs.namespace) for h in vs.spec.hosts):
            by_host[host].append(vs)
    out = []
    for host, services in sorted(by_host.items()):
        if len(services) < 2:
            continue
        names = ",".join(sorted(f"{vs.namespace}/{vs.name}" for vs in services))
        for vs in services:
            text = (
                f"The VirtualServices {names} associated with mesh gateway define the same host {host} "
                "which can lead to undefined behavior. This can be fixed by merging the conflicting "
                "VirtualServices into a single resource."
            )
            out.append(_message(CONFLICTING_MESH_GATEWAY_HOSTS, text, vs, ("spec", "hosts")))
    return out


# -- IST0128, IST0129 -----------------------------------------------------------------------------

_VERIFYING_MODES = (net.ClientTLSSettings.SIMPLE, net.ClientTLSSettings.MUTUAL)


def _unverified(tls: net.ClientTLSSettings, selected: bool) -> bool:
    # Istio's condition, as written (destinationrule/ca-certificates.go).
    return tls.mode in _VERIFYING_MODES and not tls.ca_certificates and not (tls.credential_name and selected)


def destination_rule_tls(mesh: Mesh) -> list[Message]:
    """SIMPLE or MUTUAL TLS to a server whose certificate nothing verifies (no caCertificates)."""
    out = []
    for dr in mesh.of(kinds.DESTINATION_RULE_INFO):
        policy, selected = dr.spec.traffic_policy, dr.spec.HasField("workload_selector")
        settings: list[tuple[net.ClientTLSSettings, str, YamlPath]] = [
            (policy.tls, "", ("spec", "trafficPolicy", "tls"))
        ]
        settings += [
            (
                port.tls,
                f" at port number:{port.port.number}",
                ("spec", "trafficPolicy", "portLevelSettings", k, "tls"),
            )
            for k, port in enumerate(policy.port_level_settings)
        ]
        for tls, at_port, path in settings:
            if not _unverified(tls, selected):
                continue
            text = (
                f"DestinationRule {dr.namespace}/{dr.name} in namespace {dr.namespace} has TLS mode set to "
                f"{net.ClientTLSSettings.TLSmode.Name(tls.mode)} but no caCertificates are set to validate "
                f"server identity for host: {dr.spec.host}{at_port}"
            )
            kind = NO_SERVER_CERT_VERIFICATION_PORT if at_port else NO_SERVER_CERT_VERIFICATION_DR
            out.append(_message(kind, text, dr, path))
    return out


# -- selector conflicts ---------------------------------------------------------------------------


def sidecar_selectors(mesh: Mesh) -> list[Message]:
    """Two Sidecars of a namespace without a selector (IST0111), or selecting one known workload
    (IST0110) (istio sidecar/selector.go)."""
    out: list[Message] = []
    by_namespace: dict[str, list[ConfigObject[net.Sidecar]]] = defaultdict(list)
    for sidecar in mesh.of(kinds.SIDECAR_INFO):
        by_namespace[sidecar.namespace].append(sidecar)
    workloads = mesh.workloads()
    for namespace, sidecars in sorted(by_namespace.items()):
        bare = [s for s in sidecars if not s.spec.workload_selector.labels]
        if len(bare) > 1:
            names = ",".join(s.name for s in bare)
            for sidecar in bare:
                text = (
                    f'The Sidecars [{names}] in namespace "{namespace}" have no workload selector, '
                    "which can lead to undefined behavior."
                )
                out.append(_message(MULTIPLE_SIDECARS_WITHOUT_SELECTOR, text, sidecar, ("metadata", "name")))
        selected = [s for s in sidecars if s.spec.workload_selector.labels]
        out.extend(
            _selector_conflicts(
                selected,
                [w for w in workloads if w.namespace == namespace],
                lambda s: s.spec.workload_selector.labels,
                f'The Sidecars [{{names}}] in namespace "{namespace}" select the same workload pod '
                '"{workload}", which can lead to undefined behavior.',
                CONFLICTING_SIDECAR_SELECTORS,
            )
        )
    return out


def destination_rule_selectors(mesh: Mesh) -> list[Message]:
    """Two DestinationRules of one namespace for one host whose workloadSelectors pick one known
    workload: which applies to it is undefined."""
    groups: dict[tuple[str, str], list[ConfigObject[net.DestinationRule]]] = defaultdict(list)
    for dr in mesh.of(kinds.DESTINATION_RULE_INFO):
        if dr.spec.workload_selector.match_labels:
            groups[(dr.namespace, fqdn(dr.spec.host, dr.namespace))].append(dr)
    workloads = mesh.workloads()
    out: list[Message] = []
    for (namespace, host), rules in sorted(groups.items()):
        out.extend(
            _selector_conflicts(
                rules,
                [w for w in workloads if w.namespace == namespace],
                lambda dr: dr.spec.workload_selector.match_labels,
                f'The DestinationRules [{{names}}] for host {host} in namespace "{namespace}" '
                'select the same workload "{workload}", which can lead to undefined behavior.',
                CONFLICTING_DR_SELECTORS,
            )
        )
    return out


_Selecting = TypeVar("_Selecting", bound=ConfigObject)


def _selector_conflicts(
    objects: Sequence[_Selecting],
    workloads: Sequence[Workload],
    selector: Callable[[_Selecting], Mapping[str, str]],
    template: str,  # str.format with {names} and {workload}
    kind: MessageType,
) -> list[Message]:
    out = []
    reported: set[ConfigKey] = set()
    for workload in workloads:
        picking = [obj for obj in objects if selects(selector(obj), workload.labels)]
        if len(picking) < 2:
            continue
        names = ",".join(obj.name for obj in picking)
        for obj in picking:
            if obj.key not in reported:
                reported.add(obj.key)
                text = template.format(names=names, workload=workload.source)
                out.append(_message(kind, text, obj, ("spec", "workloadSelector")))
    return out


def peer_authentications(mesh: Mesh) -> list[Message]:
    """PeerAuthentications that lose to an older one of their level (PLT0002 mesh- or
    namespace-wide, PLT0003 on a known workload), on each ignored one, naming the winner
    (pilot.inspect.peer_authentication_conflicts)."""
    meshes = mesh.of(kinds.MESH_CONFIG_INFO)
    root = (MeshSettings.from_spec(meshes[0].spec) if meshes else MeshSettings()).root_namespace
    policies = mesh.of(kinds.PEER_AUTHENTICATION_INFO)
    workloads = [(w.namespace, w.labels, w.source) for w in mesh.workloads()]
    found = [
        (MULTIPLE_WIDE_PEER_AUTHENTICATIONS, conflict, ("metadata", "name"))
        for conflict in pa_conflicts.wide_conflicts(policies)
    ]
    found += [
        (CONFLICTING_PEER_AUTHENTICATION_SELECTORS, conflict, ("spec", "selector"))
        for conflict in pa_conflicts.workload_conflicts(policies, workloads, root)
    ]
    return [_message(kind, conflict.text(root), conflict.ignored, path) for kind, conflict, path in found]


ANALYZERS: tuple[Callable[[Mesh], list[Message]], ...] = (
    schema_validation,
    referenced_resources,
    subsets_select_workloads,
    gateway_ports,
    conflicting_gateways,
    conflicting_mesh_gateway_hosts,
    destination_rule_tls,
    sidecar_selectors,
    destination_rule_selectors,
    peer_authentications,
)


def analyze(mesh: Mesh) -> list[Message]:
    """Every analyzer's messages, errors first, then by object."""
    found = [message for analyzer in ANALYZERS for message in analyzer(mesh)]
    return sorted(
        found,
        key=lambda m: (LEVELS.index(m.type.level), m.origin, m.line or 0, str(m.key or ""), m.type.code),
    )
