"""Locality load-balancing checks (Istio's ``agent.ValidateLocalityLbSetting``), for DRs and the mesh."""

from __future__ import annotations

from pilot._gen import networking_pb2 as nw
from pilot.config.validation.common import Report, at, item

_TOPOLOGY_LABELS = (
    "topology.kubernetes.io/region",
    "topology.kubernetes.io/zone",
    "topology.istio.io/subzone",
)


def check_locality_lb_setting(
    setting: nw.LocalityLoadBalancerSetting, has_outlier: bool, path: str, report: Report
) -> None:
    if len(setting.distribute) and len(setting.failover):
        report.error(path, "can not simultaneously specify 'distribute' and 'failover'")
        return
    if len(setting.failover):
        for label in setting.failover_priority:
            if label in _TOPOLOGY_LABELS:
                report.error(
                    at(path, "failoverPriority"),
                    f"can not simultaneously set 'failover' and topology label '{label}' in "
                    "'failover_priority'",
                )
                return
    sources: list[str] = []
    for index, distribute in enumerate(setting.distribute):
        distribute_path = item(at(path, "distribute"), index)
        sources.append(getattr(distribute, "from"))
        total = 0
        for weight in distribute.to.values():
            if not 0 < weight <= 100:
                report.error(at(distribute_path, "to"), "locality weight must be in range [1, 100]")
                return
            total += weight
        if total != 100:
            report.error(at(distribute_path, "to"), f"total locality weight {total} != 100")
            return
        report.check(at(distribute_path, "to"), _check_localities(list(distribute.to)))
    report.check(at(path, "distribute"), _check_localities(sources))
    if (len(setting.failover) or len(setting.failover_priority)) and not has_outlier:
        report.warn(path, "outlier detection policy must be provided for failover")
    for index, failover in enumerate(setting.failover):
        failover_path = item(at(path, "failover"), index)
        source, target = getattr(failover, "from"), failover.to
        if source == target:
            report.error(failover_path, "locality lb failover settings must specify different regions")
        if "/" in source or "/" in target:
            report.error(failover_path, "locality lb failover only specify region")
        if "*" in source or "*" in target:
            report.error(failover_path, "locality lb failover region should not contain '*' wildcard")


def _check_localities(localities: list[str]) -> str | None:
    """Each locality ``region[/zone[/subzone]]``, with at most a trailing ``*``, and no overlaps."""
    regions: dict[str, dict[str, set[str]]] = {}
    for locality in localities:
        stars = locality.count("*")
        if stars and (stars > 1 or not locality.endswith("*")):
            return f"locality {locality} wildcard '*' number can not exceed 1 and must be in the end"
        if "*" in regions:
            return f"locality {locality} overlap with previous specified ones"
        parts = locality.split("/", 2)
        if any(part == "" for part in parts):
            return f"locality {locality} must not contain empty region/zone/subzone info"
        overlap = f"locality {locality} overlap with previous specified ones"
        region = parts[0]
        if len(parts) == 1:
            if region in regions:
                return overlap
            regions[region] = {"*": {"*"}}
            continue
        zones = regions.setdefault(region, {})
        if "*" in zones:
            return overlap
        zone = parts[1]
        if len(parts) == 2:
            if zone in zones:
                return overlap
            zones[zone] = {"*"}
            continue
        subzones = zones.setdefault(zone, set())
        if "*" in subzones or parts[2] in subzones:
            return overlap
        subzones.add(parts[2])
    return None
