"""Install a rule set in the current network namespace with ``iptables-restore --noflush``.

``--noflush`` keeps every rule that is not Istio's, as istio-iptables does
(``executeIptablesRestoreCommand`` in tools/istio-iptables/pkg/capture/run.go). Run it inside the
pod's network namespace (``ip netns exec POD``, ``nsenter --net=...``): the rules of the namespace it
runs in are the ones changed. iptables-restore applies a table atomically, so a rejected rule leaves
the namespace as it was; applying twice fails because the ``ISTIO_*`` chains already exist.
"""

from __future__ import annotations

import re
import shutil
import subprocess

from pilot.capture.rules import RuleSet
from pilot.errors import ConfigError

IPTABLES_RESTORE = "iptables-restore"
TIMEOUT = 30.0


def apply(rules: RuleSet, binary: str = IPTABLES_RESTORE) -> None:
    """Install ``rules``; ConfigError with iptables-restore's own message when it refuses them."""
    path = shutil.which(binary)
    if path is None:
        raise ConfigError(f"{binary} not found: install the iptables package (Debian: iptables)")
    text = rules.restore_text()
    try:
        subprocess.run(
            [path, "--noflush"],
            input=text,
            text=True,
            capture_output=True,
            check=True,
            timeout=TIMEOUT,
        )
    except subprocess.CalledProcessError as err:
        message = err.stderr.strip() + quoted_line(err.stderr, text)
        raise ConfigError(f"{binary} failed (exit {err.returncode}): {message}") from None
    except subprocess.TimeoutExpired:
        raise ConfigError(f"{binary} did not finish in {TIMEOUT:g} s (xtables lock held?)") from None


def quoted_line(message: str, text: str) -> str:
    """`` (line N: RULE)`` when iptables-restore names the input line it refused, which it does by
    number only ("line 2 failed: Chain already exists.")."""
    found = re.search(r"line (\d+) failed", message)
    lines = text.splitlines()
    if found is None or not 0 < int(found.group(1)) <= len(lines):
        return ""
    return f" (line {found.group(1)}: {lines[int(found.group(1)) - 1]})"


__all__ = ["IPTABLES_RESTORE", "apply", "quoted_line"]
