"""A proxyless gRPC client in its own process: ``python -m tests.proxyless.xds_client TARGET``.

gRPC's xDS client is process-wide and reads ``GRPC_XDS_BOOTSTRAP`` once, so each test module runs
its client here, with its own bootstrap, instead of in the pytest process. One channel to
``xds:///TARGET`` lives as long as the process (config changes reach it without reconnecting).

Reads one JSON command a line, ``{"calls": N, "metadata": {...}, "timeout": SECONDS}`` (and
``"target"`` to dial another host on a channel of its own), makes N
unary calls one after another and writes one JSON line: ``{"outcomes": {"v1": 7, "UNAVAILABLE":
3}, "seconds": [...]}``, the backend name of each answered call or the status code of each failed one.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter

import grpc

from tests.proxyless.echo import METHOD


def main(target: str) -> int:
    channels = {target: grpc.insecure_channel(f"xds:///{target}")}
    for line in sys.stdin:
        command = json.loads(line)
        dial = command.get("target", target)
        if dial not in channels:
            channels[dial] = grpc.insecure_channel(f"xds:///{dial}")
        who = channels[dial].unary_unary(METHOD)
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
    for channel in channels.values():
        channel.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
