"""``pilot demo``: watch a traffic split follow edits to Istio YAML, through a real Envoy.

The modules here are also the harness of the end-to-end tests: ``Backend`` (a versioned HTTP
backend), ``PilotProcess`` (``pilot serve`` as a subprocess), ``EnvoyProcess`` (a real Envoy
with a pilot bootstrap), ``loopback`` (plain HTTP on 127.0.0.1) and ``polling`` (deadlines).
"""

from __future__ import annotations

import argparse

__all__ = ["run"]


def run(args: argparse.Namespace) -> int:
    """Run the demo (pilot.demo.runner); reads args.duration, xds_port, http_port, listen_port.

    Imported lazily: the CLI imports this package for every ``pilot demo``, and ``--help`` should
    not start aiohttp.
    """
    from pilot.demo.runner import run as run_demo

    return run_demo(args)
