"""The flags of ``proxy-status``, ``proxy-config``, ``analyze``, ``diff`` and ``explain``; pilot.cli
registers them with one call. Each command's module is imported only when it runs (``--help`` stays quick)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pilot.errors import PilotError

if TYPE_CHECKING:
    from pilot.inspect.analyze import AnalyzeOptions
    from pilot.inspect.diff import DiffOptions
    from pilot.inspect.explain import ExplainOptions
    from pilot.inspect.proxy_config import ProxyConfigOptions
    from pilot.inspect.proxy_status import ProxyStatusOptions

DEFAULT_PILOT = "http://127.0.0.1:15014"
CommandFactory = Callable[[Callable[[argparse.Namespace], Any], Callable[[Any], int]], Any]


def _reported(run: Callable[[], int]) -> int:
    """A command's exit code; pilot unreachable or a bad answer is reported in one line, exit 1."""
    try:
        return run()
    except PilotError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


def _pilot_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--pilot",
        default=DEFAULT_PILOT,
        metavar="URL",
        help=f"pilot's HTTP (monitoring) address, serve's --http-port (default: {DEFAULT_PILOT})",
    )


def _proxy_argument(parser: argparse.ArgumentParser, optional: bool = False) -> None:
    parser.add_argument(
        "proxy",
        nargs="?" if optional else None,
        metavar="PROXY",
        help="a node id, or a sidecar's pod.namespace",
    )


def _output_flag(parser: argparse.ArgumentParser, *choices: str) -> None:
    parser.add_argument("-o", "--output", choices=choices, default=choices[0])


def add_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], command: CommandFactory
) -> None:
    """Add the operator's subcommands; ``command(options_from, handler)`` is pilot.cli.command.Command."""
    status = commands.add_parser(
        "proxy-status",
        help="each proxy's xDS sync state (istioctl proxy-status)",
    )
    _proxy_argument(status, optional=True)
    _pilot_flag(status)
    status.add_argument(
        "--envoy-admin", metavar="HOST:PORT", help="with PROXY: diff against this Envoy's admin /config_dump"
    )
    status.add_argument(
        "--revision",
        nargs="?",
        const="latest",
        default=None,
        metavar="R",
        help="which proxies ACKed store revision R (default: the newest) or later; exit 1 if any did not",
    )
    status.set_defaults(command_spec=command(proxy_status_options, run_proxy_status))

    config = commands.add_parser(
        "proxy-config",
        help="what pilot serves one proxy (istioctl proxy-config)",
    )
    config.add_argument("kind", choices=("cluster", "listener", "route", "endpoint", "all"))
    _proxy_argument(config)
    config.add_argument(
        "--name", default=None, metavar="N", help="only resources of this name (a cluster: or FQDN)"
    )
    _output_flag(config, "short", "json", "yaml")
    _pilot_flag(config)
    config.add_argument(
        "--envoy-admin", metavar="HOST:PORT", help="read this Envoy's admin /config_dump instead, to compare"
    )
    config.set_defaults(command_spec=command(proxy_config_options, run_proxy_config))

    analyze = commands.add_parser("analyze", help="Istio's analyzers (IST codes); exit 1 on errors")
    analyze.add_argument("paths", nargs="*", metavar="DIR", help="files or folders (default: .)")
    _output_flag(analyze, "text", "json")
    analyze.set_defaults(command_spec=command(analyze_options, run_analyze))

    diff = commands.add_parser("diff", help="what candidate YAML would change for one proxy")
    _proxy_argument(diff)
    diff.add_argument(
        "files", nargs="+", metavar="FILE", help="candidate YAML files (added or replacing objects)"
    )
    _pilot_flag(diff)
    diff.add_argument(
        "--config-dir",
        default=None,
        metavar="DIR",
        help="translate this folder as the running config (default: pilot's /debug/configz)",
    )
    _output_flag(diff, "text", "json")
    diff.set_defaults(command_spec=command(diff_options, run_diff))

    explain = commands.add_parser("explain", help="the route, rule and endpoints a request meets")
    _proxy_argument(explain)
    explain.add_argument(
        "request", metavar="REQUEST", help="e.g. 'GET http://reviews:9080/api -H end-user:jason'"
    )
    _pilot_flag(explain)
    explain.add_argument("--envoy-admin", metavar="HOST:PORT", help="walk this Envoy's /config_dump instead")
    _output_flag(explain, "text", "json")
    explain.set_defaults(command_spec=command(explain_options, run_explain))


def proxy_status_options(args: argparse.Namespace) -> ProxyStatusOptions:
    from pilot.inspect.proxy_status import ProxyStatusOptions

    return ProxyStatusOptions(args.proxy, args.pilot, args.envoy_admin, args.revision)


def run_proxy_status(options: ProxyStatusOptions) -> int:
    from pilot.inspect import proxy_status

    return _reported(lambda: proxy_status.run(options, sys.stdout))


def proxy_config_options(args: argparse.Namespace) -> ProxyConfigOptions:
    from pilot.inspect.proxy_config import ProxyConfigOptions

    return ProxyConfigOptions(args.kind, args.proxy, args.name, args.output, args.pilot, args.envoy_admin)


def run_proxy_config(options: ProxyConfigOptions) -> int:
    from pilot.inspect import proxy_config

    return _reported(lambda: proxy_config.run(options, sys.stdout))


def analyze_options(args: argparse.Namespace) -> AnalyzeOptions:
    from pilot.inspect.analyze import AnalyzeOptions

    return AnalyzeOptions(tuple(args.paths) or (".",), args.output)


def run_analyze(options: AnalyzeOptions) -> int:
    from pilot.inspect import analyze

    return _reported(lambda: analyze.run(options, sys.stdout))


def diff_options(args: argparse.Namespace) -> DiffOptions:
    from pilot.inspect.diff import DiffOptions

    return DiffOptions(args.proxy, tuple(args.files), args.pilot, args.config_dir, args.output)


def run_diff(options: DiffOptions) -> int:
    from pilot.inspect import diff

    return _reported(lambda: diff.run(options, sys.stdout))


def explain_options(args: argparse.Namespace) -> ExplainOptions:
    from pilot.inspect.explain import ExplainOptions

    return ExplainOptions(args.proxy, args.request, args.pilot, args.envoy_admin, args.output)


def run_explain(options: ExplainOptions) -> int:
    from pilot.inspect import explain

    return _reported(lambda: explain.run(options, sys.stdout))
