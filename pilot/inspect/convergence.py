"""``pilot proxy-status --revision R``: did the config of store revision R reach every proxy?

Reads ``/debug/convergence`` (pilot.debug.convergence): how many proxies ACKed R or a later
revision, and for each other one why not: its view is not built from R yet (building), a response
is not ACKed yet (syncing), it rejected a response pilot could not trace (nacked), or an object
edited at R or before is held back for it because a proxy of its view rejected it (held: the
object, its file and line, the proxy's error). ``latest`` (the default of ``--revision`` without a
value) asks about the newest revision the store holds. The revision of an edit is the
``revision`` of its object in ``/debug/configz``.
"""

from __future__ import annotations

from typing import TextIO

from pilot.inspect import config_dump
from pilot.inspect.held_objects import held_lines
from pilot.inspect.pilot_api import ApiError, PilotApi

HEADERS = ("NAME", "STATUS", "BUILT AT", "VIEW")


def run(api: PilotApi, revision: str, out: TextIO) -> int:
    """Exit 0 when every connected proxy ACKed ``revision`` (or a later one), 1 otherwise."""
    if revision != "latest" and not revision.isdigit():
        raise ApiError(f"--revision: a store revision (a number) or 'latest', not {revision!r}")
    answer = api.get("/debug/convergence", **({} if revision == "latest" else {"revision": revision}))
    acked, total = int(answer.get("acked", 0)), int(answer.get("proxies", 0))
    print(
        f"revision {answer.get('revision')} (store at {answer.get('store_revision')}): "
        f"{acked} of {total} proxies ACKed it or a later one",
        file=out,
    )
    pending = answer.get("pending", [])
    rows = [
        (str(p.get("proxy")), status, str(p.get("built_revision")), str(p.get("view")))
        for p, status in [
            *((p, "ACKED") for p in answer.get("acked_proxies", [])),
            *((p, str(p.get("reason", "")).upper()) for p in pending),
        ]
    ]
    if rows:
        out.write(config_dump.table(HEADERS, sorted(rows)))
    for proxy in pending:
        for rejection in proxy.get("rejected_objects") or ():
            print(f"{proxy.get('proxy')}:", file=out)
            for line in held_lines(rejection):
                print(f"  {line}", file=out)
    return 0 if acked == total else 1
