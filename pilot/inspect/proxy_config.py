"""``pilot proxy-config cluster|listener|route|endpoint|all PROXY``: istioctl proxy-config's tables
(``-o short``) or the resources themselves (``-o json|yaml``), from what pilot serves that proxy
(``/debug/config_dump``) or, with ``--envoy-admin``, from what that Envoy holds (its admin
``/config_dump``), so the two can be compared.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TextIO

import orjson
import yaml

from pilot.inspect import config_dump
from pilot.inspect.pilot_api import DEFAULT_PILOT, PilotApi, envoy_config_dump

ALL = "all"
OUTPUTS = ("short", "json", "yaml")


@dataclass(frozen=True, slots=True)
class ProxyConfigOptions:
    kind: str  # one of config_dump.KINDS, or "all"
    proxy: str
    name: str | None = None
    output: str = "short"
    pilot: str = DEFAULT_PILOT
    envoy_admin: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in (*config_dump.KINDS, ALL):
            raise ValueError(f"unknown resource kind {self.kind!r}")
        if self.output not in OUTPUTS:
            raise ValueError(f"unknown output {self.output!r}: one of {', '.join(OUTPUTS)}")


def fetch(options: ProxyConfigOptions) -> dict[str, Any]:
    if options.envoy_admin is not None:
        return envoy_config_dump(options.envoy_admin)
    return PilotApi(options.pilot).config_dump(options.proxy)


def render(dump: dict[str, Any], options: ProxyConfigOptions) -> str:
    kinds = config_dump.KINDS if options.kind == ALL else (options.kind,)
    selection = config_dump.Selection(options.name)
    picked = {kind: list(selection.pick(kind, config_dump.resources(dump, kind))) for kind in kinds}
    if options.output == "json":
        data: Any = picked if options.kind == ALL else picked[options.kind]
        return orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n"
    if options.output == "yaml":
        data = picked if options.kind == ALL else picked[options.kind]
        return yaml.safe_dump(data, sort_keys=False)
    parts = []
    for kind in kinds:
        title = f"{kind.upper()}S\n" if options.kind == ALL else ""
        parts.append(
            title + config_dump.table(config_dump.HEADERS[kind], config_dump.ROWS[kind](picked[kind]))
        )
    return "\n".join(parts)


def run(options: ProxyConfigOptions, out: TextIO) -> int:
    out.write(render(fetch(options), options))
    return 0
