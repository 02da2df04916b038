"""The compose topology moved to 127.0.0.1: one port per (pod, port), config and bootstraps rewritten.

Without Docker every container becomes a process on 127.0.0.1, where the pods' separate network
namespaces collapse into one. ``PortMap`` therefore gives every (pod, port) pair a port of its own,
and the config and the bootstraps are rewritten to match: a ServiceEntry's port belongs to the pod
of the sidecar that sees it (that listens on it; a port no sidecar sees stays as written), an
endpoint ``127.0.0.1`` to the pod of the Envoy that sees it, an endpoint named after a compose
service to that service's pod; every such address becomes 127.0.0.1. A Gateway server's port
belongs to the pod of the router its selector picks, and the server binds 127.0.0.1. Everything
else is used as written.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import yaml

from pilot.bootstrap import XDS_CLUSTER
from pilot.demo.compose_file import PILOT_SERVICE, XDS_PORT, EnvoyService
from pilot.localmesh.loopback import LOOPBACK, free_port
from pilot.xds.names import WILDCARD_ADDRESS

__all__ = ["PortMap", "exported_to", "localize_bootstrap", "localize_config"]

LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost"})


class PortMap:
    """A port on 127.0.0.1 for every (pod, container port): the pinned ones as given, others free."""

    def __init__(
        self, pinned: Mapping[tuple[str, int], int] | None = None, allocate: Callable[[], int] = free_port
    ) -> None:
        self._ports: dict[tuple[str, int], int] = dict(pinned or {})
        if len(set(self._ports.values())) != len(self._ports):
            raise ValueError(f"two pods pinned to one port: {self._ports}")
        self._allocate = allocate

    def __call__(self, pod: str, port: int) -> int:
        key = (pod, int(port))
        if key not in self._ports:
            taken = set(self._ports.values())
            found = self._allocate()
            while found in taken:
                found = self._allocate()
            self._ports[key] = found
        return self._ports[key]

    def items(self) -> list[tuple[tuple[str, int], int]]:
        return sorted(self._ports.items())


def exported_to(export_to: Sequence[str], namespace: str, target: str) -> bool:
    """Whether an object of ``namespace`` with ``exportTo: export_to`` is seen from ``target``
    (no exportTo: every namespace, the mesh's default)."""
    for entry in export_to or ["*"]:
        if entry == "*" or entry == target or (entry == "." and target == namespace):
            return True
    return False


def _one_pod(where: str, what: str, envoys: Sequence[EnvoyService]) -> str | None:
    """The pod of ``envoys`` (None if there are none); ValueError if they are in several pods."""
    pods = sorted({envoy.pod for envoy in envoys})
    if len(pods) > 1:
        raise ValueError(f"{where}: {what} in pods {', '.join(pods)}; on 127.0.0.1 they would share a port")
    return pods[0] if pods else None


def _localize_service_entry(
    doc: dict[str, Any],
    where: str,
    envoys: Sequence[EnvoyService],
    service_pods: Mapping[str, str],
    ports: Callable[[str, int], int],
    listeners: dict[str, set[tuple[str, int]]],
) -> None:
    metadata = doc.get("metadata") or {}
    spec = doc.get("spec") or {}
    if spec.get("workloadSelector"):
        raise ValueError(f"{where}: workloadSelector cannot be moved to 127.0.0.1")
    namespace = str(metadata.get("namespace") or "default")
    seen_by = [e for e in envoys if exported_to(list(spec.get("exportTo") or []), namespace, e.namespace)]
    sidecars = [e for e in seen_by if not e.is_router]  # routers listen on Gateway ports only
    listening_pod = _one_pod(where, "sidecars listen on its ports", sidecars)
    service_ports = list(spec.get("ports") or [])
    for port in service_ports:
        if "targetPort" in port:
            raise ValueError(f"{where}: targetPort cannot be moved to 127.0.0.1; give endpoint ports")
    for endpoint in spec.get("endpoints") or []:
        address = str(endpoint.get("address", ""))
        if address in LOOPBACK_NAMES:
            pod = _one_pod(where, f"Envoys that send to {address}", seen_by)
            if pod is None:
                raise ValueError(f"{where}: endpoint {address} belongs to no Envoy's pod: no Envoy sees it")
        else:
            pod = service_pods.get(address)
            if pod is None:
                raise ValueError(f"{where}: endpoint {address!r} is neither 127.0.0.1 nor a compose service")
        named = dict(endpoint.get("ports") or {})
        # An endpoint without a port for a service port is reached on the service port number.
        for port in service_ports:
            named.setdefault(str(port["name"]), int(port["number"]))
        endpoint["address"] = LOOPBACK
        endpoint["ports"] = {name: ports(pod, int(number)) for name, number in named.items()}
    if listening_pod is None:
        return  # nobody listens on its ports: they only name its clusters
    for port in service_ports:
        port["number"] = ports(listening_pod, int(port["number"]))
        for envoy in sidecars:
            listeners.setdefault(envoy.name, set()).add((WILDCARD_ADDRESS, port["number"]))


def _localize_gateway(
    doc: dict[str, Any],
    where: str,
    envoys: Sequence[EnvoyService],
    ports: Callable[[str, int], int],
    listeners: dict[str, set[tuple[str, int]]],
) -> None:
    spec = doc.get("spec") or {}
    routers = [e for e in envoys if e.selected_by(dict(spec.get("selector") or {}))]
    pod = _one_pod(where, "routers it selects are", routers)
    if pod is None:
        return  # it selects no router of compose.yaml: no listener anywhere
    for server in spec.get("servers") or []:
        bind = str(server.get("bind") or "")
        if bind not in ("", WILDCARD_ADDRESS, *LOOPBACK_NAMES):
            raise ValueError(f"{where}: a server bound to {bind!r} cannot be moved to 127.0.0.1")
        server["bind"] = LOOPBACK
        port = server["port"]
        port["number"] = ports(pod, int(port["number"]))
        for envoy in routers:
            listeners.setdefault(envoy.name, set()).add((LOOPBACK, port["number"]))


def localize_config(
    text: str,
    envoys: Sequence[EnvoyService],
    service_pods: Mapping[str, str],
    ports: Callable[[str, int], int],
    listeners: dict[str, set[tuple[str, int]]] | None = None,
) -> str | None:
    """The YAML ``text`` with its ServiceEntries and Gateways moved to 127.0.0.1 (see the module
    doc); None if it has neither. ``listeners`` collects, per Envoy (compose service name), the
    (address, local port) pairs it will listen on."""
    docs = list(yaml.safe_load_all(text))
    found: dict[str, set[tuple[str, int]]] = {} if listeners is None else listeners
    changed = False
    for doc in docs:
        if not isinstance(doc, dict) or doc.get("kind") not in ("ServiceEntry", "Gateway"):
            continue
        metadata = doc.get("metadata") or {}
        where = f"{doc['kind']} {metadata.get('namespace', 'default')}/{metadata.get('name')}"
        if doc["kind"] == "ServiceEntry":
            _localize_service_entry(doc, where, envoys, service_pods, ports, found)
        else:
            _localize_gateway(doc, where, envoys, ports, found)
        changed = True
    if not changed:
        return None
    return "---\n".join(yaml.safe_dump(doc, sort_keys=False) for doc in docs)


def localize_bootstrap(bootstrap: Mapping[str, Any], xds_port: int) -> dict[str, Any]:
    """A demo bootstrap pointing at pilot on ``127.0.0.1:xds_port``, with its admin on a port of
    the kernel's choosing (port 0). Raises ValueError if it does not point at ``pilot:15010``."""
    out: dict[str, Any] = copy.deepcopy(dict(bootstrap))
    moved = 0
    for cluster in out.get("static_resources", {}).get("clusters", []):
        if cluster.get("name") != XDS_CLUSTER:
            continue
        for group in cluster["load_assignment"]["endpoints"]:
            for lb_endpoint in group["lb_endpoints"]:
                address = lb_endpoint["endpoint"]["address"]["socket_address"]
                if (address["address"], int(address["port_value"])) != (PILOT_SERVICE, XDS_PORT):
                    raise ValueError(f"the xDS cluster points at {address}, not {PILOT_SERVICE}:{XDS_PORT}")
                address["address"] = LOOPBACK
                address["port_value"] = xds_port
                moved += 1
    if moved == 0:
        raise ValueError(f"no {XDS_CLUSTER} cluster endpoint in the bootstrap")
    if "admin" in out:
        out["admin"]["address"]["socket_address"]["port_value"] = 0
    return out
