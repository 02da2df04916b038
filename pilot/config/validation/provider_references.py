"""What CUSTOM AuthorizationPolicies and the mesh config's ext_authz providers name across objects:
warnings on the object at fault, found over every served object (pilot.config.store ``errors``).

- a CUSTOM policy whose ``provider.name`` is no ext_authz provider of the mesh config;
- an ext_authz provider whose ``service`` no ServiceEntry (or Kubernetes Service, which the
  sources turn into one) defines, or that names a bare host several namespaces define, where Istio's
  ``model.LookupCluster`` fails.

Either way istiod (and pilot, pilot.translate.ext_authz) denies the requests the policies' rules
match: the warning says why, where the object is read.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping

from pilot._gen import networking_pb2 as nw
from pilot._gen import security_pb2 as sec
from pilot.config import kinds
from pilot.config.objects import ConfigObject, FieldError
from pilot.config.validation.common import at, item
from pilot.config.validation.extension_providers import EXT_AUTHZ_KINDS

DENIED = "requests the rules of CUSTOM policies naming it match are denied"


def reference_problems(objects: Iterable[ConfigObject]) -> list[FieldError]:
    """Every warning between ``objects``: the first MeshConfig by key is the one translation reads."""
    policies: list[ConfigObject[sec.AuthorizationPolicy]] = []
    meshes: list[ConfigObject[nw.MeshConfig]] = []
    hosts: dict[str, set[str]] = {}  # ServiceEntry host -> namespaces
    for obj in objects:
        if kinds.AUTHORIZATION_POLICY_INFO.holds(obj):
            if obj.spec.action == sec.AuthorizationPolicy.CUSTOM and obj.spec.provider.name:
                policies.append(obj)
        elif kinds.MESH_CONFIG_INFO.holds(obj):
            meshes.append(obj)
        elif kinds.SERVICE_ENTRY_INFO.holds(obj):
            for host in obj.spec.hosts:
                hosts.setdefault(host, set()).add(obj.namespace)
    mesh = min(meshes, key=lambda m: (m.key.namespace, m.key.name)) if meshes else None
    return [*_unknown_providers(policies, mesh), *(_unknown_services(mesh, hosts) if mesh else ())]


def _unknown_providers(
    policies: list[ConfigObject[sec.AuthorizationPolicy]], mesh: ConfigObject[nw.MeshConfig] | None
) -> list[FieldError]:
    providers = mesh.spec.extension_providers if mesh else ()
    known = {p.name for p in providers if p.WhichOneof("provider") in EXT_AUTHZ_KINDS}
    shown = ", ".join(sorted(known)) or "none"
    out = []
    for policy in policies:
        name = policy.spec.provider.name
        if name not in known:
            message = (
                f'provider "{name}" is not an ext_authz extension provider of the mesh config '
                f"(MeshConfig extensionProviders: {shown}); requests this policy's rules match are denied"
            )
            out.append(
                FieldError(policy.origin, message, policy.key, "spec.provider.name", severity="warning")
            )
    return out


def _unknown_services(mesh: ConfigObject[nw.MeshConfig], hosts: dict[str, set[str]]) -> list[FieldError]:
    out = []
    providers = at(kinds.MESH_CONFIG_INFO.spec_path, "extensionProviders")
    for index, provider in enumerate(mesh.spec.extension_providers):
        kind = provider.WhichOneof("provider")
        if kind not in EXT_AUTHZ_KINDS:
            continue
        service = getattr(provider, kind).service
        problem = lookup_problem(service, hosts)
        if problem:
            json_kind = provider.DESCRIPTOR.fields_by_name[kind].json_name
            where = at(at(item(providers, index), json_kind), "service")
            message = f"extension provider {provider.name}: {problem}; {DENIED}"
            out.append(FieldError(mesh.origin, message, mesh.key, where, severity="warning"))
    return out


def service_host(service: str) -> str:
    """The hostname a provider's ``service`` (``host`` or ``namespace/host``) names."""
    return service.rpartition("/")[2]


def lookup_problem(service: str, hosts: Mapping[str, Collection[str]]) -> str:
    """Why Istio's LookupCluster finds no service for ``service`` among ``hosts`` (each hostname's
    namespaces); empty when it finds one, whose hostname is ``service_host(service)``."""
    if not service:
        return ""  # an error of the provider itself (pilot.config.validation.extension_providers)
    namespace, slash, host = service.partition("/")
    if slash:
        if namespace in hosts.get(host, ()):
            return ""
    else:
        namespaces = hosts.get(service, ())
        if len(namespaces) == 1:
            return ""
        if len(namespaces) > 1:
            return (
                f"{service} is defined in namespaces {sorted(namespaces)}, name one as <namespace>/{service}"
            )
    return f"no ServiceEntry or Service defines {service}"


__all__ = ["lookup_problem", "reference_problems", "service_host"]
