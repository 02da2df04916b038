"""The mesh CA's root as the ConfigMap ``istio-ca-root-cert`` (key ``root-cert.pem``) in every namespace.

Istio's namespace controller (pilot/pkg/serviceregistry/kube/controller/namespacecontroller.go) writes
this ConfigMap into each namespace so that workloads (the agent, and Envoy through it) trust the mesh
root without reading istiod's secrets; it skips the system namespaces (kube-system, kube-public,
kube-node-lease, local-path-storage: Istio's inject.IgnoredNamespaces), labels the ConfigMap
``istio.io/config: "true"``, and puts it back when someone changes or deletes it.

pilot reconciles on a period instead of watching namespaces and ConfigMaps: every ``interval`` it
lists the namespaces (or takes ``namespaces`` when pilot watches only those), reads each ConfigMap
and creates or replaces the ones missing or different. A namespace created meanwhile gets its
ConfigMap within one interval; a failed write is logged and retried on the next round.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pilot.sources.kube_api import ApiError, WatchOptions, describe, get_json
from pilot.sources.kube_writes import NAMESPACES, send_json

log = logging.getLogger("pilot.sources.kube_root_cert")

CONFIG_MAP_NAME = "istio-ca-root-cert"
ROOT_CERT_KEY = "root-cert.pem"
LABELS = {"istio.io/config": "true"}
IGNORED_NAMESPACES = frozenset({"kube-system", "kube-public", "kube-node-lease", "local-path-storage"})
DEFAULT_INTERVAL = 30.0


@dataclass(frozen=True, slots=True)
class RoundResult:
    """What one reconcile round did."""

    created: tuple[str, ...] = ()
    updated: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()


class RootCertPublisher:
    """Keeps ``istio-ca-root-cert`` holding ``roots_pem`` in every namespace; ``run`` until cancelled."""

    def __init__(
        self,
        api_client: Any,
        roots_pem: str,
        *,
        namespaces: Sequence[str] | None = None,
        interval: float = DEFAULT_INTERVAL,
        options: WatchOptions | None = None,
    ) -> None:
        self._api = api_client
        self._roots_pem = roots_pem
        self._namespaces = sorted(set(namespaces)) if namespaces is not None else None
        self._interval = interval
        self._options = options or WatchOptions()
        self.rounds = 0  # completed rounds, for tests and /debug

    async def run(self) -> None:
        while True:
            try:
                result = await asyncio.to_thread(self.reconcile)
            except Exception as err:  # the API server is down: try again next round
                log.warning("publishing %s: %s", CONFIG_MAP_NAME, describe(err))
            else:
                if result.created or result.updated:
                    log.info(
                        "%s: created in %s, updated in %s",
                        CONFIG_MAP_NAME,
                        ", ".join(result.created) or "none",
                        ", ".join(result.updated) or "none",
                    )
            self.rounds += 1
            await asyncio.sleep(self._interval)

    def reconcile(self) -> RoundResult:
        """One round: every namespace's ConfigMap created or brought up to date. Blocking."""
        created: list[str] = []
        updated: list[str] = []
        failed: list[str] = []
        for namespace in self._targets():
            try:
                outcome = self._publish(namespace)
            except ApiError as err:
                log.warning("cannot write %s in namespace %s: %s", CONFIG_MAP_NAME, namespace, err)
                failed.append(namespace)
                continue
            if outcome == "created":
                created.append(namespace)
            elif outcome == "updated":
                updated.append(namespace)
        return RoundResult(tuple(created), tuple(updated), tuple(failed))

    def _targets(self) -> list[str]:
        if self._namespaces is not None:
            names = self._namespaces
        else:
            listed = get_json(self._api, NAMESPACES, self._options) or {}
            names = [
                str(item["metadata"]["name"])
                for item in listed.get("items") or ()
                if isinstance(item, dict)
                and isinstance(item.get("metadata"), dict)
                and item["metadata"].get("name")
                # A namespace being deleted refuses new objects.
                and (item.get("status") or {}).get("phase") != "Terminating"
            ]
        return [name for name in names if name not in IGNORED_NAMESPACES]

    def _publish(self, namespace: str) -> str:
        """ "created", "updated" or "unchanged"."""
        collection = f"{NAMESPACES}/{namespace}/configmaps"
        current = get_json(self._api, f"{collection}/{CONFIG_MAP_NAME}", self._options)
        wanted: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": CONFIG_MAP_NAME, "namespace": namespace, "labels": LABELS},
            "data": {ROOT_CERT_KEY: self._roots_pem},
        }
        if current is None:
            send_json(self._api, "POST", collection, wanted, self._options)
            return "created"
        metadata = current.get("metadata") or {}
        labels = metadata.get("labels") or {}
        if (current.get("data") or {}).get(ROOT_CERT_KEY) == self._roots_pem and all(
            labels.get(k) == v for k, v in LABELS.items()
        ):
            return "unchanged"
        # Replace at the version read: a concurrent writer makes this a 409, retried next round.
        wanted["metadata"] = {
            **wanted["metadata"],
            "labels": {**labels, **LABELS},
            "resourceVersion": metadata.get("resourceVersion", ""),
        }
        send_json(self._api, "PUT", f"{collection}/{CONFIG_MAP_NAME}", wanted, self._options)
        return "updated"
