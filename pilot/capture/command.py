"""``pilot iptables``: print or install one pod's capture rules, as Istio's istio-iptables does.

The flags are istio-iptables' own, short and long (tools/istio-iptables/pkg/cmd/root.go); ``args``
holds their strings, parsed here so a bad value is reported with the flag that carried it.
"""

from __future__ import annotations

import argparse
import inspect
import sys
from typing import TextIO

from pilot.capture.apply import apply
from pilot.capture.options import CaptureOptions, from_flags
from pilot.capture.rules import redirect_rules
from pilot.errors import ConfigError

# The argparse dests are from_flags' keyword names (pilot/cli.py registers them).
FLAG_FIELDS = tuple(inspect.signature(from_flags).parameters)


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
