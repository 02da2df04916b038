"""What ``pilot demo`` can be told: how long to run and which ports to use."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from pilot import flag_values
from pilot.demo.scenario import PHASES

__all__ = ["OPEN_ENDED_PHASE", "DemoOptions", "add_mesh_flags"]

# Phase length when the demo runs until Ctrl-C.
OPEN_ENDED_PHASE = 10.0


@dataclass(frozen=True, slots=True)
class DemoOptions:
    duration: float | None = None  # seconds of traffic; None: until Ctrl-C
    xds_port: int = 0  # 0: pick a free port
    http_port: int = 0
    listen_port: int = 0  # the service port, i.e. Envoy's listener
    rate: float = 40.0  # requests per second
    mesh: bool = False  # the network-namespace mesh (pilot.demo.mesh) instead
    requests: int = 40  # with mesh: requests per client pod

    @property
    def phase_length(self) -> float:
        return self.duration / len(PHASES) if self.duration is not None else OPEN_ENDED_PHASE


def add_mesh_flags(parser: argparse.ArgumentParser) -> None:
    """``--mesh`` and ``--requests``, on ``pilot demo``'s parser (pilot/cli/demo.py)."""
    parser.add_argument(
        "--mesh",
        action="store_true",
        help="run Bookinfo's reviews as a mesh of network namespaces with iptables capture (needs root)",
    )
    parser.add_argument(
        "--requests",
        type=flag_values.positive,
        default=40,
        metavar="N",
        help="with --mesh: requests per client pod",
    )
