"""An app: answers every HTTP GET with JSON naming itself, the peer it saw, the address it was
reached at and the ``x-forwarded-client-cert`` its sidecar added (the mTLS peer's identity).
argv: NAME PORT [PORT...]. Prints ``listening`` once every port is bound."""

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        local = self.connection.getsockname()
        body = json.dumps(
            {
                "app": sys.argv[1],
                "peer": f"{self.client_address[0]}:{self.client_address[1]}",
                "reached": f"{local[0]}:{local[1]}",
                "client_cert": self.headers.get("x-forwarded-client-cert", ""),
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def main() -> None:
    servers = [ThreadingHTTPServer(("0.0.0.0", int(port)), Handler) for port in sys.argv[2:]]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    print("listening", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
