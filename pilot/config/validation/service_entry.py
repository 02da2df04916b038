"""ServiceEntry and WorkloadEntry checks, as Istio's ``ValidateServiceEntry``/``ValidateWorkloadEntry`` do."""

from __future__ import annotations

from pilot._gen import networking_pb2 as nw
from pilot.config.addresses import is_ip
from pilot.config.validation.common import (
    Report,
    at,
    check_export_to,
    check_fqdn,
    check_ip_subnet,
    check_labels,
    check_partial_wildcard,
    check_port,
    check_port_name,
    check_unix_address,
    check_wildcard_domain,
    check_workload_selector,
    enum_name,
    item,
)
from pilot.config.validation.http import (
    HTTP_PROTOCOLS,
    TCP_PROTOCOLS,
    TLS_PROTOCOLS,
    check_protocol,
    parse_protocol,
)

UNIX_PREFIX = "unix://"


def validate_service_entry(spec: nw.ServiceEntry, namespace: str, path: str, report: Report) -> None:
    resolution = enum_name(spec, "resolution")
    has_selector = spec.HasField("workload_selector")
    if has_selector:
        check_workload_selector(spec.workload_selector, "service entry", at(path, "workloadSelector"), report)
        if len(spec.endpoints):
            report.error(path, "only one of WorkloadSelector or Endpoints is allowed in Service Entry")
    if not len(spec.hosts):
        report.error(at(path, "hosts"), "service entry must have at least one host")
    for index, host in enumerate(spec.hosts):
        host_path = item(at(path, "hosts"), index)
        if host == "*":
            report.error(host_path, f"invalid host {host}")
            continue
        report.check(host_path, check_wildcard_domain(host))
        if (partial := check_partial_wildcard(host)) is not None:
            report.warn(host_path, partial)
    cidr = False
    for index, address in enumerate(spec.addresses):
        cidr = cidr or "/" in address
        report.check(item(at(path, "addresses"), index), check_ip_subnet(address))
    if cidr and resolution not in ("NONE", "STATIC"):
        report.error(
            at(path, "addresses"), "CIDR addresses are allowed only for NONE/STATIC resolution types"
        )
    port_names = _ports(spec, resolution, path, report)
    _resolution(spec, resolution, port_names, path, report)
    if resolution != "NONE" and len(spec.hosts) > 1:
        # Plain TCP cannot tell the hosts apart (HTTP has the authority, TLS the SNI).
        for port in spec.ports:
            protocol = parse_protocol(port.protocol)
            if protocol not in HTTP_PROTOCOLS and protocol not in TLS_PROTOCOLS:
                report.error(at(path, "hosts"), "multiple hosts provided with non-HTTP, non-TLS ports")
                break
    report.check_all(at(path, "exportTo"), check_export_to(namespace, spec.export_to, True, False))


def _ports(spec: nw.ServiceEntry, resolution: str, path: str, report: Report) -> set[str]:
    names: set[str] = set()
    numbers: set[int] = set()
    for index, port in enumerate(spec.ports):
        port_path = item(at(path, "ports"), index)
        if port.name in names:
            report.error(at(port_path, "name"), f'service entry port name "{port.name}" already defined')
        names.add(port.name)
        if port.number in numbers:
            report.error(at(port_path, "number"), f"service entry port {port.number} already defined")
        numbers.add(port.number)
        if port.target_port != 0:
            report.check(at(port_path, "targetPort"), check_port(port.target_port))
            if resolution == "NONE":
                report.warn(
                    at(port_path, "targetPort"), "targetPort has no effect when resolution mode is NONE"
                )
        report.check(at(port_path, "name"), check_port_name(port.name))
        report.check(at(port_path, "protocol"), check_protocol(port.protocol))
        report.check(at(port_path, "number"), check_port(port.number))
    return names


