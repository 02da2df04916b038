"""The Kubernetes API server over HTTP: resources and their paths, JSON reads, error statuses, watch streams.

Requests are built and authenticated by the ``kubernetes`` client's own ``ApiClient`` (kubeconfig,
in-cluster token refresh, client certs, TLS, proxies); responses are read raw and decoded with orjson,
so no generated model is built per object. An error answer is a ``Status`` object when the API server
wrote it (https://kubernetes.io/docs/reference/using-api/api-concepts/). Every watch
(pilot.sources.kube_reflector) and every one-off read or write of the cluster source goes through here.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

MAX_ERROR_BODY = 64 * 1024


@dataclass(frozen=True, slots=True)
class Resource:
    """One API resource: ``Resource("networking.istio.io", "v1", "virtualservices", "VirtualService")``."""

    group: str  # "" for the core group
    version: str
    plural: str
    kind: str

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str | None) -> str:
        """The collection's URL path, cluster-wide (``namespace`` None) or in one namespace."""
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        return f"{base}/namespaces/{namespace}/{self.plural}" if namespace else f"{base}/{self.plural}"

    def __str__(self) -> str:
        return f"{self.plural}.{self.group}/{self.version}" if self.group else f"{self.plural}/{self.version}"


@dataclass(frozen=True, slots=True)
class WatchOptions:
    """Timing of every watch. The defaults are client-go's where it has one."""

    # The server ends a watch after timeoutSeconds, picked at random in [watch_timeout, 2 * watch_timeout)
    # so that replicas do not reconnect in step (client-go: minWatchTimeout 5 min).
    watch_timeout: float = 300.0
    # The client gives up on a silent watch this long after the server should have ended it.
    read_slack: float = 30.0
    connect_timeout: float = 10.0
    # A list (one page) or discovery request that takes longer than this fails and is retried.
    request_timeout: float = 60.0
    page_size: int = 500
    # Backoff after a failure: min(max, initial * 2**(n-1)), of which a random half to all is slept.
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    # A watch that ends sooner than this without an event made no progress (see module docstring).
    min_watch_duration: float = 1.0
    # How often to look again for Istio kinds the API server did not serve (CRDs installed later).
    rediscover_interval: float = 60.0

    def backoff(self, failures: int) -> float:
        """Seconds to wait after the ``failures``-th failure in a row (``failures`` >= 1)."""
        ceiling = min(self.backoff_max, self.backoff_initial * 2.0 ** min(failures - 1, 30))
        jitter: float = random.uniform(0.5, 1.0)
        return ceiling * jitter


class ApiError(Exception):
    """The API server answered with an error status (HTTP, or a watch ERROR event's Status)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code} {message}" if message else str(code))
        self.code = code


class Gone(ApiError):
    """410: the requested resourceVersion (or continue token) is too old; list again."""


def api_error(code: int, body: bytes) -> ApiError:
    """An ApiError from a response body, which is a ``Status`` object when the API server wrote it."""
    message = ""
    try:
        status = orjson.loads(body)
    except orjson.JSONDecodeError:
        message = body[:200].decode("utf-8", "replace").strip()
    else:
        if isinstance(status, dict):
            message = str(status.get("message") or status.get("reason") or "")
            code = int(status.get("code") or code)
    return Gone(code, message) if code == 410 else ApiError(code, message)


def open_get(api_client: Any, path: str, query: list[tuple[str, str]], timeout: tuple[float, float]) -> Any:
    """GET ``path`` through the kubernetes ApiClient (auth, TLS, proxies); the unread urllib3 response."""
    method, url, headers, _, _ = api_client.param_serialize(
        "GET",
        path,
        query_params=query,
        header_params={"Accept": "application/json"},
        auth_settings=["BearerToken"],
    )
    return api_client.call_api(method, url, header_params=headers, _request_timeout=timeout).response


def read_json(response: Any) -> Any:
    """The whole body of ``response`` as JSON; ApiError for a non-2xx status. Releases the connection."""
    try:
        status = int(response.status)
        if not 200 <= status < 300:
            raise api_error(status, response.read(MAX_ERROR_BODY))
        return orjson.loads(response.data)
    finally:
        response.release_conn()


def get_json(api_client: Any, path: str, options: WatchOptions) -> Any:
    """GET ``path`` and decode it; None for 404 (a group or version the server does not serve)."""
    response = open_get(api_client, path, [], (options.connect_timeout, options.request_timeout))
    if int(response.status) == 404:
        response.release_conn()
        return None
    return read_json(response)


def describe(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}".rstrip(": ")


def watch_lines(response: Any) -> Iterator[list[bytes]]:
    """The non-empty lines of a watch stream, grouped by the chunk that completed them.

    Lines are handed on per chunk, not per line, so that a burst of events (thousands of EndpointSlice
    updates) costs one hand-over to the event loop per network read, not one per event.
    """
    buffer = bytearray()
    for chunk in response.stream(amt=None, decode_content=False):
        end = chunk.rfind(b"\n")
        if end < 0:
            buffer += chunk  # part of a line (a large object spans several reads)
            continue
        buffer += chunk[:end]
        lines = [bytes(line) for line in buffer.split(b"\n") if line.strip()]
        buffer = bytearray(chunk[end + 1 :])
        if lines:
            yield lines
    if buffer.strip():
        yield [bytes(buffer)]


def shut_down(response: Any) -> None:
    """Unblock a thread reading ``response`` (urllib3 >= 2.3), then close it."""
    try:
        shutdown = getattr(response, "shutdown", None)
        if shutdown is not None:
            shutdown()
        response.close()
    except Exception:  # already closed, or closing raced with the reader: either way it is done
        pass


__all__ = [
    "MAX_ERROR_BODY",
    "ApiError",
    "Gone",
    "Resource",
    "WatchOptions",
    "api_error",
    "describe",
    "get_json",
    "open_get",
    "read_json",
    "shut_down",
    "watch_lines",
]
