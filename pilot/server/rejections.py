"""What the server does with a NACK: count, log (rate-limited) and record it on the type's ledger,
and find which resources of the rejected response failed, so that only their versions are held back
and the pusher is told which config objects to hold (pilot.push.holds).

Envoy's error text is the only evidence: a response carrying one resource blames it; otherwise a
resource named in the text as a whole word (LDS and CDS errors name the listener or cluster), or one
holding a value the text quotes (RDS errors quote the bad value, never the route configuration).
https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol#nack
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable

from pilot import metrics
from pilot.server.callbacks import Rejection
from pilot.server.connection import Connection
from pilot.server.ledger import Sent, TypeLedger, forget, unreject
from pilot.server.ledger import reject as reject_sent
from pilot.server.limits import LogGate
from pilot.server.requests import ErrorDetail
from pilot.server.status import NackStatus, bounded_text
from pilot.xds import types

__all__ = ["StreamRejections", "acquit", "rejected_names"]

log = logging.getLogger("pilot.server")


class StreamRejections:
    """One stream's NACKs: its log gate and whom to tell of a rejection (``on_rejected``)."""

    def __init__(
        self, conn: Connection, nack_log: LogGate, on_rejected: Callable[[Rejection], None] | None
    ) -> None:
        self._conn = conn
        self._nack_log = nack_log
        self._on_rejected = on_rejected  # told of every NACK of a response still in flight

    def nack(
        self, ledger: TypeLedger | None, type_url: str, nonce: str, version: str, error: ErrorDetail
    ) -> None:
        """A request carried ``error_detail``: the proxy rejected the response ``nonce`` and keeps
        running ``version``. Count, log and record it; the caller decides what not to resend.
        https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol#nack"""
        short = types.short_name(type_url)
        metrics.xds_rejects.labels(type=short).inc()
        # The proxy wrote the text: keep, show and log at most MAX_DETAIL_BYTES of it, and log a
        # NACK storm as its first line and then one line per interval.
        message = bounded_text(error.message)
        held_back = self._nack_log.admit()
        if held_back is not None:
            log.warning(
                "ADS:%s NACK from %s (stream %d) nonce %s, keeps version %r: %s%s",
                short,
                self._conn.node_id,
                self._conn.stream_id,
                nonce,
                bounded_text(version, 256),
                message,
                f" ({held_back} more NACKs of this stream not logged)" if held_back else "",
            )
        if ledger is not None:
            ledger.last_nack = NackStatus(
                message=message, code=error.code, nonce=nonce, version=bounded_text(version), at=time.time()
            )

    def reject(self, ledger: TypeLedger, sent: Sent, message: str) -> None:
        """The proxy NACKed ``sent``: never send its versions again, and tell ``on_rejected``
        which resources of which snapshot it rejected (when the response can tell)."""
        reject_sent(ledger, sent)
        if self._on_rejected is None or sent.typed is None:
            return
        names = rejected_names(sent, message)
        if names:
            acquit(ledger, sent, names)
        if not names:  # debug: the NACK itself is logged, rate-limited, by nack()
            log.debug(
                "ADS:%s NACK from %s: the error names none of the %d resources it rejected; only "
                "their versions are held back",
                types.short_name(ledger.type_url),
                self._conn.node_id,
                sum(1 for _ in sent.carried()),
            )
        conn = self._conn
        rejection = Rejection(
            conn.view,
            conn.stream_id,
            conn.node_id,
            ledger.type_url,
            sent.typed.version,
            names,
            bounded_text(message),
        )
        try:
            self._on_rejected(rejection)
        except Exception:
            log.exception("ADS: on_rejected for stream %d failed", conn.stream_id)


def rejected_names(sent: Sent, message: str) -> tuple[str, ...]:
    """The resources of the NACKed ``sent`` that failed: the one it carried; else those its error
    names as a whole word (Envoy's LDS and CDS: "Error adding/updating listener(s) 0.0.0.0_80:
    ..."); else those holding a value the error quotes (Envoy's RDS names no route configuration
    but quotes the value: "regex '/(a|b){9}' RE2 program size of ..."). Empty when none of these
    tells. Sorted."""
    carried = [name for name, _ in sent.carried()]
    if len(carried) <= 1:
        return tuple(carried)
    named = sorted(name for name in carried if _named(name, message))
    if named or sent.typed is None:
        return tuple(named)
    quoted = [q.encode() for q in _QUOTED.findall(message)]
    resources = sent.typed.resources
    return tuple(sorted(n for n in carried if any(q in resources[n].body for q in quoted)))


_QUOTED = re.compile(r"'([^'\n]{3,})'")


def _named(name: str, message: str) -> bool:
    return re.search(rf"(?<![\w.|:-]){re.escape(name)}(?![\w.|-])", message) is not None


def acquit(ledger: TypeLedger, sent: Sent, guilty: Iterable[str]) -> None:
    """Of the NACKed ``sent``, the resources not ``guilty`` did not fail, but the proxy may have
    dropped them with the rest (Envoy's SotW mux stops at the first failing watch): forget their
    rejection and what the proxy holds of them, so the next response carries them again. A
    whole-state response needs nothing: the next one differs and carries everything."""
    if sent.content is not None:
        return
    failed = frozenset(guilty)
    for name, version in sent.carried():
        if name in failed:
            continue
        versions = ledger.rejected.get(name)
        if versions is not None:
            versions.discard(version)
            if not versions:
                unreject(ledger, name)
        if ledger.wants(name):
            forget(ledger, name)
            ledger.synced_with = None
