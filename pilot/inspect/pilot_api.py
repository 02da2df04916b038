"""A client of pilot's HTTP API (``pilot.debug.http``) and of Envoy's admin API: GET, JSON back.

Synchronous and dependency-free (urllib): a command makes a few requests and exits.
"""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

import orjson

from pilot.errors import PilotError

DEFAULT_PILOT = "http://127.0.0.1:15014"
TIMEOUT = 10.0


class ApiError(PilotError):
    """pilot (or Envoy's admin) could not be reached, or answered with an error."""


def _get(url: str, timeout: float) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (http only, below)
            return orjson.loads(response.read())
    except urllib.error.HTTPError as err:
        try:
            detail = orjson.loads(err.read()).get("error", "")
        except (orjson.JSONDecodeError, AttributeError):
            detail = ""
        raise ApiError(f"GET {url}: {err.code} {detail or err.reason}") from err
    except (urllib.error.URLError, OSError) as err:
        raise ApiError(f"GET {url}: {getattr(err, 'reason', err)}") from err
    except orjson.JSONDecodeError as err:
        raise ApiError(f"GET {url}: not JSON: {err}") from err


def base_url(address: str) -> str:
    """``HOST:PORT`` or ``http://HOST:PORT`` as ``http://HOST:PORT`` (no trailing slash)."""
    if "://" not in address:
        address = "http://" + address
    scheme = urllib.parse.urlsplit(address).scheme
    if scheme not in ("http", "https"):
        raise ApiError(f"not an http address: {address!r}")
    return address.rstrip("/")


@dataclass(frozen=True, slots=True)
class PilotApi:
    """pilot's monitoring port (``pilot serve --http-port``, Istio's 15014)."""

    url: str = DEFAULT_PILOT
    timeout: float = TIMEOUT

    def get(self, path: str, **query: str) -> Any:
        suffix = f"?{urllib.parse.urlencode(query)}" if query else ""
        return _get(f"{base_url(self.url)}{path}{suffix}", self.timeout)

    def syncz(self) -> list[dict[str, Any]]:
        rows = self.get("/debug/syncz")
        if not isinstance(rows, list):
            raise ApiError("/debug/syncz: expected a list")
        return rows

    def config_dump(self, proxy: str) -> dict[str, Any]:
        return dict(self.get("/debug/config_dump", proxyID=proxy))

    def proxyz(self, proxy: str) -> dict[str, Any]:
        return dict(self.get("/debug/proxyz", proxyID=proxy))

    def configz(self) -> dict[str, Any]:
        return dict(self.get("/debug/configz"))


def envoy_config_dump(admin: str, timeout: float = TIMEOUT) -> dict[str, Any]:
    """Envoy's own ``/config_dump`` (with EDS) from its admin address ``HOST:PORT``."""
    return dict(_get(f"{base_url(admin)}/config_dump?include_eds", timeout))
