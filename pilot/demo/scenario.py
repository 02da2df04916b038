"""What the demo does: the bundled Istio config, its three phases, and what each phase should route.

The YAML lives in ``pilot/demo/config/``; ports are only known at run time, so the files are
``string.Template``s (``${SERVICE_PORT}``, ``${V1_PORT}``...) rendered into the folder pilot
watches.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from string import Template

__all__ = ["JASON", "PHASES", "SERVICE_HOST", "VERSIONS", "Phase", "render"]

# Requests carry ``Host: reviews``; the VirtualService names the short host too.
SERVICE_HOST = "reviews"
VERSIONS = ("v1", "v2", "v3")
# The header of the user that phase 3 sends to v3 (Bookinfo's test user).
JASON = {"end-user": "jason"}

SERVICE_FILE = "reviews.yaml"
VIRTUAL_SERVICE_FILE = "reviews-virtualservice.yaml"


@dataclass(frozen=True, slots=True)
class Phase:
    """One VirtualService and what traffic must look like once Envoy has it."""

    title: str
    template: str
    # Versions that may answer a request from jason / from anyone else under this phase.
    for_jason: frozenset[str]
    for_others: frozenset[str]
    # A reply from one of these could only come from the new config (the edit has arrived).
    new_versions: frozenset[str] = frozenset()

    def allows(self, version: str | None, jason: bool) -> bool:
        return version in (self.for_jason if jason else self.for_others)


PHASES = (
    Phase("80% v1 / 20% v2", "reviews-80-20.yaml", frozenset({"v1", "v2"}), frozenset({"v1", "v2"})),
    Phase("100% v2", "reviews-all-v2.yaml", frozenset({"v2"}), frozenset({"v2"})),
    Phase(
        "end-user: jason -> v3, everyone else -> v2",
        "reviews-jason-v3.yaml",
        frozenset({"v3"}),
        frozenset({"v2"}),
        new_versions=frozenset({"v3"}),
    ),
)


def render(template: str, ports: Mapping[str, int]) -> str:
    """A bundled config file with its ``${NAME}`` placeholders filled in."""
    text = resources.files("pilot.demo").joinpath("config", template).read_text(encoding="utf-8")
    return Template(text).substitute({name: str(port) for name, port in ports.items()})
