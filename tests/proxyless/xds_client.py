"""A proxyless gRPC client in its own process: ``python -m tests.proxyless.xds_client TARGET``.

gRPC's xDS client is process-wide and reads ``GRPC_XDS_BOOTSTRAP`` once, so each test module runs
its client here, with its own bootstrap, instead of in the pytest process. One channel to
``xds:///TARGET`` lives as long as the process (config changes reach it without reconnecting).

Reads one JSON command a line, ``{"calls": N, "metadata": {...}, "timeout": SECONDS}`` (and
``"target"`` to dial another host on a channel of its own, ``"method"`` to call another method,
``"credentials": "xds"`` for a channel with xDS credentials, gRFC A29, whose clusters' TLS comes
from pilot and the bootstrap's certificate provider, plain text where pilot sends none), makes N
unary calls one after another and writes one JSON line: ``{"outcomes": {"v1": 7, "UNAVAILABLE":
3}, "seconds": [...]}``, the backend name of each answered call or the status code of each failed one.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter

import grpc
from grpc import experimental

from tests.proxyless.echo import METHOD


def channel(target: str, credentials: str) -> grpc.Channel:
    if credentials == "xds":
        # grpcio 1.85 has insecure channel credentials under grpc.experimental only.
        xds = grpc.xds_channel_credentials(fallback_credentials=experimental.insecure_channel_credentials())
        return grpc.secure_channel(f"xds:///{target}", xds)
    return grpc.insecure_channel(f"xds:///{target}")


def main(target: str) -> int:
    channels = {(target, "insecure"): channel(target, "insecure")}
    for line in sys.stdin:
        command = json.loads(line)
        dial = (command.get("target", target), command.get("credentials", "insecure"))
        if dial not in channels:
            channels[dial] = channel(*dial)
        who = channels[dial].unary_unary(command.get("method", METHOD))
        metadata = tuple(command.get("metadata", {}).items())
        outcomes: Counter[str] = Counter()
        seconds: list[float] = []
        for _ in range(int(command.get("calls", 1))):
            started = time.monotonic()
            try:
                outcomes[
                    who(b"", timeout=float(command.get("timeout", 5.0)), metadata=metadata).decode()
                ] += 1
            except grpc.RpcError as err:
                outcomes[err.code().name] += 1
            seconds.append(round(time.monotonic() - started, 3))
        sys.stdout.write(json.dumps({"outcomes": outcomes, "seconds": seconds}) + "\n")
        sys.stdout.flush()
    for open_channel in channels.values():
        open_channel.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
