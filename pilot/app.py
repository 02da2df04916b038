"""The composition root: build every part from Settings, wire them, run them, stop them cleanly.

    FolderSource ──apply──▶ ConfigStore ──events──▶ Pusher ──set_snapshot──▶ SnapshotCache
                                                      ▲                            │ watch
                                  on_stream_open/closed│                            ▼
                                                   AdsServer (grpc.aio) ◀──── Envoy proxies
    debug HTTP (/ready, /metrics, /debug/*) reads the store, the cache and the server.
    JwksResolver follows the store's RequestAuthentications and applies the keys they name into it.

Start-up order, so that no proxy is ever served an empty or partial config: bind both ports; serve
HTTP (``/ready`` says 503 meanwhile); load every source; fetch the JWKS the policies name; build the
first PushContext; then start the gRPC server and say ready. Like istiod, which waits for its caches
to sync before serving xDS.

Everything runs in one ``asyncio.TaskGroup``; a stop (the ``stop`` event, SIGTERM or SIGINT) closes
the streams with a grace period (``grpc.aio.Server.stop(grace)``, idempotent), then cancels the
tasks and closes HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import functools
import gc
import logging
import multiprocessing
import signal
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import grpc

from pilot.ca.authority import CaSettings, CertificateAuthority, load_or_create
from pilot.ca.bearer import BearerAuthenticator
from pilot.ca.csr_service import CertificateService
from pilot.ca.kube_token_review import TokenReviewAuthenticator
from pilot.ca.server_credentials import ISTIOD_HOST, istiod_server_credentials
from pilot.ca.tokens import FolderTokenAuthenticator, TokenAuthenticator
from pilot.cache.cache import SnapshotCache
from pilot.config.limits import ParseLimits
from pilot.config.objects import ConfigKey
from pilot.config.store import ConfigStore
from pilot.debug.http import HttpServer, build_app
from pilot.errors import ConfigError, LifecycleError
from pilot.push.pusher import Pusher
from pilot.server.ads import AdsServer
from pilot.server.limits import StreamLimits
from pilot.settings import Settings
from pilot.sources.base import ConfigSource
from pilot.sources.files import FolderSource
from pilot.sources.jwks import JwksResolver
from pilot.sources.kube import KubeSource, load_api_client
from pilot.sources.kube_reflector import WatchOptions
from pilot.sources.kube_root_cert import RootCertPublisher
from pilot.sources.kube_status import StatusOptions
from pilot.sources.kube_webhook import AdmissionWebhook
from pilot.sources.kube_writes import review_token
from pilot.status.desired import ObjectStatuses
from pilot.status.distribution import proxy_progress

log = logging.getLogger("pilot.app")

MiB = 1024 * 1024

# gRPC server options for thousands of long-lived ADS streams (grpc core channel-argument names).
GRPC_OPTIONS: tuple[tuple[str, Any], ...] = (
    # Ping idle connections so dead proxies (and dead NAT entries) are found and their streams end
    # (Istio's GRPC_KEEPALIVE_INTERVAL / _TIMEOUT: 30 s / 10 s), with or without a call in flight,
    # and keep pinging a connection that carries no data for hours (0: no limit on such pings).
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    # Accept the proxies' own keepalive pings (Envoy's connection_keepalive, 30 s in our bootstrap)
    # down to one every 10 s with no data flowing, and never answer too-frequent pings with GOAWAY
    # "too_many_pings" (0 strikes: unlimited), which would drop every stream on the connection.
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ("grpc.http2.max_ping_strikes", 0),
    # Requests are small; Envoy truncates a NACK's error_detail (ISTIO_GPRC_MAXRECVMSGSIZE: 4 MiB).
    ("grpc.max_receive_message_length", 4 * MiB),
    # A full-state CDS or LDS response of a large mesh can exceed 4 MiB; Envoy accepts big messages.
    ("grpc.max_send_message_length", 256 * MiB),
    # One stream per proxy, usually one proxy per connection, but a shared connection (a
    # multiplexing proxy, a test client) must not be capped at the default 100
    # (ISTIO_GPRC_MAXSTREAMS: 100000).
    ("grpc.max_concurrent_streams", 100_000),
    # Never share the port with another process: a second pilot must fail to bind, loudly.
    ("grpc.so_reuseport", 0),
)
# After max_connection_age (Settings) the server sends GOAWAY; streams then get this long (at most
# the age itself) before the connection closes and they end with UNAVAILABLE (Istio's
# keepaliveMaxServerConnectionAgeGrace: 10 s). ADS streams never finish by themselves, so the
# grace only delays the reconnect.
MAX_CONNECTION_AGE_GRACE = 10.0


def parse_limits(settings: Settings) -> ParseLimits:
    return ParseLimits(
        file_bytes=settings.max_file_bytes,
        objects_per_file=settings.max_objects_per_file,
        hosts_per_object=settings.max_hosts_per_object,
        routes_per_object=settings.max_routes_per_object,
        depth=settings.max_yaml_depth,
    )


def parser_pool() -> Executor:
    """Where config files are read, parsed and validated: a worker process, not a thread (the folder
    source makes two: one for large files, one for the rest). Parsing is
    pure-Python and libyaml work that holds the GIL; from a thread, a 100k-item file stalled /ready
    for up to 970 ms, from a process for at most 55 ms. ``spawn``, not ``fork``: the parent runs
    gRPC's threads. The workers ignore SIGINT; pilot stops them when the source stops."""
    return ProcessPoolExecutor(
        max_workers=1,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=signal.signal,
        initargs=(signal.SIGINT, signal.SIG_IGN),
    )


