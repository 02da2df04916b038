"""Locality-aware load balancing: a DestinationRule's (or the mesh's) ``localityLbSetting`` applied to a
cluster's load assignment.

Istio's loadbalancer.go (``GetLocalityLbSetting``, ``ApplyLocalityLoadBalancer``,
``applyLocalityWeights``, ``applyLocalityFailover``) and ``util.LocalityMatch`` / ``util.LbPriority``:
``distribute`` re-weights the localities seen from the proxy's locality (and empties the ones it does
not list); otherwise, when the cluster has outlier detection (failover never happens without it),
localities get priorities by how much of region/zone/subzone they share with the proxy, with
``failover`` naming the region to fall back to. The cluster then uses locality-weighted balancing.

pilot's proxy views carry no locality, so every proxy is in the empty locality, as an Istio proxy
whose node has none: a ``distribute`` rule applies when its ``from`` is ``*``, and failover ranks the
endpoints without a locality first.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TypeAlias

from envoy.config.core.v3 import base_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2

from pilot._gen import networking_pb2 as nw

LbSetting: TypeAlias = nw.LocalityLoadBalancerSetting

PROXY_LOCALITY = base_pb2.Locality()  # what pilot knows of a proxy's locality: nothing


def split(text: str) -> tuple[str, str, str]:
    region, zone, sub_zone = (text.split("/", 2) + ["", ""])[:3]
    return region, zone, sub_zone


def setting(mesh_setting: LbSetting | None, rule_setting: LbSetting | None) -> LbSetting | None:
    """Istio's GetLocalityLbSetting: the DestinationRule's, else the mesh's; ``enabled: false`` is none."""
    chosen = rule_setting if rule_setting is not None else mesh_setting
    if chosen is None or (chosen.HasField("enabled") and not chosen.enabled.value):
        return None
    return chosen


def uses_weighted_config(lb_setting: LbSetting | None, failover: bool) -> bool:
    """Whether the cluster needs ``locality_weighted_lb_config`` (Istio's applyLocalityLoadBalancer)."""
    if lb_setting is None:
        return False
    failing_over = failover and (len(lb_setting.failover) > 0 or len(lb_setting.failover_priority) > 0)
    return failing_over or len(lb_setting.distribute) > 0


def locality_match(proxy: base_pb2.Locality, rule: str) -> bool:
    """Istio's util.LocalityMatch: ``region/zone/subzone`` with ``*`` (and a missing part) matching any."""
    region, zone, sub_zone = split(rule)
    return (
        (region == "*" or proxy.region == region)
        and (zone in ("*", "") or proxy.zone == zone)
        and (sub_zone in ("*", "") or proxy.sub_zone == sub_zone)
    )


def lb_priority(proxy: base_pb2.Locality, endpoints: base_pb2.Locality) -> int:
    """Istio's util.LbPriority: 0 same subzone, 1 same zone, 2 same region, 3 elsewhere."""
    if proxy.region != endpoints.region:
        return 3
    if proxy.zone != endpoints.zone:
        return 2
    return 0 if proxy.sub_zone == endpoints.sub_zone else 1


def apply(
    assignment: endpoint_pb2.ClusterLoadAssignment,
    lb_setting: LbSetting | None,
    failover: bool,
    proxy: base_pb2.Locality = PROXY_LOCALITY,
) -> None:
    """Istio's ApplyLocalityLoadBalancer (failoverPriority is not applied: it needs proxy labels)."""
    if lb_setting is None:
        return
    if lb_setting.distribute:
        _apply_weights(assignment, proxy, lb_setting.distribute)
    elif failover:
        _apply_failover(assignment, proxy, lb_setting.failover)


def _apply_weights(
    assignment: endpoint_pb2.ClusterLoadAssignment,
    proxy: base_pb2.Locality,
    rules: Iterable[LbSetting.Distribute],
) -> None:
    groups = assignment.endpoints
    for rule in rules:
        if not locality_match(proxy, getattr(rule, "from")):  # ``from`` is a Python keyword
            continue
        unmatched = set(range(len(groups)))
        for target, weight in rule.to.items():
            original: dict[int, int] = {}
            for index, group in enumerate(groups):
                if index in unmatched and locality_match(group.locality, target):
                    unmatched.discard(index)
                    weighted = group.HasField("load_balancing_weight")
                    original[index] = group.load_balancing_weight.value if weighted else 1
            total = sum(original.values())
            for index, value in original.items():
                share = value * weight / total if total else 0
                if share > 0:
                    groups[index].load_balancing_weight.value = math.ceil(share)
        for index in unmatched:
            del groups[index].lb_endpoints[:]
        break


def _apply_failover(
    assignment: endpoint_pb2.ClusterLoadAssignment,
    proxy: base_pb2.Locality,
    rules: Iterable[LbSetting.Failover],
) -> None:
    by_priority: dict[int, list[endpoint_components_pb2.LocalityLbEndpoints]] = {}
    for group in assignment.endpoints:
        priority = lb_priority(proxy, group.locality)
        if priority == 3:
            for rule in rules:
                if getattr(rule, "from") == proxy.region:
                    if group.locality.region != rule.to:
                        priority = 4
                    break
        value = group.priority * 5 + priority
        group.priority = value
        by_priority.setdefault(value, []).append(group)
    # Envoy wants priorities 0..N without gaps.
    for rank, value in enumerate(sorted(by_priority)):
        for group in by_priority[value]:
            group.priority = rank


__all__ = ["PROXY_LOCALITY", "apply", "lb_priority", "locality_match", "setting", "uses_weighted_config"]
