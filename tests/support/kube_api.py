"""A fake Kubernetes API server on 127.0.0.1 that speaks the documented list/watch wire protocol.

No real API server runs on the machines these tests run on, so pilot's Kubernetes source is tested
with the real ``kubernetes`` client against this aiohttp server. What it reproduces (see
https://kubernetes.io/docs/reference/using-api/api-concepts/ and docs/kubernetes.md):

- discovery: ``/api``, ``/api/v1``, ``/apis``, ``/apis/GROUP``, ``/apis/GROUP/VERSION``; the
  networking.istio.io versions and kinds served are configurable (``istio_versions``, ``istio_kinds``),
  and can change while running (``serve_istio``), like CRDs being installed;
- collections ``/api/v1[/namespaces/NS]/PLURAL`` and ``/apis/GROUP/VERSION[/namespaces/NS]/PLURAL``
  for Services, Pods, ConfigMaps, EndpointSlices and the four Istio kinds; ``fieldSelector`` on
  ``metadata.name``/``metadata.namespace``;
- lists with ``metadata.resourceVersion``, paged by ``limit``/``continue`` from a snapshot; items of
  built-in lists carry no ``kind``/``apiVersion`` (as the real server's typed lists), CRD list items do;
  an expired continue token is a 410 ``Expired`` Status;
- one global, increasing resourceVersion (etcd's revision) stamped on every write; Istio objects are
  stored once and served at every served version with that version's ``apiVersion``;
- ``?watch=true&resourceVersion=N[&allowWatchBookmarks=true][&timeoutSeconds=T]`` as a chunked stream
  of JSON lines: ADDED/MODIFIED/DELETED for every change after N (replayed from history, then live),
  BOOKMARK with the current resourceVersion (``send_bookmarks``, or every ``bookmark_interval``), and
  for an N older than the history (``compact``) one ERROR event holding a 410 ``Expired`` Status, then
  the end of the stream, which is what the API server does; no N (or "0") starts with synthetic ADDED
  events for everything, then live;
- faults a test can cause: ``fail(plural, status)`` answers every request for a resource with that
  error Status; ``drop_watches`` cuts every watch connection mid-stream (no final chunk);
  ``end_watches`` ends them cleanly (as ``timeoutSeconds`` does); ``restart`` stops listening and
  serves again on the same port, by default with its watch history gone (a real API server's watch
  cache starts empty after a restart, so resuming an old resourceVersion is answered 410);
- a bearer token, if given, is required (401 otherwise), so a kubeconfig's credentials are checked.

Writes (``apply``, ``delete``) are methods a test calls, not HTTP: they stamp resourceVersion, uid,
creationTimestamp and generation, and produce the events watches see.

Async tests run the fake in their own event loop (``async with FakeKubeApi() as kube``). Synchronous
tests (the end-to-end ones, which drive real processes with blocking calls) use ``KubeApiThread``: the
fake in a thread with its own loop, every call on it made through ``call`` (the fake is not
thread-safe). ``write_kubeconfig`` points a client, such as ``pilot serve --kubeconfig``, at it.
"""

from __future__ import annotations

import asyncio
import copy
import inspect
import itertools
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

LOOPBACK = "127.0.0.1"
ISTIO_GROUP = "networking.istio.io"
ISTIO_VERSIONS = ("v1", "v1beta1", "v1alpha3")
ISTIO_KINDS = ("VirtualService", "DestinationRule", "ServiceEntry", "Gateway", "Sidecar", "WorkloadGroup")
SECURITY_GROUP = "security.istio.io"
SECURITY_VERSIONS = ("v1", "v1beta1")
SECURITY_KINDS = ("PeerAuthentication", "AuthorizationPolicy", "RequestAuthentication")


@dataclass(frozen=True)
class ResourceType:
    kind: str
    group: str
    plural: str
    builtin: bool  # typed lists: items without kind/apiVersion
    version: str = "v1"  # for built-in types; Istio types are served at every served version

    @property
    def singular(self) -> str:
        return self.kind.lower()


