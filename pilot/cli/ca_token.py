"""``pilot token``: its flags, their TokenOptions, and the handler that signs a folder-mode
service-account token for the mesh CA (pilot.ca.token_command.run)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from pilot import flag_values
from pilot.cli.command import Command, Subcommands
from pilot.errors import PilotError

if TYPE_CHECKING:  # pilot.ca imports cryptography and PyJWT: only `pilot token` pays for them
    from pilot.ca.token_command import TokenOptions

log = logging.getLogger("pilot.cli")


def add_token(commands: Subcommands) -> None:
    token = commands.add_parser(
        "token",
        help="a folder-mode service-account token for the mesh CA",
        description="Sign a JWT with Kubernetes service-account token claims with the token-signing key "
        "of the CA directory: the folder-mode stand-in for a projected service-account token.",
    )
    token.add_argument(
        "--ca-dir", type=Path, required=True, metavar="DIR", help="the CA directory of pilot serve"
    )
    token.add_argument("--namespace", required=True, metavar="NS")
    token.add_argument("--service-account", required=True, metavar="SA")
    token.add_argument(
        "--ttl", type=flag_values.duration, default="1h", help="lifetime, e.g. 1h, 30m, 90s (default 1h)"
    )
    token.add_argument("--audience", default="istio-ca", help="the aud claim (default: istio-ca)")
    token.set_defaults(command_spec=Command(token_options_from, _token))


def token_options_from(args: argparse.Namespace) -> TokenOptions:
    """ValueError (a usage error) for a namespace or service account Kubernetes would refuse."""
    from pilot.ca.identity import ServiceAccount
    from pilot.ca.token_command import TokenOptions

    account = ServiceAccount(args.namespace, args.service_account)
    return TokenOptions(args.ca_dir, account, args.ttl, args.audience)


def _token(options: TokenOptions) -> int:
    from pilot.ca import token_command

    try:
        return token_command.run(options)
    except PilotError as err:
        log.error("%s", err)
        return 1
