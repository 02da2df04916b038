"""One HTTP request, and Envoy's rules for which listener, filter chain, virtual host and route take it.

A plain-text request meets the listener bound to its port (the exact address first), the filter chain
whose match it fits, the virtual host whose domain fits the Host header (exact, then the longest
``*.suffix``, then the longest ``prefix*``, then ``*``) and the first route whose path, headers and query
parameters match: ``pilot explain`` (pilot.inspect.explain) walks a proxy's config dump with them.
https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/route/v3/route_components.proto
"""

from __future__ import annotations

import re
import shlex
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Request:
    """One HTTP request as curl would send it: method, authority (the Host header), path, headers."""

    method: str
    host: str
    port: int
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]  # lower-case names, with Envoy's pseudo-headers

    @classmethod
    def parse(cls, text: str) -> Request:
        """``[METHOD] URL [-H NAME:VALUE]...``; the URL's scheme gives the default port."""
        words = shlex.split(text)
        method = "GET"
        if len(words) > 1 and words[0].isalpha() and words[0].isupper():
            method = words.pop(0)
        headers: dict[str, str] = {}
        url = ""
        while words:
            word = words.pop(0)
            if word in ("-H", "--header"):
                if not words or ":" not in words[0]:
                    raise ValueError(f"-H needs NAME:VALUE, in {text!r}")
                name, _, value = words.pop(0).partition(":")
                headers[name.strip().lower()] = value.strip()
            elif not url:
                url = word
            else:
                raise ValueError(f"unexpected {word!r} in {text!r}")
        parts = urllib.parse.urlsplit(url if "://" in url else f"http://{url}")
        if not parts.hostname:
            raise ValueError(f"no host in {text!r}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        authority = parts.netloc.rpartition("@")[2]
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        headers = {":method": method, ":authority": authority, ":path": path, "host": authority, **headers}
        return cls(
            method,
            parts.hostname,
            port,
            parts.path or "/",
            dict(urllib.parse.parse_qsl(parts.query)),
            headers,
        )

    @property
    def authority(self) -> str:
        return self.headers[":authority"]


def string_matches(matcher: Mapping[str, Any], value: str) -> bool:
    """envoy.type.matcher.v3.StringMatcher."""
    ignore_case = bool(matcher.get("ignore_case"))
    subject = value.lower() if ignore_case else value

    def norm(text: str) -> str:
        return text.lower() if ignore_case else text

    if "exact" in matcher:
        return subject == norm(matcher["exact"])
    if "prefix" in matcher:
        return subject.startswith(norm(matcher["prefix"]))
    if "suffix" in matcher:
        return subject.endswith(norm(matcher["suffix"]))
    if "contains" in matcher:
        return norm(matcher["contains"]) in subject
    if "safe_regex" in matcher:
        return re.fullmatch(matcher["safe_regex"].get("regex", ""), value) is not None
    return False


def header_matches(matcher: Mapping[str, Any], headers: Mapping[str, str]) -> bool:
    """config.route.v3.HeaderMatcher: present, string, exact/prefix/... (legacy), inverted."""
    value = headers.get(str(matcher.get("name", "")).lower())
    if "present_match" in matcher:
        result = (value is not None) == bool(matcher["present_match"])
    elif value is None:
        result = False
    elif "string_match" in matcher:
        result = string_matches(matcher["string_match"], value)
    elif any(k in matcher for k in ("exact_match", "prefix_match", "suffix_match", "contains_match")):
        legacy = {k.removesuffix("_match"): v for k, v in matcher.items() if k.endswith("_match")}
        result = string_matches(legacy, value)
    elif "safe_regex_match" in matcher:
        result = re.fullmatch(matcher["safe_regex_match"].get("regex", ""), value) is not None
    else:
        result = True  # only the name: present
    return result != bool(matcher.get("invert_match"))


def route_matches(match: Mapping[str, Any], request: Request) -> bool:
    path = request.path
    sensitive = match.get("case_sensitive", True)
    subject = path if sensitive else path.lower()

    def norm(text: str) -> str:
        return text if sensitive else text.lower()

    if "prefix" in match:
        ok = subject.startswith(norm(match["prefix"]))
    elif "path" in match:
        ok = subject == norm(match["path"])
    elif "path_separated_prefix" in match:
        prefix = norm(match["path_separated_prefix"])
        ok = subject == prefix or subject.startswith(prefix.rstrip("/") + "/")
    elif "safe_regex" in match:
        ok = re.fullmatch(match["safe_regex"].get("regex", ""), path) is not None
    else:
        ok = True
    if not ok:
        return False
    if not all(header_matches(h, request.headers) for h in match.get("headers", [])):
        return False
    for query in match.get("query_parameters", []):
        value = request.query.get(query.get("name", ""))
        if "present_match" in query:
            if (value is not None) != bool(query["present_match"]):
                return False
        elif value is None or ("string_match" in query and not string_matches(query["string_match"], value)):
            return False
    return True


def without_port(authority: str) -> str:
    """``reviews:9080`` → ``reviews``; ``[::1]:80`` → ``[::1]``; an authority without a port as is."""
    if authority.startswith("["):
        return authority[: authority.index("]") + 1] if "]" in authority else authority
    name, colon, port = authority.rpartition(":")
    return name if colon and port.isdigit() and ":" not in name else authority


def pick_virtual_host(
    hosts: Sequence[Mapping[str, Any]], authority: str
) -> tuple[Mapping[str, Any], str] | None:
    """Envoy's domain search: exact, then the longest suffix wildcard, then the longest prefix
    wildcard, then ``*`` (RouteConfiguration.virtual_hosts, VirtualHost.domains)."""
    authority = authority.lower()
    exact = [(h, d) for h in hosts for d in h.get("domains", []) if d.lower() == authority]
    if exact:
        return exact[0]
    suffixes = [
        (h, d)
        for h in hosts
        for d in h.get("domains", [])
        if d.startswith("*") and d != "*" and authority.endswith(d[1:].lower())
    ]
    if suffixes:
        return max(suffixes, key=lambda item: len(item[1]))
    prefixes = [
        (h, d)
        for h in hosts
        for d in h.get("domains", [])
        if d.endswith("*") and d != "*" and authority.startswith(d[:-1].lower())
    ]
    if prefixes:
        return max(prefixes, key=lambda item: len(item[1]))
    star = [(h, d) for h in hosts for d in h.get("domains", []) if d == "*"]
    return star[0] if star else None


def chain_applies(chain: Mapping[str, Any], request: Request) -> bool:
    match = chain.get("filter_chain_match", {})
    if match.get("destination_port") and int(match["destination_port"]) != request.port:
        return False
    if match.get("server_names") or match.get("transport_protocol", "raw_buffer") not in ("", "raw_buffer"):
        return False  # a plain-text request never carries SNI or a TLS handshake
    protocols = match.get("application_protocols", [])
    return not protocols or any(p.startswith("http/1") or p == "h2c" for p in protocols)


def pick_listener(listeners: Sequence[Mapping[str, Any]], request: Request) -> Mapping[str, Any] | None:
    on_port = [
        listener
        for listener in listeners
        if listener.get("address", {}).get("socket_address", {}).get("port_value") == request.port
    ]
    exact = [
        listener
        for listener in on_port
        if listener.get("address", {}).get("socket_address", {}).get("address") == request.host
    ]
    found = exact or on_port
    return found[0] if found else None