TYPES = {
    t.kind: t
    for t in (
        ResourceType("Service", "", "services", True),
        ResourceType("Pod", "", "pods", True),
        ResourceType("ConfigMap", "", "configmaps", True),
        ResourceType("EndpointSlice", "discovery.k8s.io", "endpointslices", True),
        ResourceType("VirtualService", ISTIO_GROUP, "virtualservices", False),
        ResourceType("DestinationRule", ISTIO_GROUP, "destinationrules", False),
        ResourceType("ServiceEntry", ISTIO_GROUP, "serviceentries", False),
        ResourceType("Gateway", ISTIO_GROUP, "gateways", False),
        ResourceType("Sidecar", ISTIO_GROUP, "sidecars", False),
        ResourceType("WorkloadGroup", ISTIO_GROUP, "workloadgroups", False),
        ResourceType("PeerAuthentication", SECURITY_GROUP, "peerauthentications", False),
        ResourceType("AuthorizationPolicy", SECURITY_GROUP, "authorizationpolicies", False),
        ResourceType("RequestAuthentication", SECURITY_GROUP, "requestauthentications", False),
    )
}
# A few more the real server has, so discovery documents look like one.
_EXTRA_CORE = ("namespaces", "nodes", "endpoints", "secrets")


def status(code: int, reason: str, message: str) -> dict[str, Any]:
    """A metav1.Status, as the API server writes errors."""
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


@dataclass
class _Watcher:
    type: ResourceType
    version: str
    namespace: str | None
    name: str | None
    bookmarks: bool
    request: web.Request
    queue: asyncio.Queue[tuple[str, Any]] = field(default_factory=asyncio.Queue)

    def matches(self, type_: ResourceType, obj: dict[str, Any]) -> bool:
        meta = obj["metadata"]
        return (
            type_ is self.type
            and (self.namespace is None or meta.get("namespace") == self.namespace)
            and (self.name is None or meta.get("name") == self.name)
        )


@dataclass
class _Record:
    rv: int
    type: ResourceType
    event: str
    obj: dict[str, Any]


