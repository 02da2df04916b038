"""The operator HTTP endpoints (Istio's monitoring port 15014): readiness, metrics, debug views.

    GET /ready                        200 once config is loaded and pushed and xDS serves, else 503
    GET /metrics                      Prometheus text (pilot.metrics.REGISTRY)
    GET /debug/syncz                  per connected proxy: sent/acked per type, like istiod's
    GET /debug/config_dump?proxyID=   what that proxy is sent, in Envoy admin config_dump shape
    GET /debug/configz                every config object held, every config error, and every object a
                                      proxy rejected (held back for its view)
    GET /debug/push_status            the last push (when the app provides it)
    GET /debug/convergence?revision=  which proxies ACKed store revision R (default: the newest) or a
                                      later one, and why each other one has not (pilot.debug.convergence)
    GET /debug/sourcez                each config source: kind, synced, and its own status (Kubernetes
                                      watches: listed, resourceVersion, watch and error counts, last error)
    GET /debug/proxyz?proxyID=        that proxy's view, and per resource pilot's version and the proxy's

Read-only: handlers never change the store, cache or server. ``/ready`` and ``/metrics`` answer
anyone; ``/debug/*`` reveals config and answers, as istiod's ``allowAuthenticatedOrLocalhost``
(pilot/pkg/xds/debug.go), only a loopback peer or a caller with a valid bearer token
(``Authorization: Bearer <token>``, the secure port's contract, docs/security.md) of pilot's own
namespace: a workload's token must not read other namespaces' config here (istiod leaves that check
as a TODO). The peer is the TCP peer; forwarded-for headers are not believed.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from pilot import metrics
from pilot.cache.cache import SnapshotCache
from pilot.config.store import ConfigStore
from pilot.debug import convergence as converged
from pilot.debug import rejections as held
from pilot.debug import untranslated, views
from pilot.errors import AuthenticationError
from pilot.server.authentication import CallerAuthenticator

log = logging.getLogger("pilot.debug")

ReadyCheck = Callable[[], bool]
StatusProvider = Callable[[], Any]

_STORE: web.AppKey[ConfigStore] = web.AppKey("store", ConfigStore)
_CACHE: web.AppKey[SnapshotCache] = web.AppKey("cache", SnapshotCache)
_SERVER: web.AppKey[views.ConnectionRegistry] = web.AppKey("server")
_READY: web.AppKey[ReadyCheck] = web.AppKey("ready")
_PUSH_STATUS: web.AppKey[StatusProvider | None] = web.AppKey("push_status")
_SOURCES: web.AppKey[Sequence[views.SourceState]] = web.AppKey("sources")
_VIEW_REVISIONS: web.AppKey[Callable[[], Mapping[str, int]]] = web.AppKey("view_revisions")
_REJECTIONS: web.AppKey[Callable[[], Sequence[held.ObjectRejection]]] = web.AppKey("rejections")

ENDPOINTS = (
    "/ready",
    "/metrics",
    "/debug/syncz",
    "/debug/config_dump?proxyID=",
    "/debug/proxyz?proxyID=",
    "/debug/configz",
    "/debug/push_status",
    "/debug/convergence?revision=",
    "/debug/sourcez",
)


def json_response(data: Any, status: int = 200) -> web.Response:
    body = orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS)
    return web.Response(body=body, status=status, content_type="application/json")


def error_response(status: int, message: str) -> web.Response:
    return json_response({"error": message}, status=status)


async def ready(request: web.Request) -> web.Response:
    if request.app[_READY]():
        return web.Response(text="ready\n")
    return web.Response(text="not ready\n", status=503)


async def prometheus(request: web.Request) -> web.Response:
    views.refresh_config_gauges(request.app[_STORE])
    body = generate_latest(metrics.REGISTRY)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def located_rejections(request: web.Request) -> list[views.Json]:
    """The held objects with their lines, read from their files off the loop."""
    rejections = request.app[_REJECTIONS]()
    if not rejections:
        return []
    paths = [getattr(source, "path", None) for source in request.app[_SOURCES]]
    folders = [Path(str(path)) for path in paths if path is not None]
    return await asyncio.to_thread(held.located, rejections, folders)


async def syncz(request: web.Request) -> web.Response:
    rejections = await located_rejections(request)
    return json_response(views.syncz(request.app[_SERVER].connections(), rejections))


async def config_dump(request: web.Request) -> web.Response:
    proxy_id = request.query.get("proxyID", "")
    if not proxy_id:
        return error_response(400, "give the proxy: /debug/config_dump?proxyID=<node id>")
    found = views.find_connection(request.app[_SERVER], proxy_id)
    if found is None:
        return error_response(404, f"proxy {proxy_id!r} is not connected")
    node_id, view = found
    snapshot = request.app[_CACHE].get_snapshot(view)
    if snapshot is None:
        return error_response(404, f"proxy {node_id!r} has no config yet")
    # Rendering a large snapshot is CPU work: keep the event loop (and xDS) responsive. The
    # snapshot is immutable, so another thread may read it.
    dump = await asyncio.to_thread(views.config_dump, snapshot)
    return json_response({"proxy": node_id, "view": str(view), "version": snapshot.version, **dump})


async def proxyz(request: web.Request) -> web.Response:
    proxy_id = request.query.get("proxyID", "")
    if not proxy_id:
        return error_response(400, "give the proxy: /debug/proxyz?proxyID=<node id>")
    registry = request.app[_SERVER]
    found = views.find_connection(registry, proxy_id)
    if found is None:
        return error_response(404, f"proxy {proxy_id!r} is not connected")
    node_id, view = found
    held = registry.held_resources(node_id) if isinstance(registry, views.HeldResources) else None
    snapshot = request.app[_CACHE].get_snapshot(view)
    row = views.proxyz(node_id, view, snapshot, held or {})
    return json_response({**row, "untranslated": untranslated.of_snapshot(snapshot)})


async def configz(request: web.Request) -> web.Response:
    store = request.app[_STORE]
    rejections = await located_rejections(request)
    problems = untranslated.in_cache(request.app[_CACHE])
    return json_response(views.configz(store.snapshot(), store.errors(), rejections, problems))


async def push_status(request: web.Request) -> web.Response:
    provider = request.app[_PUSH_STATUS]
    if provider is None:
        return error_response(404, "push status is not available")
    return json_response(provider())


async def convergence(request: web.Request) -> web.Response:
    store_revision = request.app[_STORE].snapshot().revision
    given = request.query.get("revision", "")
    try:
        revision = int(given) if given else store_revision
    except ValueError:
        return error_response(400, f"revision must be a store revision (an integer), not {given!r}")
    registry = request.app[_SERVER]
    if not isinstance(registry, views.HeldResources):
        return error_response(404, "this server does not report what proxies hold")
    cache = request.app[_CACHE]
    proxy_state = converged.state_reader(registry.held_resources, registry.find_view, cache.get_snapshot)
    answer = converged.convergence(
        revision,
        store_revision,
        registry.connections(),
        request.app[_VIEW_REVISIONS](),
        await located_rejections(request),
        proxy_state,
    )
    return json_response(answer)


async def sourcez(request: web.Request) -> web.Response:
    return json_response(views.sourcez(request.app[_SOURCES]))


async def index(request: web.Request) -> web.Response:
    return json_response({"endpoints": list(ENDPOINTS)})


def is_loopback(request: web.Request) -> bool:
    """Whether the TCP peer is a loopback address (127.0.0.0/8, ::1, ::ffff:127.x); a Unix
    socket or an unknown peer is not."""
    peer = request.transport.get_extra_info("peername") if request.transport is not None else None
    if not isinstance(peer, tuple) or not peer:
        return False
    try:
        address = ipaddress.ip_address(str(peer[0]).partition("%")[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def debug_guard(authenticator: CallerAuthenticator | None, system_namespace: str) -> Any:
    """Middleware: /debug/* only for loopback peers or a token of ``system_namespace``."""

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith("/debug") or is_loopback(request):
            return await handler(request)
        if authenticator is None or "Authorization" not in request.headers:
            return error_response(
                403, "debug endpoints answer loopback clients, or a bearer token of pilot's namespace"
            )
        try:
            caller = await authenticator.authenticate_metadata(list(request.headers.items()))
        except AuthenticationError as err:
            log.info("debug: %s from %s refused: %s", request.path, request.remote, err)
            return error_response(401, "authentication failed")
        except Exception:  # fail-closed: an authenticator that breaks lets nobody in
            log.exception("debug: authenticating %s from %s failed", request.path, request.remote)
            return error_response(401, "authentication failed")
        if caller.namespace != system_namespace:
            log.info(
                "debug: %s from %s refused: %s/%s is not of namespace %s",
                request.path,
                request.remote,
                caller.namespace,
                caller.name,
                system_namespace,
            )
            return error_response(403, f"debug endpoints answer only tokens of namespace {system_namespace}")
        return await handler(request)

    return guard


def build_app(
    *,
    store: ConfigStore,
    cache: SnapshotCache,
    server: views.ConnectionRegistry,
    ready_check: ReadyCheck,
    push_status_provider: StatusProvider | None = None,
    sources: Sequence[views.SourceState] = (),
    authenticator: CallerAuthenticator | None = None,
    system_namespace: str = "",
    rejections: Callable[[], Sequence[held.ObjectRejection]] = tuple,
    view_revisions: Callable[[], Mapping[str, int]] = dict,
) -> web.Application:
    """The aiohttp application; ``ready_check`` decides /ready (the app knows what "ready" means);
    ``sources`` are read (never run or changed) by /debug/sourcez. /debug/* answers loopback peers,
    and with ``authenticator`` callers whose bearer token is of ``system_namespace``."""
    app = web.Application(middlewares=[debug_guard(authenticator, system_namespace)])
    app[_STORE] = store
    app[_CACHE] = cache
    app[_SERVER] = server
    app[_READY] = ready_check
    app[_PUSH_STATUS] = push_status_provider
    app[_SOURCES] = tuple(sources)
    app[_REJECTIONS] = rejections
    app[_VIEW_REVISIONS] = view_revisions
    app.router.add_get("/ready", ready)
    app.router.add_get("/metrics", prometheus)
    app.router.add_get("/debug", index)
    app.router.add_get("/debug/syncz", syncz)
    app.router.add_get("/debug/config_dump", config_dump)
    app.router.add_get("/debug/proxyz", proxyz)
    app.router.add_get("/debug/configz", configz)
    app.router.add_get("/debug/push_status", push_status)
    app.router.add_get("/debug/convergence", convergence)
    app.router.add_get("/debug/sourcez", sourcez)
    return app


class HttpServer:
    """Runs an application on ``host:port`` (0: any free port); ``port`` is the bound one.

    A client must send a whole request within ``request_timeout`` of connecting or of its previous
    response, or its connection is closed (aiohttp's keep-alive timer closes a connection that is
    waiting for a request, complete or not); a request body the handler leaves unread is drained for
    at most as long (aiohttp's lingering close). At most ``max_connections`` are open at once: a
    connection past the cap is answered 503 and closed, so half-sent requests cannot hold every
    socket and file descriptor of the process.
    """

    def __init__(
        self,
        app: web.Application,
        host: str,
        port: int,
        *,
        request_timeout: float = 10.0,
        max_connections: int = 256,
    ) -> None:
        self._runner = web.AppRunner(
            app,
            access_log=None,
            handle_signals=False,
            keepalive_timeout=request_timeout,
            lingering_time=request_timeout,
        )
        self._host = host
        self._port = port
        self._max_connections = max_connections
        self._listener: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> int:
        await self._runner.setup()
        server = self._runner.server
        assert server is not None  # set by setup()

        def connection() -> asyncio.BaseProtocol:
            if len(server.connections) >= self._max_connections:
                return _Refused()
            return server()

        loop = asyncio.get_running_loop()
        self._listener = await loop.create_server(connection, self._host, self._port, reuse_port=False)
        self.port = int(self._listener.sockets[0].getsockname()[1])
        return self.port

    async def stop(self) -> None:
        if self._listener is not None:
            self._listener.close()
        await self._runner.cleanup()  # closes the open connections
        if self._listener is not None:
            await self._listener.wait_closed()
            self._listener = None


class _Refused(asyncio.Protocol):
    """A connection past the cap: told so, and closed."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        transport.close()
