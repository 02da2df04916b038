"""What a workload serves: the ports of the services whose endpoints are the proxy itself.

Istio calls these ``ServiceTargets`` (pilot/pkg/model/context.go ``SetServiceTargets``): a Kubernetes
Service selecting the pod, or a ServiceEntry/WorkloadEntry endpoint at the proxy's IP. A sidecar's
inbound listener has one filter chain per target port, and its inbound clusters are
``inbound|TARGET_PORT||`` (ISTIO-SIDECAR-AND-SECURITY.md §2.3, §2.5).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, order=True)
class ServiceTarget:
    """One port of one service the proxy backs: the service's ``hostname`` and ``port``, the port
    the workload listens on (``target_port``, the endpoint's port) and the port's Istio protocol."""

    hostname: str
    port: int
    target_port: int
    protocol: str
