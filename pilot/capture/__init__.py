"""Traffic capture: the iptables rules that send a pod's traffic through its sidecar, as Istio's
istio-iptables (``istio-init``, ``pilot-agent istio-iptables``) writes them in REDIRECT mode.

- ``options``: ``CaptureOptions``, istio-iptables' flags as one frozen value;
- ``rules``: ``redirect_rules(options) -> RuleSet``, and ``RuleSet.restore_text()`` for iptables-restore;
- ``apply``: install a rule set in the current network namespace;
- ``command``: the ``pilot iptables`` subcommand.

Imports nothing of pilot but ``errors``: capture is set up before the proxy starts and knows nothing
of config or xDS.
"""

from pilot.capture.options import CaptureOptions
from pilot.capture.rules import RuleSet, redirect_rules

__all__ = ["CaptureOptions", "RuleSet", "redirect_rules"]
