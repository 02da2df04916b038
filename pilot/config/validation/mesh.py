"""Mesh config checks: the parts of Istio's ``agent.ValidateMeshConfig`` that pilot's MeshConfig has.

Istio validates a mesh config merged over its defaults; here only the fields the user set are checked.
"""

from __future__ import annotations

from pilot._gen import networking_pb2 as nw
from pilot.config.validation.common import (
    Report,
    at,
    check_duration,
    check_port,
    duration_nanos,
    is_dns1123_label,
    item,
)
from pilot.config.validation.extension_providers import validate_extension_providers
from pilot.config.validation.locality import check_locality_lb_setting

_MS = 1_000_000
_HOUR = 3600 * 1_000_000_000


def validate_mesh_config(mesh: nw.MeshConfig, path: str, report: Report) -> None:
    if mesh.proxy_listen_port:
        if (problem := check_port(mesh.proxy_listen_port)) is not None:
            report.error(at(path, "proxyListenPort"), f"invalid proxy listen port: {problem}")
    if mesh.HasField("connect_timeout"):
        problem = check_duration(mesh.connect_timeout)
        nanos = duration_nanos(mesh.connect_timeout)
        if problem is None and not _MS <= nanos <= _HOUR:
            problem = f"time {nanos / 1e9:g}s must be >1ms and <1h0m0s"
        if problem is not None:
            report.error(at(path, "connectTimeout"), f"invalid connect timeout: {problem}")
    if mesh.HasField("protocol_detection_timeout"):
        nanos = duration_nanos(mesh.protocol_detection_timeout)
        if nanos != 0 and nanos % _MS:
            report.error(
                at(path, "protocolDetectionTimeout"),
                "invalid protocol detection timeout: only durations to ms precision are supported",
            )
    if mesh.HasField("locality_lb_setting"):
        check_locality_lb_setting(mesh.locality_lb_setting, True, at(path, "localityLbSetting"), report)
    if mesh.trust_domain:
        report.check(at(path, "trustDomain"), _trust_domain(mesh.trust_domain, "trustDomain: "))
    for index, alias in enumerate(mesh.trust_domain_aliases):
        prefix = f"trustDomainAliases[{index}], domain `{alias}` : "
        report.check(item(at(path, "trustDomainAliases"), index), _trust_domain(alias, prefix))
    validate_extension_providers(mesh, path, report)


def _trust_domain(domain: str, prefix: str) -> str | None:
    if not domain:
        return f"{prefix}empty domain name not allowed"
    labels = domain.split(".")
    for index, label in enumerate(labels):
        if index == len(labels) - 1 and label == "":
            return None
        if not is_dns1123_label(label):
            return f'{prefix}trust domain name "{domain}" invalid'
    return None
