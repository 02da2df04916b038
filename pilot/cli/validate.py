"""``pilot validate``: its flags, their ValidateOptions, and the handler that checks Istio YAML
(pilot.validate.run, given translate's gRPC AuthorizationPolicy warnings)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from pilot.cli.command import Command, Subcommands
from pilot.cli.config_limits import add_config_limits
from pilot.config.limits import DEFAULT_LIMITS, ParseLimits
from pilot.settings import Settings


@dataclass(frozen=True, slots=True)
class ValidateOptions:
    files: tuple[str, ...] = ()  # files or folders; none: standard input
    limits: ParseLimits = DEFAULT_LIMITS
    grpc: bool = False  # warn on VirtualService fields proxyless gRPC clients cannot honour


def add_validate(commands: Subcommands) -> None:
    validate = commands.add_parser(
        "validate", help="check Istio YAML like istioctl validate (exit 1 on errors)"
    )
    validate.add_argument(
        "files", nargs="*", metavar="FILE", help="YAML/JSON files or folders; '-' or none: standard input"
    )
    validate.add_argument(
        "--grpc",
        action="store_true",
        help="the VirtualServices and DestinationRules serve proxyless gRPC clients, the "
        "AuthorizationPolicies select proxyless gRPC servers: warn on what gRPC ignores or fails",
    )
    add_config_limits(validate, Settings())
    validate.set_defaults(command_spec=Command(validate_options_from, _validate))


def validate_options_from(args: argparse.Namespace) -> ValidateOptions:
    limits = ParseLimits(
        file_bytes=args.max_file_bytes,
        objects_per_file=args.max_objects_per_file,
        hosts_per_object=args.max_hosts_per_object,
        routes_per_object=args.max_routes_per_object,
        depth=args.max_yaml_depth,
    )
    return ValidateOptions(files=tuple(args.files), limits=limits, grpc=args.grpc)


def _validate(options: ValidateOptions) -> int:
    from pilot import validate
    from pilot.translate.grpc_authz_warnings import grpc_authorization_warnings

    return validate.run(options, policy_warnings=grpc_authorization_warnings)
