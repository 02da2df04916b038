"""Plain HTTP/1.1 over 127.0.0.1: free ports, one-off GETs and a keep-alive client.

``http.client`` on purpose: it never consults ``http_proxy``/``no_proxy`` from the environment,
so a developer's proxy settings cannot send loopback traffic elsewhere.
"""

from __future__ import annotations

import http.client
import json
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["LOOPBACK", "HttpClient", "Reply", "free_port", "get"]

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the kernel's pick for port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True, slots=True)
class Reply:
    """One HTTP response, read in full."""

    status: int
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)
    elapsed: float = 0.0

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def version(self) -> str | None:
        """The ``version`` a pilot demo backend put in its reply; None for anything else."""
        try:
            data = self.json()
        except ValueError:
            return None
        version = data.get("version") if isinstance(data, dict) else None
        return version if isinstance(version, str) else None

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


def get(
    port: int,
    path: str = "/",
    *,
    headers: Mapping[str, str] | None = None,
    timeout: float = 5.0,
    host: str = LOOPBACK,
) -> Reply:
    """One GET on a fresh connection. Raises OSError (refused, reset, timeout) as http.client does."""
    started = time.monotonic()
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path, headers=dict(headers or {}))
        resp = conn.getresponse()
        body = resp.read()
        return Reply(
            resp.status, body, {k.lower(): v for k, v in resp.getheaders()}, time.monotonic() - started
        )
    finally:
        conn.close()


class HttpClient:
    """Sequential GETs over one keep-alive connection to ``127.0.0.1:port``, reconnecting as needed.

    Envoy closes client connections when a listener is drained or replaced; a request that fails
    on a reused connection is retried once on a new one (it never reached a backend). Not
    thread-safe: one client per thread.
    """

    def __init__(self, port: int, *, authority: str | None = None, timeout: float = 5.0) -> None:
        self.port = port
        self.authority = authority
        self.timeout = timeout
        self._conn: http.client.HTTPConnection | None = None

    def get(self, path: str = "/", headers: Mapping[str, str] | None = None) -> Reply:
        all_headers = dict(headers or {})
        if self.authority is not None:
            all_headers.setdefault("Host", self.authority)
        reused = self._conn is not None
        try:
            return self._send(path, all_headers)
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            self.close()
            if not reused:
                raise
            return self._send(path, all_headers)
        except (OSError, http.client.HTTPException):
            self.close()
            raise

    def _send(self, path: str, headers: dict[str, str]) -> Reply:
        if self._conn is None:
            self._conn = http.client.HTTPConnection(LOOPBACK, self.port, timeout=self.timeout)
        started = time.monotonic()
        self._conn.request("GET", path, headers=headers)
        resp = self._conn.getresponse()
        body = resp.read()
        reply = Reply(
            resp.status, body, {k.lower(): v for k, v in resp.getheaders()}, time.monotonic() - started
        )
        if resp.will_close:
            self.close()
        return reply

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
