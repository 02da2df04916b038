"""The VirtualServices and DestinationRules of a push context as translation reads them: each with
its resolved hosts, exportTo and precedence, and DestinationRules for one host merged as Istio's
mergeDestinationRule does."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from pilot._gen import networking_pb2 as nw
from pilot.config.gateway_api.convert import GATEWAY_SEMANTICS, ROUTE_SEMANTICS
from pilot.config.objects import ConfigKey, ConfigObject, precedence
from pilot.translate import hosts
from pilot.translate.mesh_settings import MeshSettings
from pilot.translate.registry import PUBLIC, export_set

log = logging.getLogger("pilot.translate.context")

MESH_GATEWAY = "mesh"


@dataclass(frozen=True, slots=True)
class VirtualServiceEntry:
    key: ConfigKey
    hosts: tuple[str, ...]
    gateways: tuple[str, ...]
    export_to: frozenset[str]
    spec: nw.VirtualService
    created: datetime | None = None  # metadata.creationTimestamp
    # Converted from the Gateway API (istiod's UseGatewaySemantics: the annotation
    # internal.istio.io/route-semantics=gateway): a redirect uri "%PREFIX()%..." rewrites the prefix.
    gateway_semantics: bool = False

    @property
    def namespace(self) -> str:
        return self.key.namespace

    def precedence_in(self, namespace: str) -> tuple[int, tuple[bool, datetime, str, str]]:
        """Where this VirtualService stands among those a sidecar of ``namespace`` sees, as istiod
        lists them (push_context.go, VirtualServicesForGateway and SelectVirtualServices over its
        virtualServiceIndex): private to the namespace first (exported to its own namespace only),
        then exported to it by name, then public (``*``); within each, by creation time, name and
        namespace (sortConfigByCreationTime). The first one for a host wins it; the proxy's own
        namespace wins by itself only through a private VirtualService."""
        if PUBLIC in self.export_to:
            tier = 2
        elif self.namespace == namespace:
            tier = 0
        else:
            tier = 1
        return tier, precedence(self.created, self.key)

    @property
    def for_mesh(self) -> bool:
        return not self.gateways or MESH_GATEWAY in self.gateways


@dataclass(frozen=True, slots=True)
class DestinationRuleEntry:
    """A DestinationRule (or several for one host in one namespace, merged as Istio does)."""

    key: ConfigKey
    host: str
    export_to: frozenset[str]
    spec: nw.DestinationRule

    @property
    def namespace(self) -> str:
        return self.key.namespace


def merge_rules(rules: list[DestinationRuleEntry]) -> DestinationRuleEntry:
    """Istio's mergeDestinationRule: later rules add subsets with new names, and a traffic policy
    only if the first has none."""
    if len(rules) == 1:
        return rules[0]
    merged = nw.DestinationRule()
    merged.CopyFrom(rules[0].spec)
    names = {s.name for s in merged.subsets}
    for rule in rules[1:]:
        for subset in rule.spec.subsets:
            if subset.name in names:
                log.warning(
                    "%s: subset %r already defined by %s; ignored", rule.key, subset.name, rules[0].key
                )
                continue
            names.add(subset.name)
            merged.subsets.add().CopyFrom(subset)
        if not merged.HasField("traffic_policy") and rule.spec.HasField("traffic_policy"):
            merged.traffic_policy.CopyFrom(rule.spec.traffic_policy)
    return DestinationRuleEntry(rules[0].key, rules[0].host, rules[0].export_to, merged)


__all__ = ["MESH_GATEWAY", "DestinationRuleEntry", "VirtualServiceEntry", "merge_rules"]


def virtual_service_entry(
    obj: ConfigObject[nw.VirtualService],
    spec: nw.VirtualService,
    mesh: MeshSettings,
    earlier: VirtualServiceEntry | None = None,
) -> VirtualServiceEntry:
    """``spec`` is the object's spec, or for a root VirtualService its spec with delegates merged.
    ``earlier``: the entry of the same key in the previous context (with the same mesh settings),
    returned itself when made from this very spec, so pieces keyed by it carry over."""
    if earlier is not None and earlier.spec is spec and earlier.created == obj.created:
        return earlier
    return VirtualServiceEntry(
        key=obj.key,
        hosts=tuple(hosts.resolve_shortname(h, obj.namespace) for h in spec.hosts),
        gateways=tuple(spec.gateways),
        export_to=export_set(spec.export_to, obj.namespace, mesh.virtual_service_export_to),
        spec=spec,
        created=obj.created,
        gateway_semantics=(ROUTE_SEMANTICS, GATEWAY_SEMANTICS) in obj.annotations,
    )


def destination_rule_entry(
    obj: ConfigObject[nw.DestinationRule], mesh: MeshSettings, earlier: DestinationRuleEntry | None = None
) -> DestinationRuleEntry:
    """``earlier``: the entry of the same key in the previous context (with the same mesh settings),
    returned itself when made from this very spec."""
    if earlier is not None and earlier.spec is obj.spec:
        return earlier
    spec = obj.spec
    # A DestinationRule with a workload selector applies only to the workloads it selects in its
    # own namespace (Istio's SidecarScope.DestinationRule): visible there only, chosen by labels.
    if spec.HasField("workload_selector"):
        export_to: frozenset[str] = frozenset({obj.namespace})
    else:
        export_to = export_set(spec.export_to, obj.namespace, mesh.destination_rule_export_to)
    return DestinationRuleEntry(obj.key, hosts.resolve_shortname(spec.host, obj.namespace), export_to, spec)
