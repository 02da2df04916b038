"""KubeSource: Istio config and the service registry from a Kubernetes API server, listed then watched.

What it watches (``namespaces`` scopes all but the last; None means every namespace):

- VirtualService, DestinationRule, ServiceEntry, Gateway, Sidecar, WorkloadGroup in ``networking.istio.io``,
  at the version discovery says the server serves (v1, else v1beta1, else v1alpha3). A kind the server
  does not serve (its CRD is not installed) counts as listed and empty, as Istio's delayed informers do,
  and discovery is asked again every ``rediscover_interval`` until it appears;
- core/v1 Services, discovery.k8s.io/v1 EndpointSlices and core/v1 Pods (for endpoint labels), joined
  into one synthetic ServiceEntry per Service (pilot.config.kube_services, which the folder source shares);
  each Pod is also stored as its identity (kind Pod: address, labels, service account), which gives a
  proxy whose node id names the Pod its labels and service account when its metadata has none;
- the ConfigMap ``istio`` (key ``mesh``) in ``pilot_namespace``, watched by name (``fieldSelector``).

Each Istio object and the ConfigMap go through the same parse and validation as a file
(pilot.sources.kube_objects); each is its own origin, so a bad version keeps the last good one and a
delete is ``store.remove_origin``. Every watch is a Reflector (pilot.sources.kube_reflector) in a thread
of its own: one failing watch does not stop the others, and ``synced`` is set once every watch has
listed once (and discovery has answered) and the store holds what they listed.

Events reach the event loop in batches (``loop.call_soon_threadsafe``); the loop applies everything
queued in one go (``_flush``): the last version of each Istio object once, and each touched Kubernetes
Service rebuilt once. The store then emits events, which the Pusher's debouncer merges.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from pilot.config import kinds
from pilot.config.kube_core import (
    ENDPOINT_SLICE,
    POD,
    SERVICE,
    pod_identity,
    read_endpoint_slice,
    read_pod,
    read_service,
)
from pilot.config.kube_services import ServiceIndex
from pilot.config.objects import ConfigKey, ConfigObject, FieldError, ParseResult
from pilot.config.store import ConfigStore
from pilot.errors import ConfigError, LifecycleError
from pilot.sources.kube_api import Resource, WatchOptions, describe
from pilot.sources.kube_discovery import (
    CLUSTER_SCOPED,
    ISTIO_GROUPS,
    ISTIO_RESOURCES,
    ISTIO_VERSIONS,
    WANTED,
    discover_group,
)
from pilot.sources.kube_objects import log_errors, origin_of, parse_object
from pilot.sources.kube_reflector import DELETED, SYNCED, Event, Reflector, Stopped
from pilot.sources.kube_status import Desired, SeenObject, StatusOptions, StatusWriter

log = logging.getLogger("pilot.sources.kube")

DEFAULT_PILOT_NAMESPACE = "pilot-system"
SERVICES = Resource("", "v1", "services", SERVICE)
ENDPOINT_SLICES = Resource("discovery.k8s.io", "v1", "endpointslices", ENDPOINT_SLICE)
PODS = Resource("", "v1", "pods", POD)
CONFIG_MAPS = Resource("", "v1", "configmaps", kinds.CONFIG_MAP)
REGISTRY_RESOURCES = (SERVICES, ENDPOINT_SLICES, PODS)
MESH_CONFIG_MAP_SELECTOR = f"metadata.name={kinds.MESH_CONFIG_MAP_NAME}"
# How long ``run`` waits for the watch threads when it stops (they are daemons: never longer).
STOP_TIMEOUT = 2.0


def load_api_client(kubeconfig: Path | str | None = None, *, pool_size: int = 0) -> Any:
    """A ``kubernetes.client.ApiClient``, found the way kubectl finds its cluster. Blocking (exec plugins).

    ``kubeconfig`` given: that file. Else in a pod (KUBERNETES_SERVICE_HOST set): the service account, whose
    token is re-read as the kubelet rotates it. Else ``$KUBECONFIG`` or ``~/.kube/config``. ``pool_size``:
    connections kept per host (one per concurrent watch avoids urllib3's "pool is full" churn).
    """
    from kubernetes import client, config

    configuration = client.Configuration()
    try:
        if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        else:
            path = None if kubeconfig is None else str(kubeconfig)
            config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=path, client_configuration=configuration, persist_config=False
            )
    except (config.ConfigException, OSError, ValueError) as err:
        where = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
        raise ConfigError(f"cannot load Kubernetes client config ({where}): {err}") from err
    if pool_size:
        configuration.connection_pool_maxsize = max(configuration.connection_pool_maxsize or 0, pool_size)
    return client.ApiClient(configuration)


def discover_istio(api_client: Any, options: WatchOptions) -> dict[str, Resource]:
    """Istio kind → the resource to watch (pilot.sources.kube_discovery), over the Istio groups
    (networking.istio.io, security.istio.io). Blocking."""
    found: dict[str, Resource] = {}
    for group in ISTIO_GROUPS:
        found.update(discover_group(api_client, group, WANTED[group], options))
    return found


@dataclass(slots=True)
class _Watch:
    reflector: Reflector
    listed: bool = False  # as seen by the event loop (after the list was applied)


class KubeSource:
    """Feeds ``store`` from a Kubernetes API server; see the module docstring.

    ``api_client``: a ``kubernetes.client.ApiClient`` to use (left open); None: one is loaded with
    ``load_api_client(kubeconfig)`` and closed when ``run`` ends. ``run`` may be called once.
    """

    def __init__(
        self,
        store: ConfigStore,
        *,
        namespaces: list[str] | None,
        pilot_namespace: str = DEFAULT_PILOT_NAMESPACE,
        api_client: Any = None,
        kubeconfig: Path | str | None = None,
        cluster_domain: str = "cluster.local",
        options: WatchOptions | None = None,
        status: Desired | None = None,
        status_options: StatusOptions | None = None,
    ) -> None:
        self.synced = asyncio.Event()
        self.namespaces = sorted(set(namespaces)) if namespaces is not None else None
        self.pilot_namespace = pilot_namespace
        self._store = store
        self._api_client = api_client
        self._kubeconfig = kubeconfig
        self._options = options or WatchOptions()
        self._services = ServiceIndex(cluster_domain, origin_of=self._service_origin)
        self._identities: dict[str, ConfigObject | None] = {}  # Pod origin → its identity, to apply
        self._watches: list[_Watch] = []
        self._by_reflector: dict[int, _Watch] = {}
        self._pending: list[tuple[Reflector, list[Event]]] = []
        self._flush_scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._discovered = False
        self._config: dict[str, Resource] = {}  # config kinds being watched, at their version
        self._discovery_error = ""
        self._stopped = False
        self._logged: dict[str, tuple[FieldError, ...]] = {}  # origin → errors last logged
        # Every watched config object as last seen, for the status writer (pilot.sources.kube_status).
        self._seen: dict[ConfigKey, SeenObject] = {}
        self._status = status
        self._status_options = status_options or StatusOptions(watch=self._options)
        self.status_writer: StatusWriter | None = None  # with ``status``, once ``run`` has a client

    @staticmethod
    def _service_origin(namespace: str, name: str) -> str:
        return origin_of(SERVICE, namespace, name)

    # -- reading ------------------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Every watch and its state, for /debug and readiness checks (read from the event loop)."""
        return {
            "synced": self.synced.is_set(),
            "discovered": self._discovered,
            "discovery_error": self._discovery_error,
            "istio_versions": {
                kind: str(resource)
                for kind, resource in sorted(self._config.items())
                if resource.group in ISTIO_GROUPS
            },
            "gateway_api_versions": {
                kind: str(resource)
                for kind, resource in sorted(self._config.items())
                if resource.group == kinds.GATEWAY_API_GROUP
            },
            "watches": [
                {**watch.reflector.status.as_dict(), "applied": watch.listed} for watch in self._watches
            ],
            "status_writes": None
            if self.status_writer is None
            else {"rounds": self.status_writer.rounds, "written": self.status_writer.writes},
        }

    # -- running ------------------------------------------------------------------------------------------

    async def run(self) -> None:
        """Start every watch; ``synced`` once all have listed; follow changes until cancelled."""
        if self._loop is not None:
            raise LifecycleError("KubeSource.run() may be called only once")
        self._loop = asyncio.get_running_loop()
        api = self._api_client
        owned = api is None
        if owned:
            scopes = len(self.namespaces) if self.namespaces is not None else 1
            config = sum(len(wanted) for wanted in WANTED.values())
            pool = (config + len(REGISTRY_RESOURCES)) * scopes + 4  # and the status writes
            api = await asyncio.to_thread(load_api_client, self._kubeconfig, pool_size=pool)
        writing: asyncio.Task[None] | None = None
        try:
            if self._status is not None:
                self.status_writer = StatusWriter(api, self.seen_objects, self._status_options)
                writing = asyncio.create_task(self.status_writer.run(self._status, self.synced))
            for resource in REGISTRY_RESOURCES:
                self._watch_all(api, resource)
            self._start(api, CONFIG_MAPS, self.pilot_namespace, MESH_CONFIG_MAP_SELECTOR)
            await self._discover(api)
            await asyncio.get_running_loop().create_future()  # until cancelled
        finally:
            self._stopped = True
            if writing is not None:
                writing.cancel()
                await asyncio.gather(writing, return_exceptions=True)
            await self._stop_all()
            if owned:
                api.close()

    def _scopes(self) -> Iterable[str | None]:
        return [None] if self.namespaces is None else self.namespaces

    def seen_objects(self) -> Mapping[ConfigKey, SeenObject]:
        """Every watched Istio and Gateway API object as last seen (resourceVersion, generation, status):
        a live read-only view, to read on the event loop."""
        return MappingProxyType(self._seen)

    def _watch_all(self, api: Any, resource: Resource) -> None:
        if resource.kind in CLUSTER_SCOPED:
            self._start(api, resource, None)  # GatewayClass: one watch, whatever the namespaces
            return
        for namespace in self._scopes():
            self._start(api, resource, namespace)

    def _start(self, api: Any, resource: Resource, namespace: str | None, field_selector: str = "") -> None:
        reflector = Reflector(
            api, resource, namespace, self._deliver, self._options, field_selector=field_selector
        )
        watch = _Watch(reflector)
        self._watches.append(watch)
        self._by_reflector[id(reflector)] = watch
        reflector.start()

    async def _discover(self, api: Any) -> None:
        """Find the config kinds' versions (Istio's, the Gateway API's), start their watches; look again
        for missing ones. Returns when every kind is watched. Each group is asked on its own: one whose
        discovery fails (a broken aggregated API, say) is retried with a backoff and holds up neither
        the other's watches nor, once both have answered, ``synced``."""
        failures = 0
        answered: set[str] = set()
        while True:
            errors: dict[str, str] = {}
            for group, wanted in WANTED.items():
                try:
                    found = await asyncio.to_thread(discover_group, api, group, wanted, self._options)
                except Exception as err:
                    errors[group] = describe(err)
                    continue
                answered.add(group)
                for kind in sorted(found.keys() - self._config.keys()):
                    resource = found[kind]
                    self._config[kind] = resource
                    log.info("watching %s", resource)
                    self._watch_all(api, resource)
            missing = {group: sorted(wanted.keys() - self._config.keys()) for group, wanted in WANTED.items()}
            delay = self._options.rediscover_interval
            self._discovery_error = "; ".join(f"{group}: {error}" for group, error in errors.items())
            if errors:
                failures += 1
                delay = self._options.backoff(failures)
                log.warning("discovery failed: %s; retrying in %.2gs", self._discovery_error, delay)
            else:
                failures = 0
            if not self._discovered and answered == WANTED.keys():
                for group, kinds_missing in missing.items():
                    if kinds_missing:
                        log.warning(
                            "the API server does not serve %s (%s); watching without them, looking again "
                            "every %gs",
                            ", ".join(kinds_missing),
                            group,
                            self._options.rediscover_interval,
                        )
                self._discovered = True
                self._check_synced()
            if not errors and not any(missing.values()):
                return
            await asyncio.sleep(delay)

    async def _stop_all(self) -> None:
        for watch in self._watches:
            watch.reflector.stop()
        deadline = asyncio.get_running_loop().time() + STOP_TIMEOUT
        for watch in self._watches:
            while watch.reflector.is_alive() and asyncio.get_running_loop().time() < deadline:
                # Threads end within a read of stop(); poll briefly rather than block the loop on join().
                await asyncio.sleep(0.01)
            if watch.reflector.is_alive():
                log.warning("%s: watch thread did not stop in time; abandoned", watch.reflector.name)

    # -- events (thread → loop) ---------------------------------------------------------------------------

    def _deliver(self, reflector: Reflector, events: list[Event]) -> None:
        """Called from a reflector's thread."""
        loop = self._loop
        if loop is None or loop.is_closed():
            raise Stopped
        try:
            loop.call_soon_threadsafe(self._receive, reflector, events)
        except RuntimeError:  # the loop closed in between
            raise Stopped from None

    def _receive(self, reflector: Reflector, events: list[Event]) -> None:
        if self._stopped:
            return  # sent just before the watch stopped: the source no longer writes to the store
        self._pending.append((reflector, events))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            # After every batch already queued in this loop iteration: they are applied together.
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        """Apply every queued event: each Istio object's last version once, each touched Service once."""
        self._flush_scheduled = False
        batch, self._pending = self._pending, []
        configs: dict[str, dict[str, Any] | None] = {}
        for reflector, events in batch:
            watch = self._by_reflector.get(id(reflector))
            for event in events:
                if event.type == SYNCED:
                    if watch is not None:
                        watch.listed = True
                    continue
                try:
                    self._cache(reflector.resource, event, configs)
                except Exception:  # a bug; the rest of the batch still counts
                    log.exception(
                        "%s: cannot handle %s %s/%s", reflector.name, event.type, event.namespace, event.name
                    )
        for origin, obj in configs.items():
            self._apply_config(origin, obj)
        for _, origin, entry in self._services.flush():
            if entry is None:
                self._store.remove_origin(origin)
            else:
                self._store.apply(ParseResult(origin, objects=(entry,)))
        identities, self._identities = self._identities, {}
        for origin, identity in identities.items():
            # The store drops what did not change: a status-only Pod update is no push.
            if identity is None:
                self._store.remove_origin(origin)
            else:
                self._store.apply(ParseResult(origin, objects=(identity,)))
        self._check_synced()

    def _cache(self, resource: Resource, event: Event, configs: dict[str, dict[str, Any] | None]) -> None:
        kind = resource.kind
        obj = None if event.type == DELETED else event.obj
        # The API server has checked these objects: what pilot.config.kube_core would say of a field
        # (a file's errors) cannot happen here, and the reader keeps what it can use.
        if kind == SERVICE:
            self._services.service(event.namespace, event.name, None if obj is None else read_service(obj)[0])
        elif kind == ENDPOINT_SLICE:
            record = None if obj is None else read_endpoint_slice(obj)[0]
            self._services.endpoint_slice(event.namespace, event.name, record)
        elif kind == POD:
            pod = None if obj is None else read_pod(obj)[0]
            if not self._services.pod(event.namespace, event.name, pod):
                return  # a status update that changes nothing pilot keeps
            origin = origin_of(POD, event.namespace, event.name)
            self._identities.pop(origin, None)  # keep the order of last changes
            self._identities[origin] = (
                None if pod is None else pod_identity(event.namespace, event.name, pod, origin)
            )
        else:
            origin = origin_of(kind, event.namespace, event.name)
            configs.pop(origin, None)  # keep the order of last changes
            configs[origin] = obj
            # A cluster-scoped object (GatewayClass) is stored in "default", as a file's would be.
            key = ConfigKey(kind, event.namespace or "default", event.name)
            if obj is None:
                self._seen.pop(key, None)
            else:
                self._seen[key] = SeenObject.of(resource, obj)

    def _apply_config(self, origin: str, obj: dict[str, Any] | None) -> None:
        if obj is None:
            self._logged.pop(origin, None)
            event = self._store.remove_origin(origin)
            log.info("removed %s%s", origin, "" if event is None else f" at revision {event.revision}")
            return
        try:
            result = parse_object(obj, origin)
        except Exception:  # a parser bug must not stop the source: keep the last good version
            log.exception("parsing %s failed", origin)
            return
        if result.errors != self._logged.get(origin, ()):
            # Relists and status-only updates bring the same object again: say its problems once.
            log_errors(log, result.errors)
            if result.errors:
                self._logged[origin] = result.errors
            else:
                self._logged.pop(origin, None)
        event = self._store.apply(result)
        if result.rejected:
            log.warning("%s rejected; its last good version stays", origin)
        elif event is not None:
            log.info("applied %s at revision %d", origin, event.revision)

    def _check_synced(self) -> None:
        if self.synced.is_set() or not self._discovered:
            return
        if all(watch.listed for watch in self._watches):
            log.info(
                "Kubernetes synced: %d watches, %d services, %d config objects",
                len(self._watches),
                len(self._services),
                len(self._store.snapshot().objects),
            )
            self.synced.set()


__all__ = [
    "CONFIG_MAPS",
    "DEFAULT_PILOT_NAMESPACE",
    "ENDPOINT_SLICES",
    "ISTIO_GROUPS",
    "ISTIO_RESOURCES",
    "ISTIO_VERSIONS",
    "KubeSource",
    "PODS",
    "REGISTRY_RESOURCES",
    "SERVICES",
    "WatchOptions",
    "discover_istio",
    "load_api_client",
]
