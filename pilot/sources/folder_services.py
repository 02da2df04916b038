"""The Kubernetes Services, EndpointSlices and Pods of a folder's files, joined into ServiceEntries.

They are joined across files as the cluster source joins them (pilot.config.kube_services): one
ServiceEntry per Service, its endpoints from its EndpointSlices, or from the Pods its selector matches
when the folder holds no EndpointSlice for it. Each such ServiceEntry is an origin of its own,
``folder:Service/NS/NAME`` (no file can have that name); its Service's problems stay with the file. A
Service, EndpointSlice or Pod in two files: the copy in the file whose path sorts first counts, as for
any object; a Service's other copies are reported as duplicates. A file with errors keeps the core
objects it no longer holds, as the store keeps its other objects.
"""

from __future__ import annotations

import logging
from pathlib import PurePath

from pilot.config import kube_core
from pilot.config.kube_services import ServiceIndex
from pilot.config.objects import ConfigKey, FieldError, ParseResult
from pilot.config.store import ConfigStore

# The folder source's logger: a Service's ServiceEntry is applied among the folder's files.
log = logging.getLogger("pilot.sources.files")

# The origin of the ServiceEntry made of a Kubernetes Service (not a file name: it has no config suffix).
SERVICE_ORIGIN_PREFIX = "folder:Service/"


def service_origin(namespace: str, name: str) -> str:
    return f"{SERVICE_ORIGIN_PREFIX}{namespace}/{name}"


class FolderServices:
    """The core objects each file of a folder holds, and the ServiceEntries made of them. Not
    thread-safe (the folder source's event loop)."""

    def __init__(self, cluster_domain: str) -> None:
        self._core: dict[PurePath, dict[ConfigKey, kube_core.CoreObject]] = {}
        self._core_holders: dict[ConfigKey, set[PurePath]] = {}
        self._index = ServiceIndex(cluster_domain, origin_of=service_origin, endpoints_from_pods=True)

    def apply(self, relative: PurePath, result: ParseResult | None) -> None:
        """The core objects ``relative`` now holds (None: the file is gone), with the store's rules for
        last good versions: a fatal result changes nothing, a rejected object keeps its last good
        record, and a result with an error or ``partial`` keeps every record it lacks."""
        if result is not None and result.fatal:
            return
        old = self._core.get(relative, {})
        new = {} if result is None else {core.key: core for core in result.core}
        if result is not None and old:
            clean = not result.partial and not any(error.severity == "error" for error in result.errors)
            for key, held in old.items():
                if key not in new and (not clean or key in result.rejected):
                    new[key] = held
        if new:
            self._core[relative] = new
        else:
            self._core.pop(relative, None)
        for key in sorted(old.keys() | new.keys()):
            if old.get(key) == new.get(key):
                continue
            holders = self._core_holders.setdefault(key, set())
            if key in new:
                holders.add(relative)
            else:
                holders.discard(relative)
            if not holders:
                del self._core_holders[key]
            self._feed(key)

    def _feed(self, key: ConfigKey) -> None:
        """Give the index the copy of ``key`` that counts: the one of the file whose path sorts first."""
        holders = self._core_holders.get(key)
        record = None if not holders else self._core[min(holders, key=PurePath.as_posix)][key].record
        if key.kind == kube_core.SERVICE:
            service = record if isinstance(record, kube_core.ServiceRecord) else None
            self._index.service(key.namespace, key.name, service)
        elif key.kind == kube_core.ENDPOINT_SLICE:
            endpoint_slice = record if isinstance(record, kube_core.SliceRecord) else None
            self._index.endpoint_slice(key.namespace, key.name, endpoint_slice)
        elif key.kind == kube_core.POD:
            pod = record if isinstance(record, kube_core.PodRecord) else None
            self._index.pod(key.namespace, key.name, pod)

    def flush(self, store: ConfigStore) -> None:
        """Store the ServiceEntry of every Service whose objects changed."""
        for (namespace, name), origin, entry in self._index.flush():
            if entry is None:
                store.remove_origin(origin)
                continue
            key = ConfigKey(kube_core.SERVICE, namespace, name)
            holders = sorted(self._core_holders.get(key, ()), key=PurePath.as_posix)
            errors = tuple(
                FieldError(
                    loser.as_posix(),
                    f"duplicate of the object already loaded from {holders[0].as_posix()}, whose path sorts "
                    "first; ignored",
                    key,
                )
                for loser in holders[1:]
            )
            event = store.apply(ParseResult(origin, objects=(entry,), errors=errors))
            if event is not None:
                log.info("applied %s at revision %d", origin, event.revision)


__all__ = ["SERVICE_ORIGIN_PREFIX", "FolderServices", "service_origin"]
