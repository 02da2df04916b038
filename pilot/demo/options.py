"""What ``pilot demo`` can be told: how long to run and which ports to use."""

from __future__ import annotations

from dataclasses import dataclass

from pilot.demo.scenario import PHASES

__all__ = ["OPEN_ENDED_PHASE", "DemoOptions"]

# Phase length when the demo runs until Ctrl-C.
OPEN_ENDED_PHASE = 10.0


@dataclass(frozen=True, slots=True)
class DemoOptions:
    duration: float | None = None  # seconds of traffic; None: until Ctrl-C
    xds_port: int = 0  # 0: pick a free port
    http_port: int = 0
    listen_port: int = 0  # the service port, i.e. Envoy's listener
    rate: float = 40.0  # requests per second

    @property
    def phase_length(self) -> float:
        return self.duration / len(PHASES) if self.duration is not None else OPEN_ENDED_PHASE
