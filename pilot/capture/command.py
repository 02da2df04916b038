"""``pilot iptables``: print or install one pod's capture rules, as Istio's istio-iptables does.

The flags are istio-iptables' own short flags (the long names are pilot's); ``args`` holds their
strings, parsed here so a bad value is reported with the flag that carried it.
"""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

from pilot.capture.apply import apply
from pilot.capture.options import CaptureOptions, from_flags
from pilot.capture.rules import redirect_rules
from pilot.errors import ConfigError

# argparse dest -> from_flags keyword (the same names).
FLAG_FIELDS = (
    "proxy_port",
    "inbound_capture_port",
    "inbound_tunnel_port",
    "proxy_uid",
    "proxy_gid",
    "interception_mode",
    "inbound_ports",
    "inbound_ports_exclude",
    "outbound_ip_ranges",
    "outbound_ip_ranges_exclude",
    "outbound_ports_include",
    "outbound_ports_exclude",
    "reroute_virtual_interfaces",
    "exclude_interfaces",
)


def options_from(args: argparse.Namespace) -> CaptureOptions:
    return from_flags(**{name: getattr(args, name) for name in FLAG_FIELDS})


def run(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Exit 0 when printed or applied, 1 when iptables-restore refused, 2 on a bad flag value."""
    target = out if out is not None else sys.stdout
    errors = err if err is not None else sys.stderr
    try:
        options = options_from(args)
    except ConfigError as error:
        print(f"pilot iptables: {error}", file=errors)
        return 2
    rules = redirect_rules(options)
    if not args.apply:
        target.write(rules.restore_text())
        return 0
    try:
        apply(rules)
    except ConfigError as error:
        print(f"pilot iptables: {error}", file=errors)
        return 1
    return 0


__all__ = ["FLAG_FIELDS", "options_from", "run"]
