"""A small real HTTP backend that says which version it is and what it was asked.

Every reply is JSON ``{"version", "method", "path", "headers"}`` (and an ``x-backend-version``
header), so a caller behind Envoy can see which subset served it, the path after any rewrite and
the headers Envoy forwarded. Some paths behave differently:

- ``/delay/<seconds>``: answer after that many seconds (for route timeouts);
- ``/status/<code>``: answer with that status code;
- ``/flaky/<key>/<n>``: answer 503 to the first ``n`` requests for ``key``, then 200 (for retries).

``Backend.received`` lists every request served, as (method, path, headers), for tests that need to
see what reached a backend (mirrored copies, retries).

``Backend`` runs the server on its own event loop in a daemon thread, so it can serve a
synchronous test or the demo without sharing their loop.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from typing import Any

from aiohttp import web

from pilot.localmesh.loopback import LOOPBACK

__all__ = ["Backend", "build_app"]

_MAX_DELAY = 60.0


Received = list[tuple[str, str, dict[str, str]]]


def build_app(version: str, received: Received | None = None) -> web.Application:
    """The aiohttp application of one backend version; ``received`` gets every request served."""
    attempts: dict[str, int] = {}

    def reply(request: web.Request, status: int = 200) -> web.Response:
        body = {
            "version": version,
            "method": request.method,
            "path": request.path_qs,
            "headers": {k.lower(): v for k, v in request.headers.items()},
        }
        return web.json_response(body, status=status, headers={"x-backend-version": version})

    async def delay(request: web.Request) -> web.Response:
        try:
            seconds = float(request.match_info["seconds"])
        except ValueError:
            return web.json_response({"version": version, "error": "bad delay"}, status=400)
        await asyncio.sleep(min(max(seconds, 0.0), _MAX_DELAY))
        return reply(request)

    async def status(request: web.Request) -> web.Response:
        code = int(request.match_info["code"])
        if not 200 <= code <= 599:
            return web.json_response({"version": version, "error": "bad status"}, status=400)
        return reply(request, code)

    async def flaky(request: web.Request) -> web.Response:
        key = request.match_info["key"]
        attempts[key] = attempts.get(key, 0) + 1
        return reply(request, 503 if attempts[key] <= int(request.match_info["failures"]) else 200)

    async def echo(request: web.Request) -> web.Response:
        return reply(request)

    @web.middleware
    async def record(request: web.Request, handler: Any) -> web.StreamResponse:
        if received is not None:
            headers: dict[str, str] = {}
            for name, value in request.headers.items():  # a repeated header: its values comma-joined
                key = name.lower()
                headers[key] = f"{headers[key]},{value}" if key in headers else value
            received.append((request.method, request.path_qs, headers))
        response: web.StreamResponse = await handler(request)
        return response

    app = web.Application(middlewares=[record])
    app.router.add_route("*", "/delay/{seconds}", delay)
    app.router.add_route("*", r"/status/{code:\d{3}}", status)
    app.router.add_route("*", r"/flaky/{key}/{failures:\d+}", flaky)
    app.router.add_route("*", "/{tail:.*}", echo)
    return app


class Backend:
    """One backend version served on ``127.0.0.1:port`` from a thread. ``start()`` then ``stop()``.

    ``port`` 0 picks a free port; it is bound before ``start()`` returns, so there is no race.
    """

    def __init__(self, version: str, port: int = 0) -> None:
        self.version = version
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._sock.bind((LOOPBACK, port))
        except OSError:
            self._sock.close()
            raise
        self.port: int = self._sock.getsockname()[1]
        self.received: Received = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._serve, name=f"backend-{version}", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def start(self, timeout: float = 10.0) -> Backend:
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError(f"backend {self.version} did not start within {timeout}s")
        if self._error is not None:
            raise RuntimeError(f"backend {self.version} failed to start") from self._error
        return self

    def _serve(self) -> None:
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._run())
        except BaseException as err:  # reported to start(); the thread must not die silently
            self._error = err
        finally:
            self._ready.set()
            loop.close()
            self._sock.close()

    async def _run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        runner = web.AppRunner(
            build_app(self.version, self.received),
            access_log=None,
            handle_signals=False,
            shutdown_timeout=0.5,
        )
        await runner.setup()
        try:
            await web.SockSite(runner, self._sock).start()
            self._ready.set()
            await self._stopping.wait()
        finally:
            await runner.cleanup()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving and join the thread; safe to call twice or before ``start()``."""
        loop, stopping = self._loop, self._stopping
        if loop is not None and stopping is not None and self._thread.is_alive():
            try:
                loop.call_soon_threadsafe(stopping.set)
            except RuntimeError:  # loop already closed
                pass
        if self._thread.is_alive():
            self._thread.join(timeout)
        elif not self._thread.ident:
            self._sock.close()

    def __enter__(self) -> Backend:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
