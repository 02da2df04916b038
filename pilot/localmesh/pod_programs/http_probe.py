"""A plain HTTP client that keeps asking: GET http://HOST:PORT/ on a new connection every INTERVAL
seconds until killed, one JSON line per attempt: its wall-clock time (``time.time()``, so another
process on the machine can compare it with its own) and the status, 0 when the connection was
refused, reset or closed without an answer. argv: HOST PORT INTERVAL."""

import http.client
import json
import sys
import time


def attempt(host: str, port: int) -> tuple[int, str]:
    connection = http.client.HTTPConnection(host, port, timeout=2)
    try:
        connection.request("GET", "/")
        response = connection.getresponse()
        response.read()
        return response.status, ""
    except (OSError, http.client.HTTPException) as err:
        return 0, type(err).__name__
    finally:
        connection.close()


def main() -> None:
    host, port, interval = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    while True:
        started = time.time()
        status, error = attempt(host, port)
        print(json.dumps({"t": started, "status": status, "error": error}), flush=True)
        time.sleep(max(0.0, interval - (time.time() - started)))


if __name__ == "__main__":
    main()
