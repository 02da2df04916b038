"""A plain HTTP client, as an app would be: GET http://HOST:PORT/ once and print one JSON line with
the address it sent from and the answer. argv: HOST PORT."""

import http.client
import json
import sys


def main() -> None:
    connection = http.client.HTTPConnection(sys.argv[1], int(sys.argv[2]), timeout=5)
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


if __name__ == "__main__":
    main()
