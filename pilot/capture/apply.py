"""Install a rule set in the current network namespace with ``iptables-restore --noflush``.

``--noflush`` keeps every rule that is not Istio's, as istio-iptables does
(``executeIptablesRestoreCommand`` in tools/istio-iptables/pkg/capture/run.go). Run it inside the
pod's network namespace (``ip netns exec POD``, ``nsenter --net=...``): the rules of the namespace it
runs in are the ones changed. iptables-restore applies a table atomically, so a rejected rule leaves
the namespace as it was; applying twice fails because the ``ISTIO_*`` chains already exist.
"""

from __future__ import annotations

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
    try:
        subprocess.run(
            [path, "--noflush"],
            input=rules.restore_text(),
            text=True,
            capture_output=True,
            check=True,
            timeout=TIMEOUT,
        )
    except subprocess.CalledProcessError as err:
        raise ConfigError(f"{binary} failed (exit {err.returncode}): {err.stderr.strip()}") from None
    except subprocess.TimeoutExpired:
        raise ConfigError(f"{binary} did not finish in {TIMEOUT:g} s (xtables lock held?)") from None


__all__ = ["IPTABLES_RESTORE", "apply"]
