"""Reflector: one list+watch of one Kubernetes resource, run in a thread of its own.

The ``kubernetes`` client is synchronous, so each watch reads its stream in a dedicated daemon thread
(never the event loop's default executor: a watch blocks for minutes, and that pool has only
min(32, CPUs + 4) workers). The thread owns everything about its watch; it hands batches of events to
``deliver``, which the owner makes thread-safe (``loop.call_soon_threadsafe``). Requests are built and
authenticated by the client's own ``ApiClient`` and responses decoded with orjson (pilot.sources.kube_api).

The protocol is the API server's documented one (https://kubernetes.io/docs/reference/using-api/api-concepts/):

- **list**, in pages of ``limit`` with ``continue``; the list's ``metadata.resourceVersion`` is where the
  watch starts ("efficient detection of changes"). Items of built-in lists carry no ``kind`` and
  ``apiVersion``: they are filled in from the resource.
- **watch** with ``watch=true&resourceVersion=RV&allowWatchBookmarks=true&timeoutSeconds=T``: JSON lines
  ``{"type": ADDED|MODIFIED|DELETED|BOOKMARK|ERROR, "object": ...}``. Every event (and every BOOKMARK)
  moves RV forward, so a watch that ends (the server's timeout, a dropped connection, a restart) resumes
  from the last RV seen: nothing is lost and nothing is replayed.
- **410 Gone** ("too old resource version", an ERROR event with a Status of code 410, or an HTTP 410 for
  an expired ``continue``): the history the watch needs is gone, so list again. The new list is diffed
  against what this reflector knew: new or changed objects (by resourceVersion) become ADDED/MODIFIED,
  objects no longer listed become DELETED (a delete that happened during the gap is not lost), unchanged
  objects produce nothing (no duplicate).
- Any other failure (connection refused or dropped, 5xx, 403, a bad line): retry after a capped
  exponential backoff with jitter, resuming the watch from the last RV when there is one. The backoff is
  reset only by progress (a watch that delivered an event or stayed up), so a server that accepts and
  immediately closes, or answers 410 to every watch, is not hammered.

After each list, a ``SYNCED`` pseudo-event follows the list's events: the owner knows this resource has
been listed (once, for readiness) and that the store is complete for it.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import orjson

from pilot.sources.kube_api import (
    MAX_ERROR_BODY,
    ApiError,
    Gone,
    Resource,
    WatchOptions,
    api_error,
    describe,
    open_get,
    read_json,
    shut_down,
    watch_lines,
)

log = logging.getLogger("pilot.sources.kube")

ADDED = "ADDED"
MODIFIED = "MODIFIED"
DELETED = "DELETED"
BOOKMARK = "BOOKMARK"
ERROR = "ERROR"
SYNCED = "SYNCED"  # not on the wire: the events before it are a complete list


@dataclass(frozen=True, slots=True)
class Event:
    """A change to one object. ``obj`` is None for a delete found by a relist (the object is gone)."""

    type: str
    namespace: str
    name: str
    obj: dict[str, Any] | None = None


@dataclass(slots=True)
class ReflectorStatus:
    """What one watch is doing, for /debug and tests. Written by the reflector's thread only."""

    resource: str
    namespace: str | None
    listed: bool = False  # listed at least once
    lists: int = 0
    watches: int = 0  # watch requests that were answered 200
    events: int = 0  # changes delivered (after de-duplication)
    errors: int = 0
    connected: bool = False
    resource_version: str = ""
    last_error: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Stopped(Exception):
    """The reflector was asked to stop (or its event loop is gone)."""


class _NoProgress(Exception):
    pass


Deliver = Callable[["Reflector", list[Event]], None]