class FakeKubeApi:
    """The fake API server. ``await start()``, ``url``, writes and faults, ``await stop()``."""

    def __init__(
        self,
        *,
        istio_versions: Iterable[str] = ISTIO_VERSIONS,
        istio_kinds: Iterable[str] = ISTIO_KINDS,
        security_kinds: Iterable[str] = SECURITY_KINDS,
        token: str | None = None,
        bookmark_interval: float | None = None,
    ) -> None:
        self.istio_versions = tuple(istio_versions)
        self.istio_kinds = set(istio_kinds)
        self.security_kinds = set(security_kinds)
        self.token = token
        self.bookmark_interval = bookmark_interval
        self.port = 0
        self.requests: list[tuple[str, dict[str, str]]] = []  # (path, query) of every request
        self._rv = 1000
        self._oldest = 1000  # watches from an older resourceVersion get 410
        self._objects: dict[tuple[str, str, str], dict[str, Any]] = {}  # (kind, ns, name) → object
        self._history: list[_Record] = []
        self._watchers: list[_Watcher] = []
        self._continues: dict[str, list[dict[str, Any]]] = {}
        self._failures: dict[str, tuple[int, str]] = {}
        self._runner: web.AppRunner | None = None
        self._tokens = itertools.count(1)
        # Called with (path, query) before each request is answered: a test's hook to act mid-protocol.
        self.before_request: Callable[[str, dict[str, str]], None] | None = None
        # Namespaces listed by GET /api/v1/namespaces, besides those of stored objects.
        self.namespaces: set[str] = set()
        # TokenReview: token → (user name, audiences the token was issued for).
        self.token_reviews: dict[str, tuple[str, tuple[str, ...]]] = {}
        self.writes: list[tuple[str, str]] = []  # (method, path) of every POST and PUT

    # -- lifecycle ----------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    async def start(self, port: int = 0) -> FakeKubeApi:
        app = web.Application()
        app.router.add_get("/{path:.*}", self._handle)
        app.router.add_post("/{path:.*}", self._handle_write)
        app.router.add_put("/{path:.*}", self._handle_write)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, LOOPBACK, port or self.port, reuse_address=True)
        await site.start()
        self._runner = runner
        server = getattr(site, "_server", None)
        self.port = int(server.sockets[0].getsockname()[1]) if server is not None else port
        return self

    async def stop(self) -> None:
        """Stop serving: watches are cut, listening ends. State is kept (``start`` again to resume)."""
        self.drop_watches()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def restart(self, *, keep_history: bool = False) -> None:
        """Stop and serve again on the same port. The watch history is lost unless ``keep_history``."""
        await self.stop()
        if not keep_history:
            self.compact()
        await self.start(self.port)

    async def __aenter__(self) -> FakeKubeApi:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- state --------------------------------------------------------------------------------------------

    @property
    def resource_version(self) -> int:
        return self._rv

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        obj = self._objects.get((kind, namespace, name))
        return copy.deepcopy(obj) if obj is not None else None

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Create or update ``obj`` (by kind, namespace, name); returns it as stored."""
        obj = copy.deepcopy(obj)
        type_ = TYPES[obj["kind"]]
        meta = obj.setdefault("metadata", {})
        meta.setdefault("namespace", "default")
        key = (type_.kind, meta["namespace"], meta["name"])
        old = self._objects.get(key)
        self._rv += 1
        meta["resourceVersion"] = str(self._rv)
        meta["uid"] = old["metadata"]["uid"] if old else str(uuid.uuid4())
        meta["creationTimestamp"] = old["metadata"]["creationTimestamp"] if old else "2025-01-01T00:00:00Z"
        meta["generation"] = old["metadata"].get("generation", 1) + 1 if old else 1
        meta["managedFields"] = [{"manager": "kubectl", "operation": "Apply"}]
        self._objects[key] = obj
        self._emit(type_, "MODIFIED" if old else "ADDED", obj)
        return copy.deepcopy(obj)

    def delete(self, kind: str, namespace: str, name: str) -> bool:
        obj = self._objects.pop((kind, namespace, name), None)
        if obj is None:
            return False
        self._rv += 1
        obj = copy.deepcopy(obj)
        obj["metadata"]["resourceVersion"] = str(self._rv)
        self._emit(TYPES[kind], "DELETED", obj)
        return True

    def compact(self) -> None:
        """Forget the watch history (etcd compaction): resuming any older resourceVersion gets 410."""
        self._history.clear()
        self._oldest = self._rv
        self._continues.clear()

    def serve_istio(self, kinds: Iterable[str]) -> None:
        """Change which Istio kinds discovery lists and the server serves (CRDs installed or removed)."""
        self.istio_kinds = set(kinds)

    # -- faults -------------------------------------------------------------------------------------------

    def fail(self, plural: str, code: int = 500, reason: str = "InternalError") -> None:
        """Answer every request for ``plural`` (list and watch) with this error until ``heal``."""
        self._failures[plural] = (code, reason)
        for watcher in list(self._watchers):
            if watcher.type.plural == plural:
                watcher.queue.put_nowait(("drop", None))

    def heal(self, plural: str) -> None:
        self._failures.pop(plural, None)

    def drop_watches(self) -> int:
        """Cut every watch connection mid-stream; returns how many there were."""
        for watcher in self._watchers:
            watcher.queue.put_nowait(("drop", None))
        return len(self._watchers)

    def end_watches(self) -> int:
        """End every watch cleanly, as its timeoutSeconds would."""
        for watcher in self._watchers:
            watcher.queue.put_nowait(("end", None))
        return len(self._watchers)

    def send_bookmarks(self) -> None:
        for watcher in self._watchers:
            if watcher.bookmarks:
                watcher.queue.put_nowait(("bookmark", None))

    def watch_count(self, plural: str | None = None) -> int:
        return sum(1 for w in self._watchers if plural is None or w.type.plural == plural)

    def list_requests(self, plural: str) -> list[dict[str, str]]:
        return [
            q
            for path, q in self.requests
            if path.endswith("/" + plural) and q.get("watch") not in ("1", "true")
        ]

    def watch_requests(self, plural: str) -> list[dict[str, str]]:
        return [
            q for path, q in self.requests if path.endswith("/" + plural) and q.get("watch") in ("1", "true")
        ]

    # -- writes: TokenReview and ConfigMap create/update --------------------------------------------------

    def _namespace_list(self) -> dict[str, Any]:
        names = self.namespaces | {namespace for _, namespace, _ in self._objects}
        items = [{"metadata": {"name": name}, "status": {"phase": "Active"}} for name in sorted(names)]
        return {
            "kind": "NamespaceList",
            "apiVersion": "v1",
            "metadata": {"resourceVersion": str(self._rv)},
            "items": items,
        }

    async def _handle_write(self, request: web.Request) -> web.StreamResponse:
        """POST tokenreviews (authentication.k8s.io/v1), POST/PUT configmaps: what pilot writes."""
        path = "/" + request.match_info["path"].rstrip("/")
        self.writes.append((request.method, path))
        if self.token is not None and request.headers.get("Authorization") != f"Bearer {self.token}":
            return self._error(401, "Unauthorized", "Unauthorized")
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError as err:
            return self._error(400, "BadRequest", f"body is not JSON: {err}")
        parts = [p for p in path.split("/") if p]
        if request.method == "POST" and parts == ["apis", "authentication.k8s.io", "v1", "tokenreviews"]:
            return self._json(self._review(body), 201)
        if parts[:3] == ["api", "v1", "namespaces"] and len(parts) in (5, 6) and parts[4] == "configmaps":
            namespace, name = parts[3], parts[5] if len(parts) == 6 else body.get("metadata", {}).get("name")
            if body.get("metadata", {}).get("name") != name or not name:
                return self._error(400, "BadRequest", "metadata.name must match the path")
            existing = self._objects.get(("ConfigMap", namespace, name))
            if request.method == "POST" and len(parts) == 5:
                if existing is not None:
                    return self._error(409, "AlreadyExists", f'configmaps "{name}" already exists')
            elif request.method == "PUT" and len(parts) == 6:
                if existing is None:
                    return self._error(404, "NotFound", f'configmaps "{name}" not found')
                wanted = body.get("metadata", {}).get("resourceVersion")
                if wanted and wanted != existing["metadata"]["resourceVersion"]:
                    return self._error(
                        409, "Conflict", "the object has been modified; apply your changes again"
                    )
            else:
                return self._error(405, "MethodNotAllowed", f"{request.method} {path}")
            body = {**body, "kind": "ConfigMap", "metadata": {**body["metadata"], "namespace": namespace}}
            stored = self.apply(body)
            return self._json(
                self._render(TYPES["ConfigMap"], "v1", stored, in_list=False),
                201 if existing is None else 200,
            )
        return self._error(404, "NotFound", "the server could not find the requested resource")

    def _review(self, body: dict[str, Any]) -> dict[str, Any]:
        """The TokenReview answer: the API server authenticates the token for the requested audiences."""
        spec = body.get("spec") or {}
        wanted = tuple(spec.get("audiences") or ())
        found = self.token_reviews.get(str(spec.get("token") or ""))
        result: dict[str, Any]
        if found is None:
            result = {"authenticated": False, "error": "[invalid bearer token, token lookup failed]"}
        elif wanted and not set(wanted) & set(found[1]):
            result = {"authenticated": False, "error": "[invalid bearer token, token audiences is invalid]"}
        else:
            user = {"username": found[0], "uid": str(uuid.uuid5(uuid.NAMESPACE_OID, found[0]))}
            result = {"authenticated": True, "user": user, "audiences": list(wanted or found[1])}
        return {**body, "kind": "TokenReview", "apiVersion": "authentication.k8s.io/v1", "status": result}

    # -- events -------------------------------------------------------------------------------------------

    def _emit(self, type_: ResourceType, event: str, obj: dict[str, Any]) -> None:
        snapshot = copy.deepcopy(obj)
        self._history.append(_Record(self._rv, type_, event, snapshot))
        for watcher in self._watchers:
            if watcher.matches(type_, snapshot):
                watcher.queue.put_nowait(("event", (event, snapshot)))

    def _render(
        self, type_: ResourceType, version: str, obj: dict[str, Any], in_list: bool
    ) -> dict[str, Any]:
        out = dict(obj)
        if type_.builtin and in_list:
            out.pop("kind", None)
            out.pop("apiVersion", None)
            return out
        out["kind"] = type_.kind
        out["apiVersion"] = f"{type_.group}/{version}" if type_.group else version
        return out

    # -- HTTP ---------------------------------------------------------------------------------------------

    def _json(self, body: dict[str, Any], code: int = 200) -> web.Response:
        return web.Response(body=orjson.dumps(body), status=code, content_type="application/json")

    def _error(self, code: int, reason: str, message: str) -> web.Response:
        return self._json(status(code, reason, message), code)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = "/" + request.match_info["path"].rstrip("/")
        query = dict(request.query)
        self.requests.append((path, query))
        if self.before_request is not None:
            self.before_request(path, query)
        if self.token is not None and request.headers.get("Authorization") != f"Bearer {self.token}":
            return self._error(401, "Unauthorized", "Unauthorized")
        parts = [p for p in path.split("/") if p]
        if parts == ["api", "v1", "namespaces"] and query.get("watch") not in ("1", "true"):
            return self._json(self._namespace_list())
        discovery = self._discovery(parts)
        if discovery is not None:
            return self._json(discovery)
        target = self._route(parts)
        if target is None:
            return self._error(404, "NotFound", "the server could not find the requested resource")
        type_, version, namespace, name = target
        failure = self._failures.get(type_.plural)
        if failure is not None:
            return self._error(failure[0], failure[1], f"injected failure for {type_.plural}")
        try:
            name_filter, namespace = self._selector(query.get("fieldSelector", ""), name, namespace)
        except ValueError as err:
            return self._error(400, "BadRequest", str(err))
        if query.get("watch") in ("1", "true"):
            return await self._watch(request, type_, version, namespace, name_filter, query)
        if name is not None:
            obj = self._objects.get((type_.kind, namespace or "", name))
            if obj is None:
                return self._error(404, "NotFound", f'{type_.plural} "{name}" not found')
            return self._json(self._render(type_, version, obj, in_list=False))
        return self._list(type_, version, namespace, name_filter, query)

    def _selector(self, text: str, name: str | None, namespace: str | None) -> tuple[str | None, str | None]:
        for term in filter(None, text.split(",")):
            key, _, value = term.replace("==", "=").partition("=")
            if key == "metadata.name":
                name = value
            elif key == "metadata.namespace":
                namespace = value
            else:
                raise ValueError(f'field label not supported: "{key}"')
        return name, namespace

    def _route(self, parts: list[str]) -> tuple[ResourceType, str, str | None, str | None] | None:
        """(type, version, namespace, name) of a collection or object path."""
        if parts[:2] == ["api", "v1"]:
            group, version, rest = "", "v1", parts[2:]
        elif len(parts) >= 3 and parts[0] == "apis":
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            return None
        namespace = None
        if len(rest) >= 2 and rest[0] == "namespaces":
            namespace, rest = rest[1], rest[2:]
        if not 1 <= len(rest) <= 2:
            return None
        for type_ in TYPES.values():
            if type_.group == group and type_.plural == rest[0] and self._served(type_, version):
                return type_, version, namespace, rest[1] if len(rest) == 2 else None
        return None

    def _served(self, type_: ResourceType, version: str) -> bool:
        if type_.group == ISTIO_GROUP:
            return type_.kind in self.istio_kinds and version in self.istio_versions
        if type_.group == SECURITY_GROUP:
            return type_.kind in self.security_kinds and version in SECURITY_VERSIONS
        return version == type_.version

    def _discovery(self, parts: list[str]) -> dict[str, Any] | None:
        if parts == ["api"]:
            where = [{"clientCIDR": "0.0.0.0/0", "serverAddress": f"{LOOPBACK}:{self.port}"}]
            return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": where}
        if parts == ["api", "v1"]:
            return self._resource_list("", "v1")
        if parts == ["apis"]:
            groups = [self._group(name) for name in ("discovery.k8s.io", ISTIO_GROUP, SECURITY_GROUP)]
            return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [g for g in groups if g]}
        if len(parts) == 2 and parts[0] == "apis":
            return self._group(parts[1])
        if len(parts) == 3 and parts[0] == "apis" and self._group(parts[1]) is not None:
            versions = {ISTIO_GROUP: self.istio_versions, SECURITY_GROUP: SECURITY_VERSIONS}.get(
                parts[1], ("v1",)
            )
            return self._resource_list(parts[1], parts[2]) if parts[2] in versions else None
        return None

    def _group(self, name: str) -> dict[str, Any] | None:
        if name == ISTIO_GROUP:
            versions = list(self.istio_versions) if self.istio_kinds else []
        elif name == SECURITY_GROUP:
            versions = list(SECURITY_VERSIONS) if self.security_kinds else []
        elif name == "discovery.k8s.io":
            versions = ["v1"]
        else:
            return None
        if not versions:
            return None
        entries = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
        return {
            "kind": "APIGroup",
            "apiVersion": "v1",
            "name": name,
            "versions": entries,
            "preferredVersion": entries[0],
        }

    def _resource_list(self, group: str, version: str) -> dict[str, Any]:
        verbs = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
        resources = [
            {
                "name": t.plural,
                "singularName": t.singular,
                "namespaced": True,
                "kind": t.kind,
                "verbs": verbs,
            }
            for t in TYPES.values()
            if t.group == group and self._served(t, version)
        ]
        if group == "":
            resources += [
                {
                    "name": n,
                    "singularName": n[:-1],
                    "namespaced": n != "nodes",
                    "kind": n.title(),
                    "verbs": verbs,
                }
                for n in _EXTRA_CORE
            ]
        if group in (ISTIO_GROUP, SECURITY_GROUP):  # CRDs with a status subresource list it too
            resources += [
                {**r, "name": f"{r['name']}/status", "verbs": ["get", "patch", "update"]} for r in resources
            ]
        gv = f"{group}/{version}" if group else version
        return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}

    def _matching(self, type_: ResourceType, namespace: str | None, name: str | None) -> list[dict[str, Any]]:
        return [
            obj
            for (kind, ns, obj_name), obj in sorted(self._objects.items())
            if kind == type_.kind
            and (namespace is None or ns == namespace)
            and (name is None or obj_name == name)
        ]

    def _list(
        self,
        type_: ResourceType,
        version: str,
        namespace: str | None,
        name: str | None,
        query: dict[str, str],
    ) -> web.Response:
        token = query.get("continue")
        if token:
            items = self._continues.pop(token, None)
            if items is None:
                message = "The provided continue parameter is too old to display a consistent list result."
                return self._error(410, "Expired", message)
            rv = int(token.split("-")[0])
        else:
            items = [copy.deepcopy(o) for o in self._matching(type_, namespace, name)]
            rv = self._rv
        limit = int(query.get("limit") or 0)
        metadata: dict[str, Any] = {"resourceVersion": str(rv)}
        if limit and len(items) > limit:
            items, rest = items[:limit], items[limit:]
            next_token = f"{rv}-{next(self._tokens)}"
            self._continues[next_token] = rest
            metadata["continue"] = next_token
            metadata["remainingItemCount"] = len(rest)
        gv = f"{type_.group}/{version}" if type_.group else version
        return self._json(
            {
                "kind": f"{type_.kind}List",
                "apiVersion": gv,
                "metadata": metadata,
                "items": [self._render(type_, version, o, in_list=True) for o in items],
            }
        )

    async def _watch(
        self,
        request: web.Request,
        type_: ResourceType,
        version: str,
        namespace: str | None,
        name: str | None,
        query: dict[str, str],
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        watcher = _Watcher(
            type_, version, namespace, name, query.get("allowWatchBookmarks") == "true", request
        )
        raw_rv = query.get("resourceVersion", "")
        backlog: list[tuple[str, Any]] = []
        gone = None
        if raw_rv in ("", "0"):
            backlog = [("event", ("ADDED", copy.deepcopy(o))) for o in self._matching(type_, namespace, name)]
        elif int(raw_rv) < self._oldest:
            gone = status(410, "Expired", f"too old resource version: {raw_rv} ({self._oldest})")
        else:
            since = int(raw_rv)
            backlog = [
                ("event", (r.event, r.obj))
                for r in self._history
                if r.rv > since and watcher.matches(r.type, r.obj)
            ]
        # Registered in the same step as the backlog was read: no change falls in between.
        if gone is None:
            self._watchers.append(watcher)
        try:
            await response.prepare(request)
            if gone is not None:
                await response.write(orjson.dumps({"type": "ERROR", "object": gone}) + b"\n")
                await response.write_eof()
                return response
            for item in backlog:
                watcher.queue.put_nowait(item)
            timeout = float(query.get("timeoutSeconds") or 1800)
            if await self._stream(watcher, response, timeout):
                await response.write_eof()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            if watcher in self._watchers:
                self._watchers.remove(watcher)
        return response

    async def _stream(self, watcher: _Watcher, response: web.StreamResponse, timeout: float) -> bool:
        """Write events until the watch ends: True to end it cleanly, False when the connection is cut."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        next_bookmark = loop.time() + (self.bookmark_interval or timeout)
        while True:
            now = loop.time()
            if now >= deadline:
                return True
            if watcher.bookmarks and self.bookmark_interval and now >= next_bookmark:
                watcher.queue.put_nowait(("bookmark", None))
                next_bookmark = now + self.bookmark_interval
            transport = watcher.request.transport
            if transport is None or transport.is_closing():
                return False  # the client went away
            if watcher.queue.empty():
                wait = min(deadline, next_bookmark) - now
                try:
                    what, payload = await asyncio.wait_for(watcher.queue.get(), min(wait, 0.5))
                except TimeoutError:
                    continue  # look at the deadline, bookmarks and the connection again
            else:
                what, payload = watcher.queue.get_nowait()  # a burst goes out without yielding per event
            if what == "end":
                return True
            if what == "drop":
                if transport is not None:
                    transport.abort()  # no terminating chunk: the client sees a cut stream
                return False
            if what == "bookmark":
                meta = {"resourceVersion": str(self._rv)}
                gv = f"{watcher.type.group}/{watcher.version}" if watcher.type.group else watcher.version
                line = {
                    "type": "BOOKMARK",
                    "object": {"kind": watcher.type.kind, "apiVersion": gv, "metadata": meta},
                }
            else:
                event, obj = payload
                line = {
                    "type": event,
                    "object": self._render(watcher.type, watcher.version, obj, in_list=False),
                }
            await response.write(orjson.dumps(line) + b"\n")


