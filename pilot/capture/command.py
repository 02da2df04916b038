"""``pilot iptables``: print or install one pod's capture rules, as Istio's istio-iptables does.

The flags are istio-iptables' own, short and long (tools/istio-iptables/pkg/cmd/root.go).
``options_from`` turns their strings into ``IptablesOptions`` (ValueError naming the flag of a bad
value: a usage error); ``run`` takes only those typed options.
"""

from __future__ import annotations

import argparse
import inspect
import sys
from typing import TextIO

from pilot.capture.apply import apply
from pilot.capture.options import IptablesOptions, from_flags
from pilot.capture.rules import redirect_rules
from pilot.errors import ConfigError

# The argparse dests are from_flags' keyword names (pilot/cli/iptables.py registers them).
FLAG_FIELDS = tuple(inspect.signature(from_flags).parameters)


def options_from(args: argparse.Namespace) -> IptablesOptions:
    """``pilot iptables`` flags as typed options (ValueError for a bad value, naming its flag)."""
    capture = from_flags(**{name: getattr(args, name) for name in FLAG_FIELDS})
    return IptablesOptions(capture=capture, apply=args.apply)


def run(options: IptablesOptions, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Exit 0 when printed or applied, 1 when the rules could not be installed."""
    rules = redirect_rules(options.capture)
    if not options.apply:
        (out if out is not None else sys.stdout).write(rules.restore_text())
        return 0
    try:
        apply(rules)
    except ConfigError as error:
        print(f"pilot iptables: {error}", file=err if err is not None else sys.stderr)
        return 1
    return 0


__all__ = ["FLAG_FIELDS", "options_from", "run"]