class Reflector:
    """List, then watch, ``resource`` (in ``namespace``, or cluster-wide) until ``stop``.

    ``deliver(reflector, events)`` is called from the reflector's thread; it must be thread-safe and may
    raise Stopped when the owner is gone. ``start`` and ``stop`` may be called from any thread.
    """

    def __init__(
        self,
        api_client: Any,
        resource: Resource,
        namespace: str | None,
        deliver: Deliver,
        options: WatchOptions,
        *,
        field_selector: str = "",
    ) -> None:
        self.resource = resource
        self.namespace = namespace
        self.field_selector = field_selector
        self.status = ReflectorStatus(str(resource), namespace)
        self._api = api_client
        self._deliver = deliver
        self._options = options
        self._path = resource.path(namespace)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._response: Any = None
        self._rv: str | None = None  # None: list first
        self._known: dict[tuple[str, str], str] = {}  # (namespace, name) → resourceVersion
        self._thread = threading.Thread(target=self._main, name=f"kube-watch {self.name}", daemon=True)

    @property
    def name(self) -> str:
        where = f" in {self.namespace}" if self.namespace else ""
        what = f" ({self.field_selector})" if self.field_selector else ""
        return f"{self.resource}{where}{what}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Ask the thread to end, and unblock a read it may be stuck in (urllib3's ``shutdown``)."""
        self._stop.set()
        with self._lock:
            response = self._response
        if response is not None:
            shut_down(response)

    def join(self, timeout: float) -> bool:
        """Wait for the thread to end; True when it has."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    # -- the thread ---------------------------------------------------------------------------------

    def _main(self) -> None:
        try:
            self._loop()
        except Stopped:
            pass
        except BaseException:  # a bug: say so, rather than let the thread die silently
            log.exception("%s: watch thread failed", self.name)
            self.status.last_error = "internal error (see pilot's log)"
        finally:
            self.status.connected = False

    def _loop(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                if self._rv is None:
                    self._list()
                started = time.monotonic()
                progress = self._watch()
                if not progress and time.monotonic() - started < self._options.min_watch_duration:
                    raise _NoProgress("the watch ended at once without an event")
                failures = 0
            except Stopped:
                return
            except Gone as err:
                # client-go lists again at once; a server that keeps answering 410 gets the backoff.
                log.info("%s: %s; listing again", self.name, err)
                self._rv = None
                if failures:
                    self._wait(self._options.backoff(failures))
                failures += 1
            except Exception as err:
                if self._stop.is_set():
                    return
                failures += 1
                delay = self._options.backoff(failures)
                self.status.errors += 1
                self.status.last_error = describe(err)
                level = logging.INFO if isinstance(err, _NoProgress) else logging.WARNING
                log.log(level, "%s: %s; retrying in %.2gs", self.name, describe(err), delay)
                self._wait(delay)

    def _wait(self, seconds: float) -> None:
        if self._stop.wait(seconds):
            raise Stopped

    def _list(self) -> None:
        items: list[dict[str, Any]] = []
        token = ""
        timeout = (self._options.connect_timeout, self._options.request_timeout)
        while True:
            query = [("limit", str(self._options.page_size))]
            if token:
                query.append(("continue", token))
            if self.field_selector:
                query.append(("fieldSelector", self.field_selector))
            body = self._read(self._open(query, timeout))
            page = body.get("items") if isinstance(body, dict) else None
            metadata = body.get("metadata") if isinstance(body, dict) else None
            if not isinstance(page, list) or not isinstance(metadata, dict):
                raise ApiError(0, "the list response is not a list")
            items.extend(item for item in page if isinstance(item, dict))
            token = str(metadata.get("continue") or "")
            if not token:
                rv = str(metadata.get("resourceVersion") or "")
                break
        if not rv:
            raise ApiError(0, "the list response has no resourceVersion")
        events = self._diff(items)
        self._rv = rv
        self.status.resource_version = rv
        self.status.lists += 1
        self.status.events += len(events)
        self._post([*events, Event(SYNCED, "", "")])
        self.status.listed = True
        log.debug("%s: listed %d objects at resourceVersion %s", self.name, len(items), rv)

    def _diff(self, items: list[dict[str, Any]]) -> list[Event]:
        """What changed since the last list or watch event: only real changes, deletes included."""
        events: list[Event] = []
        seen: dict[tuple[str, str], str] = {}
        for obj in items:
            self._complete(obj)
            key, rv = _identity(obj)
            seen[key] = rv
            before = self._known.get(key)
            if before != rv:
                events.append(Event(ADDED if before is None else MODIFIED, key[0], key[1], obj))
        events.extend(Event(DELETED, ns, name) for ns, name in sorted(self._known.keys() - seen.keys()))
        self._known = seen
        return events

    def _watch(self) -> bool:
        """One watch request, until the server ends it; True when it delivered anything."""
        assert self._rv is not None
        seconds = int(self._options.watch_timeout * (1 + random.random())) or 1
        query = [
            ("watch", "true"),
            ("resourceVersion", self._rv),
            ("allowWatchBookmarks", "true"),
            ("timeoutSeconds", str(seconds)),
        ]
        if self.field_selector:
            query.append(("fieldSelector", self.field_selector))
        response = self._open(query, (self._options.connect_timeout, seconds + self._options.read_slack))
        progress = False
        try:
            if not 200 <= int(response.status) < 300:
                raise api_error(int(response.status), response.read(MAX_ERROR_BODY))
            self.status.watches += 1
            self.status.connected = True
            for lines in watch_lines(response):
                progress = True
                events: list[Event] = []
                try:
                    for line in lines:
                        if (event := self._event(line)) is not None:
                            events.append(event)
                finally:
                    # Even when a later line of the batch is an ERROR: these are already counted as known.
                    if events:
                        self.status.events += len(events)
                        self._post(events)
                self.status.resource_version = self._rv or ""
        except Exception:
            if self._stop.is_set():
                raise Stopped from None
            raise
        finally:
            self.status.connected = False
            self._close(response)
        return progress

    def _event(self, line: bytes) -> Event | None:
        """Decode one watch line; None for a bookmark or a duplicate. Raises Gone/ApiError for ERROR."""
        raw = orjson.loads(line)
        kind = raw.get("type") if isinstance(raw, dict) else None
        obj = raw.get("object") if isinstance(raw, dict) else None
        if not isinstance(kind, str) or not isinstance(obj, dict):
            raise ApiError(0, f"not a watch event: {line[:200]!r}")
        if kind == ERROR:
            code = obj.get("code")
            message = str(obj.get("message") or obj.get("reason") or "watch error")
            raise Gone(410, message) if code == 410 else ApiError(int(code or 0), message)
        metadata = obj.get("metadata")
        rv = str(metadata.get("resourceVersion") or "") if isinstance(metadata, dict) else ""
        if kind == BOOKMARK:
            if rv:
                self._rv = rv
            return None
        if kind not in (ADDED, MODIFIED, DELETED):
            raise ApiError(0, f"unknown watch event type {kind!r}")
        self._complete(obj)
        key, rv = _identity(obj)
        if rv:
            self._rv = rv
        if kind == DELETED:
            if self._known.pop(key, None) is None:
                return None  # never seen (or already deleted): nothing to undo
            return Event(DELETED, key[0], key[1], obj)
        if self._known.get(key) == rv:
            return None  # a replay of a version already delivered
        kind = MODIFIED if key in self._known else ADDED
        self._known[key] = rv
        return Event(kind, key[0], key[1], obj)

    def _complete(self, obj: dict[str, Any]) -> None:
        """List items of built-in types carry no kind/apiVersion; the parser needs both."""
        obj.setdefault("apiVersion", self.resource.api_version)
        obj.setdefault("kind", self.resource.kind)
        metadata = obj.get("metadata")
        if isinstance(metadata, dict):
            metadata.pop("managedFields", None)

    def _post(self, events: list[Event]) -> None:
        if self._stop.is_set():
            raise Stopped
        self._deliver(self, events)

    def _open(self, query: list[tuple[str, str]], timeout: tuple[float, float]) -> Any:
        if self._stop.is_set():
            raise Stopped
        response = open_get(self._api, self._path, query, timeout)
        with self._lock:
            self._response = response
        if self._stop.is_set():  # stop() ran while the request was in flight: it could not see it
            self._close(response)
            raise Stopped
        return response

    def _read(self, response: Any) -> Any:
        try:
            return read_json(response)
        except Exception:
            if self._stop.is_set():
                raise Stopped from None
            raise
        finally:
            self._close(response)

    def _close(self, response: Any) -> None:
        with self._lock:
            if self._response is response:
                self._response = None
        try:
            response.release_conn()
        except Exception:  # the connection may be shut down already; nothing to give back then
            pass


def _identity(obj: dict[str, Any]) -> tuple[tuple[str, str], str]:
    metadata = obj.get("metadata")
    if not isinstance(metadata, dict):
        raise ApiError(0, "an object without metadata")
    return (str(metadata.get("namespace") or ""), str(metadata.get("name") or "")), str(
        metadata.get("resourceVersion") or ""
    )


__all__ = [
    "ADDED",
    "BOOKMARK",
    "DELETED",
    "ERROR",
    "MODIFIED",
    "SYNCED",
    "Event",
    "Reflector",
    "ReflectorStatus",
    "Stopped",
    "WatchOptions",  # pilot.app imports it from here
]
