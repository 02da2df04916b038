"""``python -m pilot.demo.serve_backend --version v1 --port 9080``: one demo backend in the foreground.

The same versioned HTTP backend as ``pilot.localmesh.backend`` (every reply is JSON naming its
``version``), as a process of its own: the docker-compose demo runs it as the app container of
each ``reviews`` pod. SIGTERM or Ctrl-C stops it.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from aiohttp import web

from pilot.localmesh.backend import build_app

__all__ = ["main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pilot.demo.serve_backend",
        description="Serve a demo backend that says which version it is.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--version", required=True, help="the version every reply names, e.g. v1")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=9080, help="port to listen on")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not 0 < args.port < 65536:
        print(f"serve_backend: not a port: {args.port}")
        return 2
    print(f"backend {args.version} on http://{args.host}:{args.port}", flush=True)
    # handle_signals: SIGTERM (docker stop) and SIGINT end the server cleanly.
    web.run_app(
        build_app(args.version),
        host=args.host,
        port=args.port,
        access_log=None,
        handle_signals=True,
        print=None,
        shutdown_timeout=1.0,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
