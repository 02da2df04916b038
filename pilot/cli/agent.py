"""``pilot agent``: the sidecar's entry point, its flags and options from pilot.agent.options and its
handler (pilot.agent.command.run)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pilot.cli.command import Command, Subcommands

if TYPE_CHECKING:
    from pilot.agent.options import AgentOptions


def add_agent(commands: Subcommands) -> None:
    # The flags and their typed options live in pilot.agent.options (no grpc there).
    from pilot.agent import options

    agent = commands.add_parser(
        "agent",
        help="a sidecar's entry point: certificate, SDS, Envoy",
        description="The pilot-agent role: get the workload certificate from pilot's CA with the token, "
        "serve it to Envoy over SDS, rotate it, proxy Envoy's ADS to pilot over TLS, run Envoy.",
    )
    options.add_arguments(agent)
    agent.set_defaults(command_spec=Command(options.options_from, _agent))


def _agent(options: AgentOptions) -> int:
    from pilot.agent import command

    return command.run(options)