class KubeApiThread:
    """A FakeKubeApi served from a daemon thread running its own event loop, for synchronous tests::

        with KubeApiThread(FakeKubeApi(token="t")) as kube:
            kube.call(kube.api.apply, service("reviews"))
            kube.call(kube.api.drop_watches)
            kube.call(kube.api.restart)  # coroutine functions are awaited on the loop

    ``api.url``/``api.port`` may be read from any thread once started; anything else goes through ``call``.
    """

    def __init__(self, api: FakeKubeApi | None = None, *, timeout: float = 10.0) -> None:
        self.api = api or FakeKubeApi()
        self.timeout = timeout
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fake-kube-api", daemon=True)

    def start(self) -> KubeApiThread:
        self._thread.start()
        self.call(self.api.start)
        return self

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)`` run on the fake's loop (awaited if it returns an awaitable); its result."""

        async def run() -> Any:
            result = fn(*args, **kwargs)
            return await result if inspect.isawaitable(result) else result

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(self.timeout)

    def stop(self) -> None:
        """Stop serving, end the loop and its thread. Safe to call twice."""
        if not self._thread.is_alive():
            if not self._loop.is_closed():
                self._loop.close()
            return
        try:
            self.call(self.api.stop)
            self.call(self._cancel_tasks)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(self.timeout)
            if not self._thread.is_alive():
                self._loop.close()

    async def _cancel_tasks(self) -> None:
        current = asyncio.current_task()
        tasks = [task for task in asyncio.all_tasks() if task is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def __enter__(self) -> KubeApiThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def write_kubeconfig(path: Path, server: str, token: str | None = None) -> Path:
    """A kubeconfig whose current context is ``server``, with a bearer ``token`` if given."""
    user = f"{{token: {token}}}" if token is not None else "{}"
    path.write_text(
        "apiVersion: v1\nkind: Config\n"
        f"clusters: [{{name: fake, cluster: {{server: '{server}'}}}}]\n"
        f"users: [{{name: u, user: {user}}}]\n"
        "contexts: [{name: fake, context: {cluster: fake, user: u}}]\ncurrent-context: fake\n"
    )
    return path


# -- objects as a test writes them ------------------------------------------------------------------------


def service(
    name: str,
    namespace: str = "default",
    *,
    ports: Iterable[dict[str, Any]] = ({"name": "http", "port": 9080, "targetPort": 9080},),
    cluster_ip: str = "10.96.0.10",
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    type_: str = "ClusterIP",
    external_name: str | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "type": type_,
        "ports": [{"protocol": "TCP", **p} for p in ports],
        "selector": {"app": name},
    }
    if type_ != "ExternalName":
        spec["clusterIP"] = cluster_ip
        spec["clusterIPs"] = [cluster_ip]
    else:
        spec["externalName"] = external_name
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "labels": labels or {"app": name}}
    if annotations:
        meta["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": spec}


