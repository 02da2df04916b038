"""One fetch of one JSON Web Key Set over HTTP(S), as istiod's JwksResolver does it
(pilot/pkg/model/jwks_resolver.go: ``GetPublicKey``, ``resolveJwksURIUsingOpenID``,
``getRemoteContentWithRetry``, ``validateJWKSFormat``).

Without a ``jwksUri`` the issuer's OpenID discovery document names it (``jwks_uri``). Every request
has the rule's timeout (for discovery and keys together) and reads at most ``max_bytes``; a status
outside 2xx, a timeout, a body past the cap, or a body that is not a JSON object with a ``keys``
array (RFC 7517 §5; istiod checks no more, so a fetched non-JWKS is never inlined into a proxy's
config) raises ``JwksFetchError`` saying which. The keys are returned canonical (compact JSON, keys
in a fixed order), so a server that reorders them does not look like a key change, as istiod's
``compareJWKSResponse`` ignores order.

Connections to link-local addresses (169.254.0.0/16 with the cloud instance metadata services,
fe80::/10, link-local multicast) and to the other well-known metadata addresses are refused when
the socket is made, whatever the URL, its DNS answer or a redirect says (istiod's ``jwksBlockedIP``
through ``BlockedIPDialContext``, pkg/security/dial.go): a RequestAuthentication must not make the
control plane read its host's credentials. Loopback and private ranges stay allowed, as in istiod
(identity providers run in the cluster).
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import json
import socket
from typing import Any

import aiohttp

from pilot import metrics
from pilot.config.jwks import JwksKey
from pilot.errors import JwksFetchError

# Bigger than any real key set (Google's is ~2 KiB, large IdPs ~20 KiB); inlined into every proxy the
# rule applies to, so an endpoint gone wrong must not bloat their config.
DEFAULT_MAX_BYTES = 256 * 1024
_QUOTED_BODY_CHARS = 100  # istiod quotes at most this much of an error response
# pkg/security/dial.go knownCloudMetadataRanges: Alibaba Cloud's, and AWS IMDS over IPv6.
_CLOUD_METADATA = (ipaddress.ip_network("100.100.100.200/32"), ipaddress.ip_network("fd00:ec2::/32"))
# Go's IP.IsLinkLocalMulticast, which Python's is_link_local leaves out.
_LINK_LOCAL_MULTICAST = (ipaddress.ip_network("224.0.0.0/24"), ipaddress.ip_network("ff02::/16"))


def blocked_address(address: str) -> str | None:
    """Why pilot must not connect to ``address`` (an IP), or None."""
    ip = ipaddress.ip_address(address.partition("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_link_local or any(ip in net for net in _LINK_LOCAL_MULTICAST):
        return f"connection blocked: {ip} is link-local"
    if any(ip in net for net in _CLOUD_METADATA):
        return f"connection blocked: {ip} is a known cloud metadata address"
    return None


def _guarded_socket(addr_info: tuple[Any, ...]) -> socket.socket:
    family, kind, proto, _, address = addr_info
    reason = blocked_address(address[0])
    if reason is not None:
        raise OSError(errno.EACCES, reason)  # strerror: what aiohttp's ClientConnectorError shows
    return socket.socket(family, kind, proto)


def new_session() -> aiohttp.ClientSession:
    """The HTTP client of JWKS fetches: no proxy from the environment, blocked addresses refused."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(socket_factory=_guarded_socket))


async def fetch_jwks(
    session: aiohttp.ClientSession, key: JwksKey, timeout: float, max_bytes: int = DEFAULT_MAX_BYTES
) -> str:
    """The key set of ``key``, canonical; ``JwksFetchError`` with the reason otherwise."""
    try:
        async with asyncio.timeout(timeout):
            uri = key.jwks_uri or await _discover(session, key, max_bytes)
            body = await _get(session, uri, max_bytes)
    except TimeoutError as err:
        raise JwksFetchError(f"no answer within {timeout:g}s") from err
    return canonical_jwks(body, uri)


async def _discover(session: aiohttp.ClientSession, key: JwksKey, max_bytes: int) -> str:
    url = key.discovery_url()
    body = await _get(session, url, max_bytes)
    try:
        found = json.loads(body).get("jwks_uri")
    except (ValueError, AttributeError) as err:
        raise JwksFetchError(f"{url}: not a JSON object: {err}") from err
    if not isinstance(found, str) or not found:
        raise JwksFetchError(f"{url}: invalid jwks_uri {found!r} in the OpenID discovery document")
    return found


async def _get(session: aiohttp.ClientSession, url: str, max_bytes: int) -> bytes:
    try:
        async with session.get(url, allow_redirects=True) as response:
            body = await response.content.read(max_bytes + 1)
            if len(body) > max_bytes:
                raise JwksFetchError(f"{url}: the answer is larger than {max_bytes} bytes")
            if not 200 <= response.status < 300:
                quoted = repr(body[:_QUOTED_BODY_CHARS].decode("utf-8", "replace"))
                raise JwksFetchError(f"{url}: status {response.status}, message {quoted}")
    except JwksFetchError:
        metrics.jwks_fetch_fail.inc()
        raise
    except (aiohttp.ClientError, ValueError, OSError) as err:
        metrics.jwks_fetch_fail.inc()
        raise JwksFetchError(f"{url}: {type(err).__name__}: {err}") from err
    metrics.jwks_fetch_success.inc()
    return body


def canonical_jwks(body: bytes, uri: str) -> str:
    """``body`` as compact JSON with its keys sorted by ``kid``, if it is a JWKS."""
    try:
        document: Any = json.loads(body)
    except ValueError as err:
        raise JwksFetchError(f"{uri}: not a JWKS: not valid JSON: {err}") from err
    if not isinstance(document, dict) or "keys" not in document:
        raise JwksFetchError(f'{uri}: not a JWKS: missing "keys" field')
    keys = document["keys"]
    if not isinstance(keys, list):
        raise JwksFetchError(f'{uri}: not a JWKS: "keys" is not an array')
    document["keys"] = sorted(keys, key=lambda k: json.dumps(k, sort_keys=True))
    return json.dumps(document, sort_keys=True, separators=(",", ":"))
