"""The ``pilot`` argument parser: one subparser per subcommand, each carrying its ``Command``."""

from __future__ import annotations

import argparse

from pilot import __version__
from pilot.cli.agent import add_agent
from pilot.cli.bootstrap import add_bootstrap
from pilot.cli.ca_token import add_token
from pilot.cli.command import Command
from pilot.cli.demo import add_demo
from pilot.cli.help_format import CommandList
from pilot.cli.iptables import add_iptables
from pilot.cli.serve import add_serve
from pilot.cli.validate import add_validate
from pilot.inspect.commands import add_commands as add_operator_commands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pilot",
        description="An Istio-compatible service-mesh control plane and Envoy xDS server.",
        formatter_class=CommandList,
    )
    parser.add_argument("--version", action="version", version=f"pilot {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    add_serve(commands)
    # Subcommands implemented elsewhere: their flags live here, their code is imported on use.
    add_demo(commands)
    add_bootstrap(commands)
    add_validate(commands)
    add_iptables(commands)
    add_token(commands)
    add_operator_commands(commands, Command)  # proxy-status, proxy-config, analyze, diff, explain
    add_agent(commands)
    # Room for more: a module pilot/cli/<name>.py whose add_<name>(commands) sets a `command_spec`.
    return parser