def grpc_options(settings: Settings) -> tuple[tuple[str, Any], ...]:
    """GRPC_OPTIONS, plus the max connection age that spreads proxies over replicas (Istio's
    keepaliveMaxServerConnectionAge): the server sends GOAWAY, the proxy reconnects through the Service."""
    if settings.max_connection_age is None:
        return GRPC_OPTIONS
    grace = min(MAX_CONNECTION_AGE_GRACE, settings.max_connection_age)
    return (
        *GRPC_OPTIONS,
        ("grpc.max_connection_age_ms", int(settings.max_connection_age * 1000)),
        ("grpc.max_connection_age_grace_ms", int(grace * 1000)),
    )


@dataclass
class RunningPilot:
    """A started pilot: its parts (to read, or to feed in tests) and the ports actually bound."""

    settings: Settings
    store: ConfigStore
    cache: SnapshotCache
    pusher: Pusher
    ads: AdsServer
    sources: list[ConfigSource]
    webhook: AdmissionWebhook | None = None
    # Fetches the JWKS of RequestAuthentication rules into the store (pilot.sources.jwks).
    jwks: JwksResolver | None = None
    xds_port: int = 0  # 0: not served
    xds_tls_port: int = 0  # 0: not served
    authority: CertificateAuthority | None = None  # the mesh CA, with --ca-dir
    root_cert_publisher: RootCertPublisher | None = None  # with --ca-dir and --kube
    http_port: int = 0
    webhook_port: int = 0
    serving: bool = False  # the gRPC server is started
    stop_event: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def ready(self) -> bool:
        """/ready: every source synced, the first PushContext built, xDS serving."""
        return (
            self.serving
            and self.pusher.context is not None
            and all(source.synced.is_set() for source in self.sources)
        )

    def stop(self) -> None:
        """Ask ``run`` to stop (idempotent)."""
        self.stop_event.set()

    def push_status(self) -> dict[str, Any]:
        last = self.pusher.last_push
        return {
            "push_count": self.pusher.push_count,
            "store_revision": self.store.revision,
            "context_version": self.pusher.context.version if self.pusher.context is not None else None,
            "views": {str(view): streams for view, streams in self.pusher.views().items()},
            "last_push": None
            if last is None
            else {
                "number": last.number,
                "version": last.version,
                "revision": last.revision,
                "views": last.views,
                "failed_views": last.failed_views,
                "duration": last.duration,
                "finished_at": last.finished_at,
                "reasons": dict(last.reasons),
            },
        }


def object_statuses(
    store: ConfigStore, cache: SnapshotCache, pusher: Pusher, ads: AdsServer
) -> Callable[[], Callable[[], Mapping[ConfigKey, dict[str, Any]]]]:
    """What the Kubernetes status writer writes: every object's wanted status (pilot.status.desired)
    from the store, the held objects and what each proxy has ACKed. The loop's state is read on the
    loop (frozen values); the statuses are computed in the writer's thread."""
    statuses = ObjectStatuses()

    def gather() -> Callable[[], Mapping[ConfigKey, dict[str, Any]]]:
        snapshot, errors, rejections = store.snapshot(), store.errors(), pusher.rejections()
        proxies = proxy_progress(ads.connections(), pusher.stream_views(), cache.get_snapshot, ads.backlog)
        return lambda: statuses.compute(snapshot, errors, rejections, proxies)

    return gather


