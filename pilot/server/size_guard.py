"""Warn before sending a response a proxy cannot receive.

gRPC clients refuse a message larger than their receive limit, 4 MiB by default
(``GRPC_DEFAULT_MAX_RECV_MESSAGE_LENGTH``); Envoy's ADS client keeps that default unless its
bootstrap raises ``max_receive_message_length``. A response past it fails on the proxy's side with
RESOURCE_EXHAUSTED and the proxy reconnects to get the same response again, so the operator must
hear of it from pilot: a warning naming the proxy, the type and the largest resources, and
``pilot_xds_oversized_responses``. The response is still sent (a proxy with a raised limit takes it).
https://github.com/grpc/grpc/blob/master/include/grpc/impl/channel_arg_names.h
"""

from __future__ import annotations

import heapq
import logging

from pilot import metrics
from pilot.cache.snapshot import TypeResources
from pilot.xds import types

GRPC_DEFAULT_MAX_RECV_BYTES = 4 * 1024 * 1024
LARGEST_SHOWN = 5

log = logging.getLogger("pilot.server.size_guard")


def largest(
    typed: TypeResources | None, names: frozenset[str] | None, count: int = LARGEST_SHOWN
) -> list[tuple[str, int]]:
    """The ``count`` largest resources a response carries, as (name, bytes), largest first."""
    if typed is None:
        return []
    carried = (
        typed.resources if names is None else {n: typed.resources[n] for n in names if n in typed.resources}
    )
    return heapq.nlargest(
        count, ((name, len(r.body)) for name, r in carried.items()), key=lambda item: item[1]
    )


def warn_if_oversized(
    node_id: str,
    type_url: str,
    size: int,
    typed: TypeResources | None,
    names: frozenset[str] | None,
    limit: int = GRPC_DEFAULT_MAX_RECV_BYTES,
) -> bool:
    """True (and a warning and the metric) when a ``size``-byte response is past ``limit``."""
    if size <= limit:
        return False
    short = types.short_name(type_url)
    metrics.xds_oversized_responses.labels(type=short).inc()
    shown = ", ".join(f"{name} ({nbytes} B)" for name, nbytes in largest(typed, names))
    log.warning(
        "%s response to %s is %d bytes, past gRPC's default %d-byte receive limit: the proxy may refuse it "
        "(RESOURCE_EXHAUSTED) unless its bootstrap raises max_receive_message_length; largest: %s",
        short,
        node_id,
        size,
        limit,
        shown or "-",
    )
    return True
