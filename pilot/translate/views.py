"""A proxy's ``ProxyView`` at one PushContext: the equivalence class of everything that decides
its config, so that proxies that would be sent the same config share one snapshot.

The view holds the proxy's type, namespace, interception mode and DNS domain; its service
targets; and its workload labels (node metadata ``LABELS``/``STATIC_LABELS``, else its Pod's
labels, else the registry's labels for its address) — but only the ``key=value`` pairs that some
workload selector of the config names (VirtualService match ``sourceLabels``, DestinationRule
``workloadSelector``; Sidecar ``workloadSelector`` joins ``PushContext.selector_pairs`` once Sidecars
are translated).

Why these labels and not the raw ones, nor the set of selectors the proxy satisfies: a selector
``S`` (a set of pairs) selects labels ``L`` iff ``S ⊆ L``; every selector is inside the union
``P`` of all selector pairs, so ``S ⊆ L`` iff ``S ⊆ L ∩ P``. The projection ``L ∩ P`` therefore
answers every selector exactly as ``L`` does (correct), translation keeps reading a plain label
mapping, and labels no selector names (``pod-template-hash``, ``version`` when nothing routes by
it) never split a view. Raw labels would also share between the pods of one Deployment, but not
between Deployments that differ only in labels nothing selects on, and a per-pod label would give
every pod its own view. The set of satisfied selectors would share slightly more (two proxies
each holding half of one selector), at the cost of translation reading selectors by identity
instead of labels; the projection is the simpler key that is still exact.

Routers keep all their labels: Gateways select them by labels, and there are few of them.
"""

from __future__ import annotations

import dataclasses

from pilot.config import kinds
from pilot.config.objects import ConfigKey
from pilot.translate.context import PushContext
from pilot.translate.proxy import NodeType, Proxy, ProxyView
from pilot.translate.targets import ServiceTarget


def view_of(proxy: Proxy, context: PushContext) -> ProxyView:
    """The view of ``proxy`` under ``context``. Recomputed on every push: new config (an endpoint
    at the proxy's address, a selector naming its labels) can move a proxy to another view."""
    proxy = identified(proxy, context)
    base = proxy.view()
    if proxy.type is NodeType.ROUTER:
        labels = base.labels
    else:
        pairs = context.selector_pairs()
        workload = proxy.labels or registry_labels(context, proxy.ip, proxy.namespace)
        labels = tuple(sorted(item for item in workload.items() if item in pairs))
    return ProxyView(
        base.type,
        base.namespace,
        base.interception_mode,
        base.dns_domain,
        labels,
        service_targets(context, proxy.ip, proxy.namespace),
        mesh_certificates=base.mesh_certificates,
    )


def identified(proxy: Proxy, context: PushContext) -> Proxy:
    """``proxy`` with the labels and service account of the Pod its node id names where its node
    metadata gives none, as istiod reads them from the Pod (kube controller's GetProxyWorkloadLabels
    and getPodByProxy). The sources store each Pod as a ``Pod`` object (pilot.config.kube_core)."""
    if (proxy.labels and proxy.service_account) or not proxy.pod_name or context.objects is None:
        return proxy
    pod = context.objects.get(ConfigKey(kinds.POD, proxy.namespace, proxy.pod_name))
    if pod is None or not kinds.POD_INFO.holds(pod):
        return proxy
    return dataclasses.replace(
        proxy,
        labels=proxy.labels or dict(pod.spec.labels),
        service_account=proxy.service_account or pod.spec.service_account,
    )


def registry_labels(context: PushContext, address: str, namespace: str) -> dict[str, str]:
    """The labels the registry holds for the workload at ``address`` in ``namespace`` (a
    WorkloadEntry's, or a ServiceEntry endpoint's): what a proxy that sent no ``LABELS`` is known
    by, as Istio labels a VM proxy by its WorkloadEntry (ServiceTargets step 1)."""
    out: dict[str, str] = {}
    if address:
        for service, endpoint in context.endpoints_at(address):
            if service.namespace == namespace:
                out.update(endpoint.labels)
    return out


def service_targets(context: PushContext, address: str, namespace: str) -> tuple[ServiceTarget, ...]:
    """The targets of a proxy at ``address`` in ``namespace``: every port of every service in that
    namespace with an endpoint at the address (Istio's ServiceEntry registry, ServiceTargets step
    5; the Kubernetes source's ServiceEntries made from EndpointSlices are found the same way, as
    step 3). Sorted, de-duplicated."""
    if not address:
        return ()
    found: set[ServiceTarget] = set()
    for service, endpoint in context.endpoints_at(address):
        if service.namespace != namespace:
            continue
        for port in service.ports:
            found.add(
                ServiceTarget(service.hostname, port.number, endpoint.port_for(port), str(port.protocol))
            )
    return tuple(sorted(found))
