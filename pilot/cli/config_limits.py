"""The limit flags a config file and its objects are held to, shared by ``serve`` and ``validate``."""

from __future__ import annotations

import argparse

from pilot import flag_values
from pilot.settings import Settings


def add_config_limits(parser: argparse.ArgumentParser, defaults: Settings) -> argparse._ArgumentGroup:
    """The limits a config file and its objects are held to; ``serve`` and ``validate`` share them, so a
    file validates exactly when the server, given the same flags, would load it."""
    limits = parser.add_argument_group("limits (past one, a config file or object is refused with an error)")
    limits.add_argument(
        "--max-file-bytes",
        type=flag_values.positive,
        default=defaults.max_file_bytes,
        metavar="N",
        help="bytes of one config file",
    )
    limits.add_argument(
        "--max-objects-per-file",
        type=flag_values.positive,
        default=defaults.max_objects_per_file,
        metavar="N",
        help="objects in one file, counting kind: List items",
    )
    limits.add_argument(
        "--max-hosts-per-object",
        type=flag_values.positive,
        default=defaults.max_hosts_per_object,
        metavar="N",
        help="hosts of one object",
    )
    limits.add_argument(
        "--max-routes-per-object",
        type=flag_values.positive,
        default=defaults.max_routes_per_object,
        metavar="N",
        help="HTTP, TLS and TCP routes of one VirtualService",
    )
    limits.add_argument(
        "--max-yaml-depth",
        type=flag_values.positive,
        default=defaults.max_yaml_depth,
        metavar="N",
        help="nesting of one YAML document",
    )
    return limits