def build(settings: Settings, stop: asyncio.Event | None = None) -> RunningPilot:
    """Every part, wired, nothing started."""
    store = ConfigStore()
    cache = SnapshotCache()
    sources: list[ConfigSource] = []
    if settings.config_dir is not None:
        limits = parse_limits(settings)
        sources.append(
            FolderSource(
                settings.config_dir,
                store,
                limits=limits,
                executor=parser_pool,
                cluster_domain=settings.cluster_domain,
            )
        )
    pusher = Pusher(store, cache, debounce_after=settings.debounce_after, debounce_max=settings.debounce_max)
    stream_limits = StreamLimits(
        streams_per_second=settings.max_requests_per_second,
        requests_per_second=settings.max_stream_requests_per_second,
        request_burst=settings.stream_request_burst,
        nack_log_interval=settings.nack_log_interval,
    )
    ads = AdsServer(
        cache,
        pusher,
        push_concurrency=settings.push_concurrency,
        send_timeout=settings.send_timeout,
        limits=stream_limits,
    )
    pusher.move_stream = ads.move_stream  # a proxy's view can change with the config
    if settings.kube:
        namespaces = list(settings.watch_namespaces) if settings.watch_namespaces is not None else None
        interval = settings.status_write_interval
        sources.append(
            KubeSource(
                store,
                namespaces=namespaces,
                pilot_namespace=settings.pilot_namespace,
                kubeconfig=settings.kubeconfig,
                cluster_domain=settings.cluster_domain,
                status=None if interval is None else object_statuses(store, cache, pusher, ads),
                status_options=None if interval is None else StatusOptions(min_interval=interval),
            )
        )
    webhook = None
    if settings.webhook_port is not None:
        assert settings.webhook_cert is not None and settings.webhook_key is not None  # Settings checks it
        webhook = AdmissionWebhook(
            settings.webhook_cert,
            settings.webhook_key,
            host=settings.webhook_host,
            port=settings.webhook_port,
        )
    return RunningPilot(
        settings,
        store,
        cache,
        pusher,
        ads,
        sources,
        webhook=webhook,
        jwks=JwksResolver(store),
        stop_event=stop or asyncio.Event(),
    )


async def run(
    settings: Settings,
    *,
    stop: asyncio.Event | None = None,
    handle_signals: bool = True,
    on_ready: Callable[[RunningPilot], None] | None = None,
) -> None:
    """Run pilot until ``stop`` is set (or SIGTERM/SIGINT when ``handle_signals``).

    Raises ConfigError when it cannot start (a port in use, a missing config folder); the error
    of a part that fails later is raised as itself, not wrapped in an ExceptionGroup.
    """
    pilot = build(settings, stop)
    try:
        await _run(pilot, handle_signals=handle_signals, on_ready=on_ready)
    except BaseExceptionGroup as group:
        # One failing part is the common case: raise its own error so the CLI can report it.
        leaves = _leaves(group)
        if len(leaves) == 1 and isinstance(leaves[0], Exception):
            raise leaves[0] from None
        raise


