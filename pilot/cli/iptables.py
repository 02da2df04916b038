"""``pilot iptables``: istio-iptables' flags, their IptablesOptions, and the handler that prints or
applies a pod's capture rules (pilot.capture.command.run)."""

from __future__ import annotations

import argparse

from pilot.capture.options import IptablesOptions
from pilot.cli.command import Command, Subcommands
from pilot.cli.help_format import DefaultsOnce


def add_iptables(commands: Subcommands) -> None:
    """istio-iptables' short flags; the defaults are what Istio's injector gives istio-init."""
    iptables = commands.add_parser(
        "iptables",
        help="a pod's capture rules, like istio-iptables",
        description="The nat rules Istio's istio-iptables installs in a pod, as iptables-restore input. "
        "Lists are comma-separated; '*' means all. IPv4 and REDIRECT mode only.",
        formatter_class=DefaultsOnce,
    )
    # (short, long, dest, default, help): istio-iptables' flags (tools/istio-iptables/pkg/cmd/root.go).
    istio_flags = (
        ("-p", "--envoy-port", "proxy_port", "15001", "outbound capture port"),
        ("-z", "--inbound-capture-port", "inbound_capture_port", "15006", "inbound capture port"),
        ("-e", "--inbound-tunnel-port", "inbound_tunnel_port", "15008", "tunnel port, never redirected"),
        ("-u", "--proxy-uid", "proxy_uid", "1337", "uids whose traffic is never captured"),
        ("-g", "--proxy-gid", "proxy_gid", "", "gids whose traffic is never captured (empty: the -u ids)"),
        (
            "-b",
            "--istio-inbound-ports",
            "inbound_ports",
            "*",
            "inbound ports redirected to the inbound capture port ('*': all, empty: none)",
        ),
        (
            "-d",
            "--istio-local-exclude-ports",
            "inbound_ports_exclude",
            "15090,15021,15020",
            "inbound ports not redirected (with -b '*')",
        ),
        (
            "-i",
            "--istio-service-cidr",
            "outbound_ip_ranges",
            "*",
            "outbound destinations redirected ('*': all, empty: none)",
        ),
        (
            "-x",
            "--istio-service-exclude-cidr",
            "outbound_ip_ranges_exclude",
            "",
            "outbound destinations not redirected",
        ),
        ("-q", "--istio-outbound-ports", "outbound_ports_include", "", "outbound ports always redirected"),
        (
            "-o",
            "--istio-local-outbound-ports-exclude",
            "outbound_ports_exclude",
            "",
            "outbound ports never redirected",
        ),
        (
            "-k",
            "--kube-virt-interfaces",
            "reroute_virtual_interfaces",
            "",
            "interfaces whose inbound traffic is treated as outbound",
        ),
        ("-c", "--istio-exclude-interfaces", "exclude_interfaces", "", "interfaces never captured"),
    )
    for short, long, dest, default, help_text in istio_flags:
        iptables.add_argument(short, long, dest=dest, default=default, help=help_text)
    iptables.add_argument(
        "-m",
        "--istio-inbound-interception-mode",
        dest="interception_mode",
        default="REDIRECT",
        choices=("REDIRECT",),
        help="inbound interception mode (TPROXY is not implemented)",
    )
    iptables.add_argument(
        "--apply",
        action="store_true",
        help="install the rules in the current network namespace "
        "(iptables-restore --noflush) instead of printing them",
    )
    iptables.set_defaults(command_spec=Command(iptables_options_from, _iptables))


def iptables_options_from(args: argparse.Namespace) -> IptablesOptions:
    """``pilot iptables`` flags as typed options (ValueError naming the flag of a bad value)."""
    from pilot.capture import command

    return command.options_from(args)


def _iptables(options: IptablesOptions) -> int:
    from pilot.capture import command

    return command.run(options)
