"""Istio's analysis messages: each type's code, name and level, and one finding as istioctl prints it.

The types are entries of istio/istio pkg/config/analysis/msg/messages.yaml, with pilot's own ``PLT``
codes where Istio has no analyzer; pilot.inspect.analyzers finds them, ``pilot analyze`` prints them
and pilot.status writes them on each object's status.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pilot.config.objects import ConfigKey
from pilot.config.yamlpos import YamlPath

Level = Literal["Error", "Warning", "Info"]
LEVELS: tuple[Level, ...] = ("Error", "Warning", "Info")


@dataclass(frozen=True, slots=True)
class MessageType:
    """One entry of Istio's messages.yaml."""

    code: str
    name: str
    level: Level


REFERENCED_RESOURCE_NOT_FOUND = MessageType("IST0101", "ReferencedResourceNotFound", "Error")
# Retired upstream (its successor IST0162 needs Kubernetes Services); a folder knows a gateway's
# workloads by WorkloadEntry ports, which is what IST0104 checked.
GATEWAY_PORT_NOT_ON_WORKLOAD = MessageType("IST0104", "GatewayPortNotOnWorkload", "Warning")
SCHEMA_VALIDATION_ERROR = MessageType("IST0106", "SchemaValidationError", "Error")
CONFLICTING_MESH_GATEWAY_HOSTS = MessageType("IST0109", "ConflictingMeshGatewayVirtualServiceHosts", "Error")
CONFLICTING_SIDECAR_SELECTORS = MessageType("IST0110", "ConflictingSidecarWorkloadSelectors", "Error")
MULTIPLE_SIDECARS_WITHOUT_SELECTOR = MessageType(
    "IST0111", "MultipleSidecarsWithoutWorkloadSelectors", "Error"
)
NO_SERVER_CERT_VERIFICATION_DR = MessageType(
    "IST0128", "NoServerCertificateVerificationDestinationLevel", "Warning"
)
NO_SERVER_CERT_VERIFICATION_PORT = MessageType(
    "IST0129", "NoServerCertificateVerificationPortLevel", "Warning"
)
CONFLICTING_GATEWAYS = MessageType("IST0145", "ConflictingGateways", "Error")
SUBSET_SELECTS_NO_PODS = MessageType("IST0173", "DestinationRuleSubsetNotSelectPods", "Error")
# Istio has no analyzer for DestinationRules whose workloadSelectors overlap; pilot's own code.
CONFLICTING_DR_SELECTORS = MessageType("PLT0001", "ConflictingDestinationRuleWorkloadSelectors", "Error")
# Nor for PeerAuthentications of one level: Istio applies the oldest and ignores the others.
MULTIPLE_WIDE_PEER_AUTHENTICATIONS = MessageType(
    "PLT0002", "MultiplePeerAuthenticationsWithoutWorkloadSelectors", "Warning"
)
CONFLICTING_PEER_AUTHENTICATION_SELECTORS = MessageType(
    "PLT0003", "ConflictingPeerAuthenticationWorkloadSelectors", "Warning"
)


@dataclass(frozen=True, slots=True)
class Message:
    """One finding, as ``istioctl analyze`` prints it:
    ``Error [IST0101] (VirtualService ns/name file:line) text``."""

    type: MessageType
    text: str
    key: ConfigKey | None
    origin: str = ""
    line: int | None = None
    path: YamlPath = ()  # the field at fault, for its line (pilot.inspect.yaml_lines)

    def __str__(self) -> str:
        where = self.origin if self.line is None else f"{self.origin}:{self.line}"
        subject = " ".join(part for part in (str(self.key) if self.key else "", where) if part)
        return f"{self.type.level} [{self.type.code}] ({subject}) {self.text}"