def pod(name: str, namespace: str = "default", *, ip: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {"containers": [{"name": "app", "image": "app:1"}]},
        "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]},
    }


def endpoint_slice(
    name: str,
    service_name: str,
    namespace: str = "default",
    *,
    endpoints: Iterable[tuple[str, str | None, bool | None]],
    ports: Iterable[tuple[str, int]] = (("http", 9080),),
) -> dict[str, Any]:
    """``endpoints``: (address, pod name or None, ready: True/False/None=unset)."""
    items = []
    for address, pod_name, ready in endpoints:
        item: dict[str, Any] = {"addresses": [address], "conditions": {}}
        if ready is not None:
            item["conditions"] = {"ready": ready, "serving": ready, "terminating": False}
        if pod_name is not None:
            item["targetRef"] = {
                "kind": "Pod",
                "namespace": namespace,
                "name": pod_name,
                "uid": "u-" + pod_name,
            }
        items.append(item)
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {
                "kubernetes.io/service-name": service_name,
                "endpointslice.kubernetes.io/managed-by": "x",
            },
        },
        "addressType": "IPv4",
        "endpoints": items,
        "ports": [{"name": n, "port": p, "protocol": "TCP"} for n, p in ports],
    }


def virtual_service(
    name: str,
    namespace: str = "default",
    *,
    host: str = "reviews",
    subset: str = "v1",
    weight: int | None = None,
    version: str = "v1",
) -> dict[str, Any]:
    destination: dict[str, Any] = {"destination": {"host": host, "subset": subset}}
    if weight is not None:
        destination["weight"] = weight
    return {
        "apiVersion": f"{ISTIO_GROUP}/{version}",
        "kind": "VirtualService",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"hosts": [host], "http": [{"route": [destination]}]},
    }


def mesh_config_map(namespace: str, mesh: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "istio", "namespace": namespace},
        "data": {"mesh": mesh},
    }


__all__ = [
    "ISTIO_KINDS",
    "ISTIO_VERSIONS",
    "TYPES",
    "FakeKubeApi",
    "KubeApiThread",
    "endpoint_slice",
    "mesh_config_map",
    "pod",
    "service",
    "status",
    "virtual_service",
    "write_kubeconfig",
]
