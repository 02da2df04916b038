"""What pilot does not translate yet: set fields it ignores, reported as warnings.

``NOT_YET_SUPPORTED`` is the single table to edit as translation support grows: delete a line when the
translator starts honouring that field. Each entry is a field path in the YAML's camelCase names,
relative to the spec; ``[]`` steps into every item of a list. A warning is given for every place
where the field is set (for a scalar: set to a non-default value).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from google.protobuf.descriptor import Descriptor, FieldDescriptor

from pilot.config import kinds
from pilot.config.validation.common import Msg, Report, at, item

NOT_YET_SUPPORTED_MESSAGE = "not yet supported by pilot; ignored"


def _traffic_policy(prefix: str) -> tuple[str, ...]:
    """The unsupported parts of a TrafficPolicy at ``prefix``, and of its port-level settings."""
    per_port = (
        "tls",
        "loadBalancer.localityLbSetting",
        "loadBalancer.warmup.minimumPercent",
        "loadBalancer.warmup.aggression",
    )
    return (
        *(f"{prefix}.{name}" for name in (*per_port, "tunnel", "proxyProtocol")),
        *(f"{prefix}.portLevelSettings[].{name}" for name in per_port),
    )


NOT_YET_SUPPORTED: Mapping[str, tuple[str, ...]] = {
    kinds.VIRTUAL_SERVICE: (
        "tcp",
        "tls",
        "http[].delegate",
        "http[].mirror",
        "http[].mirrors",
        "http[].mirrorPercent",
        "http[].mirrorPercentage",
        "http[].corsPolicy",
    ),
    kinds.DESTINATION_RULE: (
        "workloadSelector",
        *_traffic_policy("trafficPolicy"),
        *_traffic_policy("subsets[].trafficPolicy"),
    ),
    kinds.SERVICE_ENTRY: (
        "subjectAltNames",
        "endpoints[].network",
        "endpoints[].serviceAccount",
    ),
    kinds.GATEWAY: (
        "selector",
        "servers",
    ),
    kinds.WORKLOAD_ENTRY: (
        "network",
        "serviceAccount",
    ),
    kinds.MESH_CONFIG: (
        "proxyListenPort",
        "proxyInboundListenPort",
        "proxyHttpPort",
        "protocolDetectionTimeout",
        "tcpKeepalive",
        "ingressClass",
        "ingressService",
        "ingressControllerMode",
        "ingressSelector",
        "enableTracing",
        "accessLogFile",
        "accessLogFormat",
        "accessLogEncoding",
        "inboundTrafficPolicy",
        "enableAutoMtls",
        "trustDomain",
        "trustDomainAliases",
        "localityLbSetting",
        "inboundClusterStatName",
        "outboundClusterStatName",
        "enablePrometheusMerge",
        "pathNormalization",
    ),
}


def report_not_yet_supported(kind: str, spec: Msg, path: str, report: Report) -> None:
    for pattern in NOT_YET_SUPPORTED.get(kind, ()):
        for where in find_set(spec, pattern.split("."), path):
            report.warn(where, NOT_YET_SUPPORTED_MESSAGE)


def find_set(message: Msg, steps: list[str], path: str) -> Iterator[str]:
    """Paths under ``path`` where the field ``steps`` leads to is set in ``message``."""
    step, rest = steps[0], steps[1:]
    name = step.removesuffix("[]")
    field = field_by_json_name(message.DESCRIPTOR, name)
    if field is None:
        raise KeyError(f"{message.DESCRIPTOR.full_name} has no field {name}")
    value = getattr(message, field.name)
    here = at(path, name)
    if not rest:
        if _is_set(message, field):
            yield here
        return
    if step.endswith("[]"):
        for index, element in enumerate(value):
            yield from find_set(element, rest, item(here, index))
    elif message.HasField(field.name):
        yield from find_set(value, rest, here)


def field_by_json_name(descriptor: Descriptor, name: str) -> FieldDescriptor | None:
    for field in descriptor.fields:
        if field.json_name == name:
            return field
    return None


def _is_set(message: Msg, field: FieldDescriptor) -> bool:
    if field.is_repeated:
        return len(getattr(message, field.name)) > 0
    if field.message_type is not None or field.containing_oneof is not None:
        return bool(message.HasField(field.name))
    return bool(getattr(message, field.name) != field.default_value)
