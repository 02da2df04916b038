"""IP addresses as Istio's config and Envoy's socket addresses read them: one test, used by
validation, translation and the bootstrap builder."""

from __future__ import annotations

import functools
import ipaddress


@functools.lru_cache(maxsize=65536)
def is_ip(text: str) -> bool:
    """An IPv4 or IPv6 address (no port, no brackets, no CIDR suffix).

    Memoized: translation asks about the same endpoint addresses and hosts on every push, and
    ``ipaddress.ip_address`` (an exception for every hostname) is slow."""
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