async def _run(
    pilot: RunningPilot, *, handle_signals: bool, on_ready: Callable[[RunningPilot], None] | None
) -> None:
    settings = pilot.settings
    stop = pilot.stop_event
    mesh_ca = await _start_mesh_ca(pilot)
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    if handle_signals:
        for signum in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(signum, _on_signal, signum, stop)
                installed.append(signum)

    servers: list[grpc.aio.Server] = []
    http = HttpServer(
        build_app(
            store=pilot.store,
            cache=pilot.cache,
            server=pilot.ads,
            ready_check=lambda: pilot.ready,
            push_status_provider=pilot.push_status,
            sources=pilot.sources,
            authenticator=mesh_ca.callers if mesh_ca is not None else None,
            system_namespace=settings.pilot_namespace,
            rejections=pilot.pusher.rejections,
            view_revisions=pilot.pusher.view_revisions,
        ),
        settings.http_host,
        settings.http_port,
        request_timeout=settings.http_request_timeout,
        max_connections=settings.http_max_connections,
    )
    try:
        if settings.xds_port is not None:
            plain = grpc.aio.server(options=grpc_options(settings))
            servers.append(plain)
            pilot.ads.add_to(plain)
            pilot.xds_port = _bind_xds(plain, settings.xds_host, settings.xds_port)
        if mesh_ca is not None and settings.xds_tls_port is not None:
            secure = grpc.aio.server(options=grpc_options(settings))
            servers.append(secure)
            # The secure port: ADS for token holders, pinned to their namespace, and the CSR service.
            pilot.ads.add_to(secure, mesh_ca.callers)
            CertificateService(mesh_ca.authority, mesh_ca.tokens).add_to(secure)
            pilot.xds_tls_port = _bind_xds(
                secure, settings.xds_host, settings.xds_tls_port, mesh_ca.credentials
            )
        try:
            pilot.http_port = await http.start()
        except OSError as err:
            where = f"{settings.http_host}:{settings.http_port}"
            raise ConfigError(f"cannot serve HTTP on {where}: {err}") from err
        log.info("HTTP (/ready, /metrics, /debug) on http://%s:%d", settings.http_host, pilot.http_port)
        if pilot.webhook is not None:
            # Served from the start: validating config does not need the sources to have synced.
            pilot.webhook_port = await pilot.webhook.start()

        background: list[asyncio.Task[None]] = []
        async with asyncio.TaskGroup() as tasks:
            if pilot.webhook is not None:
                background.append(tasks.create_task(pilot.webhook.watch_certificates(), name="webhook certs"))
            for source in pilot.sources:
                background.append(tasks.create_task(source.run(), name=type(source).__name__))
            if pilot.root_cert_publisher is not None:
                background.append(
                    tasks.create_task(pilot.root_cert_publisher.run(), name="RootCertPublisher")
                )
            if not await _synced_unless_stopped(pilot.sources, stop):
                _cancel_all(background)
                return
            if pilot.jwks is not None:
                # The keys of the rules loaded, before the first push (istiod fetches them on its
                # first push too), then refreshed in the background.
                await pilot.jwks.refresh()
                background.append(tasks.create_task(pilot.jwks.run(), name="JwksResolver"))
            # The config just loaded lives long: out of the cyclic GC's generations, so that its
            # collections, which translation's many allocations trigger, do not walk it again each
            # time (about a tenth of a K=1000 build, docs/benchmarks.md). Contexts are not frozen:
            # they hold cycles (a scope and its context) and are dropped each push.
            # Collected first, so that no garbage is frozen with it.
            # https://docs.python.org/3/library/gc.html#gc.freeze
            gc.collect()
            gc.freeze()
            await pilot.pusher.push()  # the first PushContext, before any proxy can connect
            background.append(tasks.create_task(pilot.pusher.run(), name="Pusher"))
            for server in servers:
                await server.start()
            pilot.serving = True
            if pilot.xds_port:
                log.info("xDS (ADS gRPC) on %s:%d", settings.xds_host, pilot.xds_port)
            if pilot.xds_tls_port:
                log.info(
                    "secure xDS and CA (gRPC over TLS, bearer tokens) on %s:%d",
                    settings.xds_host,
                    pilot.xds_tls_port,
                )
            log.info(
                "serving %d config objects at revision %d",
                len(pilot.store.snapshot().objects),
                pilot.store.revision,
            )
            if on_ready is not None:
                on_ready(pilot)
            await stop.wait()
            log.info("stopping: closing xDS streams (grace %.1fs)", settings.shutdown_grace)
            pilot.serving = False  # /ready says 503 from now on
            _cancel_all(background)  # no more config changes or pushes while streams drain
            # ADS streams never end by themselves: end them (UNAVAILABLE, proxies reconnect),
            # then stop the server, which refuses new calls and gives the rest the grace.
            await pilot.ads.close()
            await asyncio.gather(*(server.stop(settings.shutdown_grace) for server in servers))
    finally:
        pilot.serving = False
        for server in servers:
            await server.stop(None)  # idempotent; immediate if a failure got us here
        if mesh_ca is not None and mesh_ca.api_client is not None:
            mesh_ca.api_client.close()
        if pilot.webhook is not None:
            await pilot.webhook.stop()
        await http.stop()
        for signum in installed:
            loop.remove_signal_handler(signum)
        log.info("stopped")


