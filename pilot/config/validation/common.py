"""Checks shared by every kind: hosts, ports, durations, percentages, labels, names, string matches.

Ported from Istio's webhook validation (istio/istio ``pkg/config/validation/validation.go``,
``pkg/config/validation/agent/validation.go``, ``pkg/config/labels/instance.go``,
``pkg/config/protocol/instance.go``) with Istio's messages, so that ``pilot`` and ``istioctl validate``
say the same thing. A ``check_*`` function returns the problem as a message, or None when the value is
fine; a ``Report`` collects problems with their field paths.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from google.protobuf import duration_pb2
from google.protobuf.message import Message

from pilot._gen import networking_pb2 as nw
from pilot.config.addresses import is_ip
from pilot.config.objects import Severity


@dataclass(slots=True)
class Report:
    """Problems found in one object: (path, message, severity), in the order found."""

    items: list[tuple[str, str, Severity]] = field(default_factory=list)

    def error(self, path: str, message: str) -> None:
        self.items.append((path, message, "error"))

    def warn(self, path: str, message: str) -> None:
        self.items.append((path, message, "warning"))

    def check(self, path: str, message: str | None) -> None:
        if message is not None:
            self.error(path, message)

    def check_all(self, path: str, messages: list[str]) -> None:
        for message in messages:
            self.error(path, message)


def at(path: str, name: str) -> str:
    """The path of field ``name`` of the message at ``path``."""
    return f"{path}.{name}" if path else name


def item(path: str, index: int | str) -> str:
    """The path of list item ``index`` (or map entry ``index``) at ``path``."""
    return f"{path}[{index}]"


# --- names and labels (pkg/config/labels) ---------------------------------------------------------------

_DNS1123_LABEL = r"[a-zA-Z0-9](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?"
_DNS1123_LABEL_RE = re.compile(_DNS1123_LABEL)
_WILDCARD_LABEL_RE = re.compile(rf"\*|(?:\*|\*-)?{_DNS1123_LABEL}")
_QUALIFIED_NAME = r"(?:[A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_TAG_KEY_RE = re.compile(rf"((?:{_DNS1123_LABEL}(?:\.{_DNS1123_LABEL})*)/)?({_QUALIFIED_NAME})")
_LABEL_VALUE_RE = re.compile(rf"(?:{_QUALIFIED_NAME})?")
# Kubernetes object names (metadata.name): a lower-case DNS-1123 subdomain.
_DNS1123_SUBDOMAIN_RE = re.compile(r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*")
_K8S_LABEL_RE = re.compile(r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?")


def is_dns1123_label(value: str) -> bool:
    """Istio's DNS label test (it allows upper case, unlike Kubernetes)."""
    return len(value) <= 63 and _DNS1123_LABEL_RE.fullmatch(value) is not None


def is_wildcard_dns1123_label(value: str) -> bool:
    return len(value) <= 63 and _WILDCARD_LABEL_RE.fullmatch(value) is not None


def is_k8s_subdomain(value: str) -> bool:
    return len(value) <= 253 and _DNS1123_SUBDOMAIN_RE.fullmatch(value) is not None


def is_k8s_label(value: str) -> bool:
    return len(value) <= 63 and _K8S_LABEL_RE.fullmatch(value) is not None


def check_label_key(key: str) -> str | None:
    match = _TAG_KEY_RE.fullmatch(key)
    if match is None:
        return f'invalid tag key: "{key}"'
    if match.group(1) and len(match.group(1)) - 1 > 253:
        return f'invalid tag key: "{key}" (DNS prefix is too long)'
    if len(match.group(2)) > 63:
        return f'invalid tag key: "{key}" (name is too long)'
    return None


def check_labels(labels: Mapping[str, str]) -> list[str]:
    """Istio's ``labels.Instance.Validate`` for a map of label selectors."""
    problems: list[str] = []
    for key, value in sorted(labels.items()):
        if (problem := check_label_key(key)) is not None:
            problems.append(problem)
        if _LABEL_VALUE_RE.fullmatch(value) is None or len(value) > 63:
            problems.append(f'invalid tag value: "{value}"')
    return problems


def check_subset_name(name: str) -> str | None:
    if not name:
        return "subset name cannot be empty"
    if not is_dns1123_label(name):
        return f"subset name is invalid: {name}"
    return None


def check_port_name(name: str) -> str | None:
    return None if is_dns1123_label(name) else f"invalid port name: {name}"


# --- hosts (agent.ValidateFQDN, ValidateWildcardDomain, ...) ----------------------------------------------