def _resolution(
    spec: nw.ServiceEntry, resolution: str, port_names: set[str], path: str, report: Report
) -> None:
    endpoints_path = at(path, "endpoints")
    if resolution == "NONE":
        if len(spec.endpoints):
            report.error(endpoints_path, "no endpoints should be provided for resolution type none")
        if spec.HasField("workload_selector"):
            report.warn(
                at(path, "workloadSelector"),
                "workloadSelector should not be set when resolution mode is NONE",
            )
    elif resolution == "STATIC":
        for index, endpoint in enumerate(spec.endpoints):
            validate_workload_entry(endpoint, port_names, False, item(endpoints_path, index), report)
        if not len(spec.endpoints) and not spec.HasField("workload_selector"):
            report.warn(path, "resolution STATIC with neither endpoints nor a workloadSelector: no endpoints")
    elif resolution in ("DNS", "DNS_ROUND_ROBIN"):
        if not len(spec.endpoints):
            for index, host in enumerate(spec.hosts):
                if check_fqdn(host) is not None:
                    report.error(
                        item(at(path, "hosts"), index),
                        f"hosts must be FQDN if no endpoints are provided for resolution mode {resolution}",
                    )
        if resolution == "DNS_ROUND_ROBIN" and len(spec.endpoints) > 1:
            report.error(
                endpoints_path, f"there must only be 0 or 1 endpoint for resolution mode {resolution}"
            )
        for index, endpoint in enumerate(spec.endpoints):
            endpoint_path = item(endpoints_path, index)
            if not is_ip(endpoint.address) and check_fqdn(endpoint.address) is not None:
                report.error(
                    at(endpoint_path, "address"),
                    f'endpoint address "{endpoint.address}" is not a valid FQDN or an IP address',
                )
            report.check_all(at(endpoint_path, "labels"), check_labels(endpoint.labels))
            _endpoint_ports(endpoint, port_names, endpoint_path, report)
        if spec.HasField("workload_selector"):
            report.warn(
                at(path, "workloadSelector"),
                f"workloadSelector should not be set when resolution mode is {resolution}",
            )
        if len(spec.addresses) and len(spec.hosts) > 1:
            if any(parse_protocol(port.protocol) in TCP_PROTOCOLS for port in spec.ports):
                report.warn(
                    at(path, "hosts"),
                    "service entry can not have more than one host specified "
                    "simultaneously with address and tcp port",
                )
    else:
        report.error(at(path, "resolution"), f"unsupported resolution type {resolution}")


def _endpoint_ports(
    endpoint: nw.WorkloadEntry, port_names: set[str] | None, path: str, report: Report
) -> None:
    for name, number in sorted(endpoint.ports.items()):
        port_path = item(at(path, "ports"), name)
        if port_names is not None and name not in port_names:
            report.error(port_path, f"endpoint port {number} is not defined by the service entry")
        report.check(port_path, check_port_name(name))
        report.check(port_path, check_port(number))


def validate_workload_entry(
    entry: nw.WorkloadEntry, port_names: set[str] | None, allow_fqdn: bool, path: str, report: Report
) -> None:
    """A WorkloadEntry, standalone (``port_names`` None, FQDN addresses allowed) or as an endpoint."""
    address = entry.address
    if not address:
        if not entry.network:
            report.error(at(path, "address"), "address is required")
            return
        report.warn(at(path, "address"), f'address is unset with network "{entry.network}"')
    unix = address.startswith(UNIX_PREFIX)
    if unix:
        report.check(at(path, "address"), check_unix_address(address[len(UNIX_PREFIX) :]))
        if len(entry.ports):
            report.error(at(path, "ports"), f"unix endpoint {address} must not include ports")
    elif address and not is_ip(address):
        if not allow_fqdn:
            report.error(at(path, "address"), f'endpoint address "{address}" is not a valid IP address')
        elif check_fqdn(address) is not None:
            report.error(
                at(path, "address"), f'endpoint address "{address}" is not a valid FQDN or an IP address'
            )
    _endpoint_ports(entry, port_names, path, report)
    report.check_all(at(path, "labels"), check_labels(entry.labels))
    if unix and port_names is not None and len(port_names) != 1:
        report.error(path, "exactly 1 service port required for unix endpoints")
