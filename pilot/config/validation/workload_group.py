"""WorkloadGroup checks, as Istio's ``ValidateWorkloadGroup`` (pkg/config/validation/validation.go) does,
with the template rules of Istio's CRD schema (ports, unix addresses).

The template is not a WorkloadEntry in full: its address is filled in for each workload that registers
(pilot/pkg/autoregistration: the proxy's IP replaces it), so an address is not required, and one that is
written is ignored (a warning).
"""

from __future__ import annotations

import re

from pilot._gen import networking_pb2 as nw
from pilot.config.validation.common import (
    Report,
    at,
    check_labels,
    check_port,
    check_port_name,
    check_unix_address,
    item,
)
from pilot.config.validation.service_entry import UNIX_PREFIX

_PROBE_HEADER_NAME_RE = re.compile(r"[-A-Za-z0-9]+")
PROBE_SCHEMES = ("", "HTTP", "HTTPS")
_NON_NEGATIVE = (
    ("period_seconds", "periodSeconds"),
    ("initial_delay_seconds", "initialDelaySeconds"),
    ("timeout_seconds", "timeoutSeconds"),
    ("success_threshold", "successThreshold"),
    ("failure_threshold", "failureThreshold"),
)


def validate_workload_group(spec: nw.WorkloadGroup, path: str, report: Report) -> None:
    if not spec.HasField("template"):
        report.error(at(path, "template"), "template is required")
        return
    if spec.HasField("metadata"):
        labels_path = at(at(path, "metadata"), "labels")
        report.check_all(labels_path, [f"invalid labels: {p}" for p in check_labels(spec.metadata.labels)])
    _template(spec.template, at(path, "template"), report)
    if spec.HasField("probe"):
        validate_readiness_probe(spec.probe, at(path, "probe"), report)


def _template(template: nw.WorkloadEntry, path: str, report: Report) -> None:
    """The CRD schema's rules for the template: valid port names and numbers, absolute unix paths."""
    address = template.address
    if address.startswith(UNIX_PREFIX):
        report.check(at(path, "address"), check_unix_address(address[len(UNIX_PREFIX) :]))
        if len(template.ports):
            report.error(at(path, "ports"), "UDS may not include ports")
    elif address:
        report.warn(
            at(path, "address"),
            "ignored: each WorkloadEntry of the group gets the address of the workload that registers",
        )
    for name, number in sorted(template.ports.items()):
        port_path = item(at(path, "ports"), name)
        report.check(port_path, check_port_name(name))
        report.check(port_path, check_port(number))


def validate_readiness_probe(probe: nw.ReadinessProbe, path: str, report: Report) -> None:
    for field, name in _NON_NEGATIVE:
        if getattr(probe, field) < 0:
            report.error(at(path, name), f"{name} must be non-negative")
    method = probe.WhichOneof("health_check_method")
    if method == "http_get":
        http, http_path = probe.http_get, at(path, "httpGet")
        report.check(at(http_path, "port"), check_port(http.port))
        if http.scheme not in PROBE_SCHEMES:
            report.error(at(http_path, "scheme"), 'httpGet.scheme must be one of "HTTPS", "HTTP"')
        for index, header in enumerate(http.http_headers):
            header_path = at(item(at(http_path, "httpHeaders"), index), "name")
            if not header.name:
                report.error(header_path, "header name cannot be empty")
            elif _PROBE_HEADER_NAME_RE.fullmatch(header.name) is None:
                report.error(header_path, f"header name {header.name} is not a valid header name")
    elif method == "tcp_socket":
        report.check(at(at(path, "tcpSocket"), "port"), check_port(probe.tcp_socket.port))
    elif method == "exec":
        if not len(probe.exec.command):
            report.error(at(at(path, "exec"), "command"), "exec.command is required")
    elif method == "grpc":
        # Istio's webhook knows only httpGet, tcpSocket and exec probes.
        report.error(at(path, "grpc"), "unknown health check method grpc")
    else:
        report.error(path, "a health check method is required: httpGet, tcpSocket or exec")
