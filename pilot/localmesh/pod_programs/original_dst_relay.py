"""A sidecar stand-in: accept connections that iptables REDIRECTed here, recover where each was going
(SO_ORIGINAL_DST), print it, and relay the bytes to that destination.

argv: LISTEN_PORT [SOURCE_ADDRESS]. SOURCE_ADDRESS binds the upstream side, as Envoy's
InboundPassthroughCluster binds 127.0.0.6 so its connection to the app is not captured again.
Prints ``listening`` once ready, then ``accepted peer=IP:PORT original_dst=IP:PORT`` per connection,
before it connects upstream.
"""

import socket
import struct
import sys
import threading

SO_ORIGINAL_DST = 80  # linux/netfilter_ipv4.h: the destination before NAT, as a sockaddr_in


def original_dst(conn: socket.socket) -> tuple[str, int]:
    raw = conn.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
    port, packed = struct.unpack_from("!2xH4s", raw)
    return socket.inet_ntoa(packed), port


def pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        try:
            sink.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def serve(conn: socket.socket, peer: tuple[str, int], source: str | None) -> None:
    host, port = original_dst(conn)
    print(f"accepted peer={peer[0]}:{peer[1]} original_dst={host}:{port}", flush=True)
    upstream = socket.socket()
    upstream.settimeout(5)
    try:
        if source:
            upstream.bind((source, 0))
        upstream.connect((host, port))
    except OSError as err:
        print(f"upstream {host}:{port} failed: {err}", flush=True)
        conn.close()
        return
    upstream.settimeout(None)
    back = threading.Thread(target=pump, args=(upstream, conn), daemon=True)
    back.start()
    pump(conn, upstream)
    back.join(10)
    conn.close()
    upstream.close()


def main() -> None:
    port = int(sys.argv[1])
    source = sys.argv[2] if len(sys.argv) > 2 else None
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("0.0.0.0", port))
    listener.listen(64)
    print("listening", flush=True)
    while True:
        conn, peer = listener.accept()
        threading.Thread(target=serve, args=(conn, peer, source), daemon=True).start()


if __name__ == "__main__":
    main()
