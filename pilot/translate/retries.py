"""Retry policies: a VirtualService ``retries`` (or the mesh's ``defaultHttpRetryPolicy``) as an
Envoy ``RetryPolicy``.

Istio's route/retry/retry.go (``DefaultPolicy``, ``ConvertPolicy``, ``parseRetryOn``): with no policy
the default (2 retries on ``connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes``
with 503, the previous-hosts predicate, 5 host-selection attempts); ``attempts: 0`` turns retries off;
numbers in ``retryOn`` become retriable status codes, every other entry (HTTP policies such as ``5xx``
and gRPC ones such as ``deadline-exceeded`` or ``resource-exhausted``) is passed to Envoy as written.
"""

from __future__ import annotations

import http

from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.retry.host.previous_hosts.v3 import previous_hosts_pb2
from envoy.extensions.retry.priority.previous_priorities.v3 import previous_priorities_config_pb2
from google.protobuf import any_pb2, wrappers_pb2
from google.protobuf.message import Message

from pilot._gen import networking_pb2 as nw

DEFAULT_RETRY_ON = "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"
RETRIABLE_STATUS_CODES = "retriable-status-codes"
PREVIOUS_HOSTS = "envoy.retry_host_predicates.previous_hosts"
PREVIOUS_PRIORITIES = "envoy.retry_priorities.previous_priorities"


def _typed(message: Message) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def default_retry_policy(consistent_hash: bool = False) -> rc.RetryPolicy:
    """Istio's DefaultPolicy; with consistent hashing, retries stay on the same host (no
    previous-hosts predicate)."""
    out = rc.RetryPolicy(
        retry_on=DEFAULT_RETRY_ON,
        num_retries=wrappers_pb2.UInt32Value(value=2),
        host_selection_retry_max_attempts=5,
        retriable_status_codes=[503],
    )
    if not consistent_hash:
        out.retry_host_predicate.add(
            name=PREVIOUS_HOSTS,
            typed_config=_typed(previous_hosts_pb2.PreviousHostsPredicate()),
        )
    return out


def parse_retry_on(text: str) -> tuple[str, list[int]]:
    """``5xx,503,gateway-error`` → (``5xx,gateway-error``, [503]): numbers are status codes."""
    policies, codes = [], []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        if part.isdigit() and int(part) in http.HTTPStatus._value2member_map_:
            codes.append(int(part))
        else:
            policies.append(part)
    return ",".join(policies), codes


# Istio's DefaultPolicy, with and without consistent hashing: the same on most routes, so made once
# (packing its predicate is most of a route's cost otherwise). Shared: never changed, only copied.
_DEFAULTS = {hashed: default_retry_policy(hashed) for hashed in (False, True)}


def retry_policy(retry: nw.HTTPRetry | None, consistent_hash: bool = False) -> rc.RetryPolicy | None:
    """Istio's ConvertPolicy: no policy → the default; ``attempts: 0`` → no retries at all. The
    result is shared when it is the default: copy it (``CopyFrom``), never change it."""
    if retry is None:
        return _DEFAULTS[consistent_hash]
    out = default_retry_policy(consistent_hash)
    if retry.attempts <= 0:
        return None
    out.num_retries.value = retry.attempts
    if retry.retry_on:
        retry_on, codes = parse_retry_on(retry.retry_on)
        if codes and RETRIABLE_STATUS_CODES not in retry_on:
            retry_on = f"{retry_on},{RETRIABLE_STATUS_CODES}" if retry_on else RETRIABLE_STATUS_CODES
        out.retry_on = retry_on
        del out.retriable_status_codes[:]
        out.retriable_status_codes.extend(codes)
    if retry.HasField("per_try_timeout"):
        out.per_try_timeout.CopyFrom(retry.per_try_timeout)
    if retry.HasField("retry_remote_localities") and retry.retry_remote_localities.value:
        out.retry_priority.name = PREVIOUS_PRIORITIES
        out.retry_priority.typed_config.CopyFrom(
            _typed(previous_priorities_config_pb2.PreviousPrioritiesConfig(update_frequency=2))
        )
    return out


__all__ = ["DEFAULT_RETRY_ON", "default_retry_policy", "parse_retry_on", "retry_policy"]
