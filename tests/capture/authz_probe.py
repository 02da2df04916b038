"""A pod's HTTP client for the authorization tests: requests given as JSON, one answer line each.

argv: HOST REQUESTS_JSON [UNTIL_STATUS TIMEOUT]. REQUESTS_JSON is a list of ``{"port": P, "path": "/x",
"headers": {...}}``; each goes on a connection of its own and prints ``{"status": S, "at": T}``, S 0 when
the connection was closed without an answer (a network RBAC filter's deny). With UNTIL_STATUS the
first request is repeated until it answers that status (or TIMEOUT seconds pass), and the line printed
is that of the first request that did; ``at`` is its wall-clock time, to measure a config edit's
latency against the time of the write.
"""

import http.client
import json
import sys
import time


def send(host: str, request: dict) -> int:
    connection = http.client.HTTPConnection(host, request["port"], timeout=5)
    try:
        connection.request("GET", request.get("path", "/"), headers=request.get("headers", {}))
        response = connection.getresponse()
        response.read()
        return response.status
    except (ConnectionError, http.client.HTTPException, OSError):
        return 0
    finally:
        connection.close()


def main() -> None:
    host, requests = sys.argv[1], json.loads(sys.argv[2])
    if len(sys.argv) > 3:
        want, deadline = int(sys.argv[3]), time.time() + float(sys.argv[4])
        while True:
            status = send(host, requests[0])
            if status == want or time.time() > deadline:
                print(json.dumps({"status": status, "at": time.time()}), flush=True)
                return
            time.sleep(0.01)
    for request in requests:
        status = send(host, request)
        print(json.dumps({"status": status, "at": time.time()}), flush=True)


if __name__ == "__main__":
    main()
