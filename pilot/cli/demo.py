"""``pilot demo``: its flags, their DemoOptions, and the handler that runs the demo (pilot.demo.run)."""

from __future__ import annotations

import argparse

from pilot import flag_values
from pilot.cli.command import LOG_LEVELS, Command, Subcommands
from pilot.cli.help_format import DefaultsOnce
from pilot.demo.options import DemoOptions, add_mesh_flags


def add_demo(commands: Subcommands) -> None:
    demo = commands.add_parser(
        "demo",
        help="a demo: pilot, Envoys, backends (--mesh: namespaces)",
        formatter_class=DefaultsOnce,
    )
    demo.add_argument(
        "--duration",
        type=flag_values.non_negative,
        default=None,
        metavar="SECONDS",
        help="stop after this long (default: until Ctrl-C)",
    )
    demo.add_argument(
        "--xds-port", type=flag_values.port, default=0, help="pilot's ADS port (0: any free port)"
    )
    demo.add_argument(
        "--http-port", type=flag_values.port, default=0, help="pilot's HTTP port (0: any free port)"
    )
    demo.add_argument(
        "--listen-port", type=flag_values.port, default=0, help="the Envoy listener port (0: any free port)"
    )
    demo.add_argument("--log-level", choices=LOG_LEVELS, default="info", help="level of pilot's own logs")
    add_mesh_flags(demo)
    demo.set_defaults(command_spec=Command(demo_options_from, _demo))


def demo_options_from(args: argparse.Namespace) -> DemoOptions:
    return DemoOptions(
        duration=args.duration,
        xds_port=args.xds_port,
        http_port=args.http_port,
        listen_port=args.listen_port,
        mesh=args.mesh,
        requests=args.requests,
    )


def _demo(options: DemoOptions) -> int:
    from pilot import demo

    return demo.run(options)