def _dns1123_preconditions(name: str) -> str | None:
    if len(name) > 255:
        return f'domain name "{name}" too long (max 255)'
    if not name:
        return "empty domain name not allowed"
    return None


def _dns1123_labels(domain: str) -> str | None:
    parts = domain.split(".")
    top = parts[-1]
    if top.isascii() and top.lstrip("+-").isdigit():
        return f'domain name "{domain}" invalid (top level domain "{top}" cannot be all-numeric)'
    for index, label in enumerate(parts):
        if index == len(parts) - 1 and label == "":
            return None  # a trailing dot, as in "istio.io."
        if not is_dns1123_label(label):
            return f'domain name "{domain}" invalid (label "{label}" invalid)'
    return None


def check_fqdn(fqdn: str) -> str | None:
    return _dns1123_preconditions(fqdn) or _dns1123_labels(fqdn)


def check_wildcard_domain(domain: str) -> str | None:
    """A valid FQDN or short name, with an optional wildcard first label (``*.example.com``, ``*``)."""
    if (problem := _dns1123_preconditions(domain)) is not None:
        return problem
    first, dot, rest = domain.partition(".")
    if not is_wildcard_dns1123_label(first):
        return f'domain name "{domain}" invalid (label "{first}" invalid)'
    return _dns1123_labels(rest) if dot else None


def check_wildcard_domain_for_gateway(sni: bool, domain: str) -> str | None:
    if (problem := _dns1123_preconditions(domain)) is not None:
        return problem
    first, dot, rest = domain.partition(".")
    if sni and first == "outbound_":
        if re.match(r"outbound_.([0-8].*).*", domain) is None:
            return f'domain name "{domain}" invalid (label "{first}" invalid)'
        return None
    if not is_wildcard_dns1123_label(first):
        return f'domain name "{domain}" invalid (label "{first}" invalid)'
    return _dns1123_labels(rest) if dot else None


def check_partial_wildcard(host: str) -> str | None:
    if "*" in host and len(host) != 1 and not host.startswith("*."):
        return f'partial wildcard "{host}" not allowed'
    return None


def _gateway_or_sidecar_host(hostname: str, is_gateway: bool) -> list[str]:
    problems: list[str] = []
    if hostname != "*" and "." not in hostname:
        problems.append("short names (non FQDN) are not allowed")
    problem = check_wildcard_domain(hostname)
    if problem is not None:
        if not is_gateway:
            problems.append(problem)
        if not is_ip(hostname):  # gateways also accept an IP address as the host
            problems.append(problem)
    if (partial := check_partial_wildcard(hostname)) is not None:
        problems.append(partial)
    return list(dict.fromkeys(problems))


def check_namespace_slash_host(hostname: str, is_gateway: bool) -> list[str]:
    """``namespace/dnsName`` as in Gateway servers' hosts (a bare host is the old style for gateways)."""
    namespace, slash, name = hostname.partition("/")
    if not slash:
        if is_gateway:
            return _gateway_or_sidecar_host(hostname, True)
        return ["host must be of form namespace/dnsName"]
    problems: list[str] = []
    if not namespace or not name:
        problems.append("config namespace and dnsName in host entry cannot be empty")
    if is_gateway:
        if namespace not in ("*", ".") and not is_dns1123_label(namespace):
            problems.append(f'invalid namespace value "{namespace}" in gateway')
    else:
        # A Sidecar's namespace may be ``~``-prefixed to exclude it (bare ``~``: every namespace).
        excluded = namespace.removeprefix("~")
        if excluded not in ("", "*", ".") and not is_dns1123_label(excluded):
            problems.append(f'invalid namespace value "{namespace}" in sidecar')
    return problems + _gateway_or_sidecar_host(name, is_gateway)


def check_ip(address: str) -> str | None:
    return None if is_ip(address) else f"{address} is not a valid IP"


def check_ip_subnet(subnet: str) -> str | None:
    if subnet.count("/") == 1:
        try:
            ipaddress.ip_network(subnet, strict=False)
        except ValueError:
            return f"{subnet} is not a valid CIDR block"
        return None
    return check_ip(subnet)


def check_unix_address(address: str) -> str | None:
    if not address:
        return "unix address must not be empty"
    if address.startswith("@"):
        return None  # abstract socket
    if not address.startswith("/") or address.endswith("/"):
        return f"{address} is not an absolute path to a file"
    return None


