"""What a Gateway API object may refer to: ReferenceGrants, backends and certificates.

A reference to another namespace needs a ReferenceGrant in that namespace naming the referring kind
and namespace (apis/v1beta1/referencegrant_types.go). A backend is a Service (``NAME.NS.svc.DOMAIN``,
pilot's services being ServiceEntries, so it must be a host of one) or, as Istio adds, a
``networking.istio.io`` ``Hostname`` (any host) or ``ServiceEntry``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pilot.config.gateway_api import conditions as cond
from pilot.config.gateway_api.conditions import Condition

GATEWAY_API_GROUP = "gateway.networking.k8s.io"
ISTIO_GROUP = "networking.istio.io"
DOMAIN_SUFFIX = "cluster.local"  # Istio's default; pilot's --kube services use it too
# Folder mode has no Secrets: a certificateRef to Secret NS/NAME is read by the router's Envoy from
# ROOT/NS/NAME/tls.crt and tls.key (the keys of a kubernetes.io/tls Secret), ROOT being this folder
# unless the listener's ``tls.options`` names another (docs/gateway-api.md).
CERTIFICATE_ROOT = "/etc/pilot/gateway-certs"
CERTIFICATE_ROOT_OPTION = "pilot.io/certificate-root"


@dataclass(frozen=True, slots=True)
class Grant:
    """One ReferenceGrant: in ``namespace``, what may refer (from) to what (to)."""

    namespace: str
    sources: tuple[tuple[str, str, str], ...]  # (group, kind, namespace)
    targets: tuple[tuple[str, str, str], ...]  # (group, kind, name or "")


class References:
    """The ReferenceGrants and the service hosts of one snapshot."""

    def __init__(self, grants: Iterable[Grant], service_hosts: Mapping[str, str]) -> None:
        self._grants: dict[str, list[Grant]] = {}
        for grant in grants:
            self._grants.setdefault(grant.namespace, []).append(grant)
        self._hosts = service_hosts  # host → namespace of a ServiceEntry that declares it
        self.service_entry_hosts: dict[tuple[str, str], tuple[str, ...]] = {}

    def permitted(
        self, source: tuple[str, str, str], target_namespace: str, target: tuple[str, str, str]
    ) -> bool:
        """``source`` (group, kind, namespace) may refer to ``target`` (group, kind, name) in
        ``target_namespace``: the same namespace, or a grant there allows it."""
        if source[2] == target_namespace:
            return True
        group, kind, name = target
        return any(
            source in grant.sources
            and any(g == group and k == kind and n in ("", name) for g, k, n in grant.targets)
            for grant in self._grants.get(target_namespace, ())
        )

    def known_host(self, host: str) -> bool:
        return host in self._hosts


def read_grant(namespace: str, spec: Mapping[str, Any]) -> Grant:
    return Grant(
        namespace,
        tuple((f.get("group", ""), f.get("kind", ""), f.get("namespace", "")) for f in spec.get("from", ())),
        tuple((t.get("group", ""), t.get("kind", ""), t.get("name", "")) for t in spec.get("to", ())),
    )


def service_host(name: str, namespace: str) -> str:
    return f"{name}.{namespace}.svc.{DOMAIN_SUFFIX}"


@dataclass(frozen=True, slots=True)
class Backend:
    """A backendRef resolved: the destination host and port, or why it cannot be used."""

    host: str = ""
    port: int = 0
    problem: Condition | None = None


def resolve_backend(
    ref: Mapping[str, Any], route_kind: str, route_namespace: str, references: References
) -> Backend:
    """Istio's buildDestination: a Service, a ``Hostname`` or a ``ServiceEntry`` backendRef."""
    group, kind = ref.get("group", ""), ref.get("kind", "Service")
    name, namespace = str(ref["name"]), ref.get("namespace", route_namespace)
    port = int(ref.get("port", 0))
    source = (GATEWAY_API_GROUP, route_kind, route_namespace)
    if not references.permitted(source, namespace, (group, kind, name)):
        message = (
            f"backendRef {kind} {namespace}/{name} is in another namespace and no ReferenceGrant allows it"
        )
        return Backend(problem=Condition(cond.RESOLVED_REFS, False, cond.REF_NOT_PERMITTED, message))
    if group == "" and kind == "Service":
        host = service_host(name, namespace)
        if not references.known_host(host):
            message = f"backendRef Service {namespace}/{name}: no service {host} is known"
            return Backend(host, port, Condition(cond.RESOLVED_REFS, False, cond.BACKEND_NOT_FOUND, message))
        return Backend(host, port)
    if group == ISTIO_GROUP and kind == "Hostname":
        return Backend(name, port)
    if group == ISTIO_GROUP and kind == "ServiceEntry":
        hosts = references.service_entry_hosts.get((namespace, name), ())
        if not hosts:
            message = f"backendRef ServiceEntry {namespace}/{name} not found"
            return Backend(problem=Condition(cond.RESOLVED_REFS, False, cond.BACKEND_NOT_FOUND, message))
        return Backend(hosts[0], port)
    message = f"backendRef of kind {group or 'core'}/{kind} is not supported"
    return Backend(problem=Condition(cond.RESOLVED_REFS, False, cond.INVALID_KIND, message))


def certificate_files(
    ref: Mapping[str, Any], gateway_namespace: str, references: References, root: str = CERTIFICATE_ROOT
) -> tuple[str, str] | Condition:
    """The (certificate, key) files of a listener's certificateRef, or why it cannot be used."""
    group, kind = ref.get("group", ""), ref.get("kind", "Secret")
    name, namespace = str(ref["name"]), ref.get("namespace", gateway_namespace)
    if (group, kind) != ("", "Secret"):
        message = f"certificateRef of kind {group or 'core'}/{kind} is not supported; only Secret"
        return Condition(cond.RESOLVED_REFS, False, cond.INVALID_CERTIFICATE_REF, message)
    source = (GATEWAY_API_GROUP, "Gateway", gateway_namespace)
    if not references.permitted(source, namespace, ("", "Secret", name)):
        message = (
            f"certificateRef Secret {namespace}/{name} is in another namespace; no ReferenceGrant allows it"
        )
        return Condition(cond.RESOLVED_REFS, False, cond.REF_NOT_PERMITTED, message)
    folder = f"{root.rstrip('/')}/{namespace}/{name}"
    return f"{folder}/tls.crt", f"{folder}/tls.key"
