"""Route destinations (HTTP, TCP, TLS) and header operations, as Istio's validation.go checks them."""

from __future__ import annotations

from collections.abc import Sequence

from pilot._gen import networking_pb2 as nw
from pilot.config.validation.common import (
    Report,
    at,
    check_port,
    check_subset_name,
    check_wildcard_domain,
    item,
)
from pilot.config.validation.http import check_header_operation_name, check_header_value


def validate_route_destinations(
    destinations: Sequence[nw.HTTPRouteDestination | nw.RouteDestination],
    path: str,
    report: Report,
    http_route: bool,
) -> None:
    """``route`` of an HTTP, TCP or TLS route: destinations and their weights."""
    total = 0
    for index, weighted in enumerate(destinations):
        weighted_path = item(path, index)
        if not weighted.HasField("destination"):
            report.error(weighted_path, "destination is required")
        else:
            validate_destination(weighted.destination, at(weighted_path, "destination"), report)
        if http_route and isinstance(weighted, nw.HTTPRouteDestination) and weighted.HasField("headers"):
            check_header_operations(weighted.headers, at(weighted_path, "headers"), report)
        if weighted.weight < 0:
            report.error(at(weighted_path, "weight"), f"weight {weighted.weight} < 0")
        total += weighted.weight
    if len(destinations) > 1 and total == 0:
        report.error(path, "total destination weight = 0")


def validate_destination(destination: nw.Destination, path: str, report: Report) -> None:
    host = destination.host
    if host == "*":
        report.error(at(path, "host"), f"invalid destination host {host}")
    else:
        report.check(at(path, "host"), check_wildcard_domain(host))
    if destination.subset:
        report.check(at(path, "subset"), check_subset_name(destination.subset))
    if destination.HasField("port"):
        report.check(at(path, "port.number"), check_port(destination.port.number))


def check_header_operations(headers: nw.Headers, path: str, report: Report) -> None:
    """``headers.request`` / ``headers.response`` set, add and remove."""
    for side, allow_authority in (("request", True), ("response", False)):
        if not headers.HasField(side):
            continue
        operations = getattr(headers, side)
        side_path = at(path, side)
        for operation in ("set", "add"):
            for name, value in sorted(getattr(operations, operation).items()):
                entry_path = item(at(side_path, operation), name)
                report.check(entry_path, check_header_operation_name(name, allow_authority))
                report.check(entry_path, check_header_value(value))
        for index, name in enumerate(operations.remove):
            report.check(item(at(side_path, "remove"), index), check_header_operation_name(name, False))