def check_gateway_names(names: Iterable[str]) -> tuple[list[str], list[str]]:
    """(errors, warnings) for a ``gateways`` list: ``namespace/name``, or the legacy forms."""
    errors: list[str] = []
    warns: list[str] = []
    for name in names:
        namespace, slash, gateway = name.partition("/")
        if not slash:
            if "." in name:
                parts = name.split(".")
                warns.append(
                    f'using legacy gatewayName format "{name}"; prefer the <namespace>/<name> format: '
                    f'"{parts[1]}/{parts[0]}"'
                )
            if (problem := check_fqdn(name)) is not None:
                errors.append(problem)
            continue
        if not namespace or not gateway:
            errors.append("config namespace and gateway name cannot be empty")
        if not is_dns1123_label(namespace):
            errors.append(f'invalid value for namespace: "{namespace}"')
        if not is_dns1123_label(gateway):
            errors.append(f'invalid value for gateway name: "{gateway}"')
    return errors, warns


# --- numbers and durations ------------------------------------------------------------------------------


def check_port(port: int) -> str | None:
    return None if 1 <= port <= 65535 else f"port number {port} must be in the range 1..65535"


def check_percent(value: int) -> str | None:
    return None if 0 <= value <= 100 else f"percentage {value} is not in range 0..100"


def check_percentage(percent: nw.Percent) -> str | None:
    """A ``Percent`` message: 0, or within [0.0001, 100]."""
    value = percent.value
    if not 0.0 <= value <= 100.0 or 0.0 < value < 0.0001:
        return f"percentage {value:g} is neither 0.0, nor in range [0.0001, 100.0]"
    return None


def duration_nanos(duration: duration_pb2.Duration) -> int:
    return int(duration.seconds) * 1_000_000_000 + int(duration.nanos)


def check_duration(duration: duration_pb2.Duration) -> str | None:
    """Istio's ``ValidateDuration``: at least 1ms, in whole milliseconds."""
    nanos = duration_nanos(duration)
    if nanos < 1_000_000:
        return "duration must be greater than 1ms"
    if nanos % 1_000_000:
        return "only durations to ms precision are supported"
    return None


# --- visibility and selectors ---------------------------------------------------------------------------


def check_export_to(
    namespace: str, export_to: Sequence[str], is_service_entry: bool, dr_selector: bool
) -> list[str]:
    problems: list[str] = []
    if not export_to:
        return problems
    seen: set[str] = set()
    for entry in export_to:
        key = namespace if entry == "." else entry
        if key in seen:
            if key != entry:
                problems.append(f"duplicate entries in exportTo: . and current namespace {namespace}")
            else:
                problems.append(f"duplicate entries in exportTo for entry {entry}")
            continue
        if is_service_entry and entry == "~":
            seen.add(key)
        elif key == "~":
            problems.append("exportTo ~ (none) is not allowed for Istio configuration objects")
        elif key not in ("*", ".") and not is_dns1123_label(key):
            problems.append("only .,*, or a valid DNS 1123 label is allowed as exportTo entry")
        else:
            seen.add(key)
    if dr_selector and seen:
        if namespace not in seen:
            problems.append(
                "destination rule with workload selector cannot have exportTo beyond current namespace"
            )
        elif len(seen) > 1:
            problems.append(
                "destination rule with workload selector cannot have multiple entries in exportTo"
            )
    if "*" in seen and len(export_to) > 1:
        problems.append("cannot have both public (*) and non-public exportTo values for a resource")
    if "~" in seen and len(export_to) > 1:
        problems.append("cannot export service entry to no one (~) and someone")
    return problems


def check_selector_labels(labels: Mapping[str, str]) -> list[str]:
    problems: list[str] = []
    for key, value in sorted(labels.items()):
        if not key:
            problems.append(f'empty key is not supported in selector: "{key}={value}"')
        if "*" in key or "*" in value:
            problems.append(f'wildcard is not supported in selector: "{key}={value}"')
    return problems


def check_workload_selector(selector: nw.WorkloadSelector, what: str, path: str, report: Report) -> None:
    """Istio's ``ValidateAlphaWorkloadSelector`` for a set ``workloadSelector`` of a ``what`` (kind)."""
    report.check_all(at(path, "labels"), check_selector_labels(selector.labels))
    if not len(selector.labels):
        report.warn(
            path,
            f"{what}: workload selector specified without labels, will be applied to all services in "
            "namespace",
        )


def enum_name(message: Message, field: str) -> str:
    """The name of enum ``field``'s value in ``message`` (its number, if the value is unknown)."""
    number = getattr(message, field)
    enum_type = message.DESCRIPTOR.fields_by_name[field].enum_type
    if enum_type is None:
        raise TypeError(f"{message.DESCRIPTOR.full_name}.{field} is not an enum")
    value = enum_type.values_by_number.get(number)
    return str(number) if value is None else str(value.name)
