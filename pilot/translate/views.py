"""A proxy's ``ProxyView`` at one PushContext: the equivalence class of everything that decides
its config, so that proxies that would be sent the same config share one snapshot.

The view holds the proxy's type, namespace, interception mode and DNS domain; its service
targets; and its workload labels (node metadata ``LABELS``/``STATIC_LABELS``, else its Pod's
labels, else the registry's labels for its address) — but only the ``key=value`` pairs of the
workload selectors it satisfies (VirtualService match ``sourceLabels``, DestinationRule
``workloadSelector``); and the Sidecar that applies to it (chosen with all its labels, Istio's
precedence: pilot.translate.sidecar_scope), by key.

The Sidecar is keyed by identity rather than through its selector's labels: every proxy of a
namespace that falls back to the namespace's (or the root namespace's) default Sidecar shares it,
whatever labels the namespace's selector-bearing Sidecars name, and translation reads the Sidecar
from the key without selecting again. Its content is not in the key: a Sidecar edit rebuilds the
snapshots of the views that name it (the generators read the Sidecar kind).

Why these labels: a selector ``S`` (a set of pairs) selects labels ``L`` iff ``S ⊆ L``. Let
``K`` be the union of the selectors ``L`` satisfies and ``L' = L ∩ K``. For every selector ``T``:
if ``T ⊆ L`` then ``T ⊆ K``, so ``T ⊆ L'``; if not, ``T ⊄ L'`` since ``L' ⊆ L``. So ``L'`` answers
every selector exactly as ``L`` does, translation keeps reading a plain label mapping, and labels
that decide nothing never split a view: neither labels no selector names (``pod-template-hash``)
nor pairs of selectors the workload does not satisfy (``version=v2`` of a ``sourceLabels``
``{app: productpage, version: v2}`` on a reviews-v2 pod). Raw labels would give every pod with a
per-pod label its own view.

Routers keep all their labels: Gateways select them by labels, and there are few of them.
A proxyless gRPC application also keeps ``security.istio.io/tlsMode``: it decides whether its server
listeners take mTLS under PERMISSIVE (pilot.translate.grpc_tls).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from pilot.config import kinds
from pilot.config.objects import ConfigKey
from pilot.translate.context import PushContext
from pilot.translate.endpoints import TLS_MODE_LABEL
from pilot.translate.proxy import NodeType, Proxy, ProxyView
from pilot.translate.sidecar_scope import select_sidecar
from pilot.translate.targets import ServiceTarget


def view_of(proxy: Proxy, context: PushContext) -> ProxyView:
    """The view of ``proxy`` under ``context``. Recomputed on every push: new config (an endpoint
    at the proxy's address, a selector naming its labels) can move a proxy to another view."""
    proxy = identified(proxy, context)
    base = proxy.view()
    sidecar = None
    if proxy.type is NodeType.ROUTER:
        labels = base.labels  # routers never get a Sidecar (Istio's DefaultSidecarScopeForGateway)
    else:
        workload = proxy.labels or registry_labels(context, proxy.ip, proxy.namespace)
        labels = selected_labels(workload, context.selectors())
        if base.proxyless_grpc and TLS_MODE_LABEL in workload:
            labels = tuple(sorted({*labels, (TLS_MODE_LABEL, workload[TLS_MODE_LABEL])}))
        candidates = context.sidecar_candidates(proxy.namespace)
        chosen = select_sidecar(proxy.namespace, workload, candidates, context.mesh.root_namespace)
        sidecar = chosen.key if chosen is not None else None
    return ProxyView(
        base.type,
        base.namespace,
        base.interception_mode,
        base.dns_domain,
        labels,
        service_targets(context, proxy.ip, proxy.namespace),
        sidecar,
        proxyless_grpc=base.proxyless_grpc,
        mesh_certificates=base.mesh_certificates,
        virtual_host_discovery=base.virtual_host_discovery,
    )


# Kinds that reach a view only through their workload selectors (PushContext.selectors): a push
# that changes objects of these kinds alone, and no selector, moves no proxy to another view.
_SELECTING_KINDS = frozenset(
    {
        kinds.VIRTUAL_SERVICE,
        kinds.DESTINATION_RULE,
        kinds.PEER_AUTHENTICATION,
        kinds.AUTHORIZATION_POLICY,
        kinds.REQUEST_AUTHENTICATION,
    }
)


def same_views(older: PushContext, newer: PushContext) -> bool:
    """Whether every proxy has the same view under ``newer`` as under ``older``, known without
    computing any view: only objects of kinds that select workloads changed, and no selector did
    (a VirtualService's routes edited). False when that is not known."""
    changed = newer.changed_since(older)
    if changed is None or any(key.kind not in _SELECTING_KINDS for key in changed):
        return False
    return newer.selectors() == older.selectors()


def selected_labels(
    workload: Mapping[str, str], selectors: tuple[frozenset[tuple[str, str]], ...]
) -> tuple[tuple[str, str], ...]:
    """The pairs of ``workload`` that belong to a selector ``workload`` satisfies (see the module's
    docstring), sorted."""
    have = frozenset(workload.items())
    kept: set[tuple[str, str]] = set()
    for selector in selectors:
        if selector <= have:
            kept |= selector
    return tuple(sorted(kept))


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
