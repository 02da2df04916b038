"""A plain HTTP client, as an app would be: GET http://HOST:PORT/ and print one JSON line per request
with the address it sent from and the answer. argv: HOST PORT [COUNT]; each of the COUNT requests
(default 1) goes on a connection of its own, as separate ``curl`` runs would."""

import http.client
import json
import sys


def main() -> None:
    host, port = sys.argv[1], int(sys.argv[2])
    for _ in range(int(sys.argv[3]) if len(sys.argv) > 3 else 1):
        connection = http.client.HTTPConnection(host, port, timeout=5)
        connection.connect()
        local = connection.sock.getsockname()
        connection.request("GET", "/")
        response = connection.getresponse()
        print(
            json.dumps(
                {
                    "local": f"{local[0]}:{local[1]}",
                    "status": response.status,
                    "body": response.read().decode(),
                }
            ),
            flush=True,
        )
        connection.close()


if __name__ == "__main__":
    main()