@contextlib.asynccontextmanager
async def serve(settings: Settings) -> AsyncIterator[RunningPilot]:
    """Run pilot in this event loop for the duration of the block (tests, the demo)::

        async with serve(Settings(config_dir=path, xds_port=0, http_port=0)) as pilot:
            ... pilot.xds_port, pilot.http_port, pilot.store ...

    Ready (config loaded and pushed, xDS serving) when the block starts; stopped when it ends.
    Signals are left alone. Errors of the block are raised as they are.
    """
    started: asyncio.Future[RunningPilot] = asyncio.get_running_loop().create_future()
    stop = asyncio.Event()

    def ready(pilot: RunningPilot) -> None:
        if not started.done():
            started.set_result(pilot)

    runner = asyncio.create_task(run(settings, stop=stop, handle_signals=False, on_ready=ready), name="pilot")
    try:
        waiting: set[asyncio.Future[Any]] = {started, runner}
        await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        if not started.done():
            runner.result()  # it failed before it was ready: raise why
            raise LifecycleError("pilot stopped before it was ready")
        yield started.result()
    finally:
        stop.set()
        started.cancel()
        try:
            await runner
        except asyncio.CancelledError:
            if not runner.cancelled():
                raise


@dataclass(frozen=True)
class _MeshCa:
    """The mesh CA and what the secure port and /debug authenticate callers with."""

    authority: CertificateAuthority
    tokens: TokenAuthenticator
    callers: BearerAuthenticator
    credentials: grpc.ServerCredentials
    api_client: Any  # the Kubernetes client of TokenReview and the root ConfigMaps (--kube), to close


async def _start_mesh_ca(pilot: RunningPilot) -> _MeshCa | None:
    """With ``ca_dir``: the CA (a self-signed root created on first start, or the operator's
    cacerts), the token authenticator (TokenReview with ``kube``, else ``pilot token``'s tokens),
    the secure port's TLS credentials and, with ``kube``, the root ConfigMap publisher."""
    settings = pilot.settings
    if settings.ca_dir is None:
        return None
    try:
        ca_settings = CaSettings(
            trust_domain=settings.trust_domain,
            workload_lifetime=datetime.timedelta(seconds=settings.workload_cert_ttl),
        )
    except ValueError as err:
        raise ConfigError(f"mesh CA: {err}") from err
    # Key generation and file I/O: off the event loop.
    authority = await asyncio.to_thread(load_or_create, settings.ca_dir, ca_settings)
    pilot.authority = authority
    api_client = None
    tokens: TokenAuthenticator
    if settings.kube:
        api_client = await asyncio.to_thread(load_api_client, settings.kubeconfig, pool_size=4)
        options = WatchOptions()
        tokens = TokenReviewAuthenticator(functools.partial(review_token, api_client, options=options))
        pilot.root_cert_publisher = RootCertPublisher(
            api_client, authority.roots_pem, namespaces=settings.watch_namespaces, options=options
        )
    else:
        tokens = await asyncio.to_thread(FolderTokenAuthenticator.from_ca_dir, settings.ca_dir)
    hosts = [ISTIOD_HOST, f"istiod.{settings.pilot_namespace}.svc", *settings.xds_tls_hosts]
    credentials = await asyncio.to_thread(istiod_server_credentials, authority, hosts)
    return _MeshCa(authority, tokens, BearerAuthenticator(tokens), credentials, api_client)


def _bind_xds(
    server: grpc.aio.Server, host: str, port: int, credentials: grpc.ServerCredentials | None = None
) -> int:
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        if credentials is None:
            bound = server.add_insecure_port(address)
        else:
            bound = server.add_secure_port(address, credentials)
    except RuntimeError as err:  # grpc raises RuntimeError("Failed to bind ...")
        raise ConfigError(f"cannot serve xDS on {address}: {err}") from err
    if bound == 0:  # older grpc reports a failed bind as port 0
        raise ConfigError(f"cannot serve xDS on {address}: address in use or not available")
    return bound


async def _synced_unless_stopped(sources: list[ConfigSource], stop: asyncio.Event) -> bool:
    """Wait until every source has synced (True) or ``stop`` is set first (False)."""
    stopping: asyncio.Future[bool] = asyncio.ensure_future(stop.wait())
    try:
        for source in sources:
            synced: asyncio.Future[bool] = asyncio.ensure_future(source.synced.wait())
            try:
                await asyncio.wait({synced, stopping}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                synced.cancel()
            if stop.is_set():
                return False
        return not stop.is_set()
    finally:
        stopping.cancel()


def _cancel_all(tasks: list[asyncio.Task[None]]) -> None:
    """End the background tasks; the TaskGroup then exits normally (cancelled tasks are no error)."""
    for task in tasks:
        task.cancel()


def _on_signal(signum: signal.Signals, stop: asyncio.Event) -> None:
    log.info("received %s", signum.name)
    stop.set()


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    leaves: list[BaseException] = []
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            leaves.extend(_leaves(exc))
        else:
            leaves.append(exc)
    return leaves
