"""What pilot does not translate, or translates differently from Istio: warnings on the fields concerned.

``NOT_YET_SUPPORTED`` is the single table to edit as translation support grows: delete a line when the
translator starts honouring that field. Each entry is a field path in the YAML's camelCase names,
relative to the spec; ``[]`` steps into every item of a list. A warning is given for every place
where the field is set (for a scalar: set to a non-default value). Why each is left out:

* DestinationRule ``failoverPriority``; WorkloadEntry ``network``: they select by the proxy's
  network and locality labels, which pilot's views do not carry.
* ``warmup.minimumPercent`` / ``warmup.aggression``: how Istio translates them is unconfirmed.
* ``serviceAccount`` fields: identities for Istio's mTLS, which needs Istio's CA.
* Gateway ``servers[].defaultEndpoint``: Istio does not implement it either.
* WorkloadGroup: read and validated; its ``metadata``, ``template`` and ``probe`` serve Istio's VM
  auto-registration and health checking (istio-agent creating WorkloadEntries), which pilot does
  not run. WorkloadEntries written by hand are translated (ServiceEntry ``workloadSelector``).
* MeshConfig: proxy bootstrap, ingress, telemetry and mTLS settings outside pilot's translation, and
  the extension providers other than ext_authz (tracing, metrics, access logs, SDS).

``_translation_notes`` warns about set fields that pilot honours only in part, each with its own
message: DestinationRule ``tls`` with ``credentialName``; Sidecar ingress ``tls`` (Istio ignores it too
unless ENABLE_TLS_ON_SIDECAR_INGRESS is set) and egress listeners that bind a unix socket.
(``ISTIO_MUTUAL`` is honoured for proxies run by ``pilot agent``; translation warns when a proxy
without mesh certificates is sent plaintext.)
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, TypeAlias

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

if TYPE_CHECKING:
    from google._upb._message import Descriptor as UpbDescriptor
    from google._upb._message import FieldDescriptor as UpbFieldDescriptor

    # What ``Message.DESCRIPTOR`` and its fields are: the pure-Python or the upb implementation's.
    AnyDescriptor: TypeAlias = Descriptor | UpbDescriptor
    AnyFieldDescriptor: TypeAlias = FieldDescriptor | UpbFieldDescriptor

from pilot.config import kinds
from pilot.config.validation.common import Report, at, item

NOT_YET_SUPPORTED_MESSAGE = "not yet supported by pilot; ignored"


def _traffic_policy(prefix: str) -> tuple[str, ...]:
    """The unsupported parts of a TrafficPolicy at ``prefix``, and of its port-level settings."""
    per_port = (
        "loadBalancer.localityLbSetting.failoverPriority",
        "loadBalancer.warmup.minimumPercent",
        "loadBalancer.warmup.aggression",
    )
    return (
        *(f"{prefix}.{name}" for name in per_port),
        *(f"{prefix}.portLevelSettings[].{name}" for name in per_port),
    )


NOT_YET_SUPPORTED: Mapping[str, tuple[str, ...]] = {
    kinds.VIRTUAL_SERVICE: (),
    kinds.DESTINATION_RULE: (
        *_traffic_policy("trafficPolicy"),
        *_traffic_policy("subsets[].trafficPolicy"),
    ),
    kinds.SERVICE_ENTRY: ("endpoints[].network",),
    kinds.GATEWAY: (
        # Also not implemented by Istio. Servers pilot cannot serve at all (a credentialName that
        # names no Secret pilot can read, ISTIO_MUTUAL, AUTO_PASSTHROUGH, unix sockets) are warned
        # about by validation/gateway.py.
        "servers[].defaultEndpoint",
    ),
    kinds.WORKLOAD_ENTRY: ("network",),
    kinds.SIDECAR: (),
    kinds.WORKLOAD_GROUP: (
        "metadata",
        "template",
        "probe",
    ),
    kinds.MESH_CONFIG: (
        "proxyListenPort",
        "proxyInboundListenPort",
        "proxyHttpPort",
        "protocolDetectionTimeout",
        "ingressClass",
        "ingressService",
        "ingressControllerMode",
        "ingressSelector",
        "enableTracing",
        "accessLogFile",
        "accessLogFormat",
        "accessLogEncoding",
        "inboundTrafficPolicy",
        "trustDomainAliases",
        "inboundClusterStatName",
        "outboundClusterStatName",
        "enablePrometheusMerge",
        "pathNormalization",
        # Tracing, metrics, access-log and SDS providers; the ext_authz ones are translated.
        *(
            f"extensionProviders[].{kind}"
            for kind in (
                "zipkin",
                "lightstep",
                "datadog",
                "stackdriver",
                "opencensus",
                "skywalking",
                "opentelemetry",
                "prometheus",
                "envoyFileAccessLog",
                "envoyHttpAls",
                "envoyTcpAls",
                "envoyOtelAls",
                "sds",
            )
        ),
    ),
}


CREDENTIAL_NAME_MESSAGE = (
    "as Istio does for sidecars, no TLS is originated with credentialName (gateways' credentialName "
    "is read); give clientCertificate, privateKey and caCertificates files instead"
)
_POLICIES = (
    "trafficPolicy",
    "trafficPolicy.portLevelSettings[]",
    "subsets[].trafficPolicy",
    "subsets[].trafficPolicy.portLevelSettings[]",
)
SIDECAR_INGRESS_TLS_MESSAGE = (
    f"{NOT_YET_SUPPORTED_MESSAGE}, as by Istio unless ENABLE_TLS_ON_SIDECAR_INGRESS is set: the port's "
    "traffic is passed on as it arrives"
)


# Why, for the kinds whose untranslated fields share one reason.
NOT_YET_SUPPORTED_REASONS: Mapping[str, str] = {
    kinds.WORKLOAD_GROUP: (
        "pilot does not run Istio's VM auto-registration and health checks (istio-agent creating "
        "WorkloadEntries from the group); write the WorkloadEntries"
    ),
}


def report_not_yet_supported(kind: str, spec: Message, path: str, report: Report) -> None:
    reason = NOT_YET_SUPPORTED_REASONS.get(kind)
    message = f"{NOT_YET_SUPPORTED_MESSAGE}: {reason}" if reason else NOT_YET_SUPPORTED_MESSAGE
    for pattern in NOT_YET_SUPPORTED.get(kind, ()):
        for where in find_set(spec, pattern.split("."), path):
            report.warn(where, message)
    _translation_notes(kind, spec, path, report)


def _translation_notes(kind: str, spec: Message, path: str, report: Report) -> None:
    """Fields pilot honours only in part."""
    if kind == kinds.SIDECAR:
        for where, _ in find_values(spec, ["ingress[]", "tls"], path):
            report.warn(where, SIDECAR_INGRESS_TLS_MESSAGE)
        for index, egress in enumerate(getattr(spec, "egress", ())):
            if egress.bind.startswith("unix://"):
                report.warn(at(item(at(path, "egress"), index), "bind"), NOT_YET_SUPPORTED_MESSAGE)
    if kind == kinds.DESTINATION_RULE:
        for policy in _POLICIES:
            for where, tls in find_values(spec, f"{policy}.tls".split("."), path):
                if tls.credential_name:
                    report.warn(at(where, "credentialName"), CREDENTIAL_NAME_MESSAGE)


def find_values(message: Message, steps: list[str], path: str) -> Iterator[tuple[str, Any]]:
    """(path, value) of every set message the field ``steps`` leads to (lists: every item)."""
    step, rest = steps[0], steps[1:]
    name = step.removesuffix("[]")
    field = field_by_json_name(message.DESCRIPTOR, name)
    if field is None:
        raise KeyError(f"{message.DESCRIPTOR.full_name} has no field {name}")
    here = at(path, name)
    if step.endswith("[]"):
        found = [(item(here, index), element) for index, element in enumerate(getattr(message, field.name))]
    elif message.HasField(field.name):
        found = [(here, getattr(message, field.name))]
    else:
        found = []
    for where, value in found:
        if rest:
            yield from find_values(value, rest, where)
        else:
            yield where, value


def find_set(message: Message, steps: list[str], path: str) -> Iterator[str]:
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


def field_by_json_name(descriptor: AnyDescriptor, name: str) -> AnyFieldDescriptor | None:
    for field in descriptor.fields:
        if field.json_name == name:
            return field
    return None


def _is_set(message: Message, field: AnyFieldDescriptor) -> bool:
    if field.is_repeated:
        return len(getattr(message, field.name)) > 0
    if field.message_type is not None or field.containing_oneof is not None:
        return bool(message.HasField(field.name))
    return bool(getattr(message, field.name) != field.default_value)
