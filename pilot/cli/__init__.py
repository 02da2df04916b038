"""The ``pilot`` command line: parse flags, call the module that does the work, return an exit code.

Subcommands:
    serve       run the control plane (pilot.app)
    demo        a self-contained demo with real Envoys (pilot.demo.run)
    bootstrap   print an Envoy bootstrap that points at pilot (pilot.bootstrap.run)
    validate    check Istio YAML files like istioctl validate (pilot.validate.run)
    iptables    print or apply a pod's capture rules like istio-iptables (pilot.capture.command.run)
    token       print a folder-mode service-account token for the mesh CA (pilot.ca.token_command.run)
    proxy-status, proxy-config, analyze, diff, explain: the operator's commands (pilot.inspect.commands)
    agent       the sidecar's entry point: certificate, SDS, xDS proxy, Envoy (pilot.agent.command.run)

Each subcommand is one module of this package (its flags, its options, its handler; pilot.cli.parser
gathers them) and its handler takes a frozen dataclass built from its flags (``Command.options``),
never an ``argparse.Namespace``; options that contradict each other are refused by the class that
holds them (``Settings``) and reported as a usage error. The module that does a subcommand's work is
imported only when that subcommand runs, so ``pilot bootstrap`` does not pay for grpc and ``--help``
is quick. Exit codes: 0 ok (also Ctrl-C), 1 failure, 2 bad flags.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from pilot.cli.bootstrap import BootstrapOptions, bootstrap_options_from
from pilot.cli.ca_token import token_options_from
from pilot.cli.command import LOG_LEVELS, Command
from pilot.cli.demo import demo_options_from
from pilot.cli.help_format import DefaultsOnce
from pilot.cli.iptables import iptables_options_from
from pilot.cli.parser import build_parser
from pilot.cli.serve import settings_from
from pilot.cli.validate import ValidateOptions, validate_options_from

__all__ = [
    "LOG_LEVELS",
    "BootstrapOptions",
    "Command",
    "DefaultsOnce",
    "ValidateOptions",
    "bootstrap_options_from",
    "build_parser",
    "demo_options_from",
    "iptables_options_from",
    "main",
    "settings_from",
    "token_options_from",
    "validate_options_from",
]


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``pilot ARGS``; returns the exit code (argparse exits 2 itself on bad flags)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    command: Command[Any] = args.command_spec
    try:
        options = command.options(args)
    except ValueError as err:
        parser.error(str(err))
    if hasattr(args, "log_level"):
        from pilot import log as pilot_log

        pilot_log.configure(args.log_level.upper())
    try:
        return command.handler(options)
    except KeyboardInterrupt:
        # Ctrl-C is how an operator stops pilot in a terminal: not an error.
        print(file=sys.stderr)
        return 0
