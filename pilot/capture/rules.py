"""The nat rules istio-iptables installs in REDIRECT mode, and their ``iptables-restore`` text.

The rule order and the restore text follow Istio's own code, rule for rule, so the output can be
compared with Istio's golden files:
- rules: ``IptablesConfigurator.Run`` in tools/istio-iptables/pkg/capture/run.go;
- text: ``IptablesRuleBuilder.buildRestore`` in tools/istio-iptables/pkg/builder/iptables_builder_impl.go
  (one ``-N`` per non-built-in chain in order of first use, then every rule in the order it was
  added, ``-I CHAIN 1`` rules included, tables sorted by name, each closed by ``COMMIT``).
Both at istio/istio 86c9f01fd735fb01d8192f5bcaf0d424afb7f14c.

What the chains do, in a pod:
- ``OUTPUT -j ISTIO_OUTPUT``: every locally sent packet; ``ISTIO_OUTPUT`` lets through the proxy's
  own uid/gid (no loop), loopback traffic of the app, excluded ports and ranges, and sends the rest to
  ``ISTIO_REDIRECT`` (REDIRECT to the proxy port, 15001).
- ``PREROUTING -p tcp -j ISTIO_INBOUND``: every arriving TCP packet; ``ISTIO_INBOUND`` lets through the
  tunnel port and the excluded ports and sends the rest to ``ISTIO_IN_REDIRECT`` (REDIRECT to 15006).
- The proxy's own connection to its pod's address leaves through ``lo``: the ``-o lo ... --uid-owner``
  rule sends it to ``ISTIO_IN_REDIRECT`` so that an app calling its own service still passes its
  sidecar's inbound side; the proxy avoids that for inbound passthrough by binding 127.0.0.6,
  which the first ``ISTIO_OUTPUT`` rule lets through.
"""

from __future__ import annotations

from dataclasses import dataclass

from pilot.capture.options import ALL, CaptureOptions

NAT = "nat"

ISTIO_INBOUND = "ISTIO_INBOUND"
ISTIO_REDIRECT = "ISTIO_REDIRECT"
ISTIO_IN_REDIRECT = "ISTIO_IN_REDIRECT"
ISTIO_OUTPUT = "ISTIO_OUTPUT"
ISTIO_CHAINS = (ISTIO_INBOUND, ISTIO_REDIRECT, ISTIO_IN_REDIRECT, ISTIO_OUTPUT)

# constants.BuiltInChainsAndTargetsMap: names that are never created with -N.
BUILT_IN = frozenset({"INPUT", "OUTPUT", "FORWARD", "PREROUTING", "POSTROUTING", "ACCEPT", "RETURN", "DROP"})

# Envoy's InboundPassthroughCluster binds its upstream connections to this address
# (pilot/pkg/networking/core/cluster_builder.go), so they reach the app without being captured again.
INBOUND_PASSTHROUGH_SOURCE = "127.0.0.6/32"


@dataclass(frozen=True)
class Rule:
    """One ``iptables-restore`` line: ``-A CHAIN ARGS`` or, with ``position``, ``-I CHAIN POSITION ARGS``."""

    table: str
    chain: str
    args: tuple[str, ...]
    position: int | None = None

    def line(self) -> str:
        head = ("-A", self.chain) if self.position is None else ("-I", self.chain, str(self.position))
        return " ".join(head + self.args)

    def jump_target(self) -> str | None:
        """The chain a rule ending in ``-j CHAIN`` jumps to (buildRestore creates those too)."""
        if len(self.args) >= 2 and self.args[-2] == "-j":
            return self.args[-1]
        return None


@dataclass(frozen=True)
class RuleSet:
    """Rules in the order they were added, which is the order iptables-restore applies them."""

    rules: tuple[Rule, ...]

    def restore_text(self) -> str:
        """The input of ``iptables-restore --noflush``, as Istio's BuildV4Restore writes it."""
        lines: dict[str, list[str]] = {}
        created: set[tuple[str, str]] = set()
        chains = [(rule.table, rule.chain) for rule in self.rules]
        chains += [(rule.table, target) for rule in self.rules if (target := rule.jump_target()) is not None]
        for table, chain in chains:
            if (table, chain) not in created:
                created.add((table, chain))
                if chain not in BUILT_IN:
                    lines.setdefault(table, []).append(f"-N {chain}")
        for rule in self.rules:
            lines.setdefault(rule.table, []).append(rule.line())
        out: list[str] = []
        for table in sorted(lines):
            out += [f"* {table}", *lines[table], "COMMIT"]
        return "".join(line + "\n" for line in out)


class _Builder:
    def __init__(self) -> None:
        self.rules: list[Rule] = []

    def append(self, chain: str, *args: str) -> None:
        self.rules.append(Rule(NAT, chain, args))

    def insert(self, chain: str, position: int, *args: str) -> None:
        self.rules.append(Rule(NAT, chain, args, position))


def redirect_rules(options: CaptureOptions) -> RuleSet:
    """Istio's nat rules for ``options`` (run.go ``Run``, REDIRECT mode, IPv4, no DNS capture)."""
    build = _Builder()
    loopback = str(options.host_loopback)

    # shortCircuitExcludeInterfaces, shortCircuitKubeInternalInterface.
    for interface in options.exclude_interfaces:
        build.append("PREROUTING", "-i", interface, "-j", "RETURN")
        build.append("OUTPUT", "-o", interface, "-j", "RETURN")
    for interface in options.reroute_virtual_interfaces:
        build.insert("PREROUTING", 1, "-i", interface, "-j", "RETURN")

    build.append(ISTIO_INBOUND, "-p", "tcp", "--dport", str(options.inbound_tunnel_port), "-j", "RETURN")
    build.append(ISTIO_REDIRECT, "-p", "tcp", "-j", "REDIRECT", "--to-ports", str(options.proxy_port))
    build.append(
        ISTIO_IN_REDIRECT, "-p", "tcp", "-j", "REDIRECT", "--to-ports", str(options.inbound_capture_port)
    )

    # handleInboundPortsInclude: the -d exclusions apply only with -b '*'.
    if options.inbound_ports:
        build.append("PREROUTING", "-p", "tcp", "-j", ISTIO_INBOUND)
        if options.inbound_ports == ALL:
            for port in options.inbound_ports_exclude:
                build.append(ISTIO_INBOUND, "-p", "tcp", "--dport", str(port), "-j", "RETURN")
            build.append(ISTIO_INBOUND, "-p", "tcp", "-j", ISTIO_IN_REDIRECT)
        else:
            for port in options.inbound_ports:
                build.append(ISTIO_INBOUND, "-p", "tcp", "--dport", str(port), "-j", ISTIO_IN_REDIRECT)

    build.append("OUTPUT", "-j", ISTIO_OUTPUT)
    for port in options.outbound_ports_exclude:
        build.append(ISTIO_OUTPUT, "-p", "tcp", "--dport", str(port), "-j", "RETURN")
        build.append(ISTIO_OUTPUT, "-p", "udp", "--dport", str(port), "-j", "RETURN")
    build.append(ISTIO_OUTPUT, "-o", "lo", "-s", INBOUND_PASSTHROUGH_SOURCE, "-j", "RETURN")

    # A loopback range among the -i ranges means the app's loopback traffic is meant to be captured.
    include = () if options.outbound_ip_ranges == ALL else options.outbound_ip_ranges
    keep_app_loopback = not any(network.network_address.is_loopback for network in include)
    for owner, ids in (("--uid-owner", options.proxy_uids), ("--gid-owner", options.gids)):
        for owner_id in ids:
            # The proxy calling its own pod's address (an app calling its own service through the
            # sidecar) goes through the inbound side; the app's own loopback traffic is left alone;
            # everything else the proxy sends is never captured.
            build.append(
                ISTIO_OUTPUT,
                "-o",
                "lo",
                "!",
                "-d",
                loopback,
                "-p",
                "tcp",
                "!",
                "--dport",
                str(options.inbound_tunnel_port),
                "-m",
                "owner",
                owner,
                owner_id,
                "-j",
                ISTIO_IN_REDIRECT,
            )
            if keep_app_loopback:
                build.append(ISTIO_OUTPUT, "-o", "lo", "-m", "owner", "!", owner, owner_id, "-j", "RETURN")
            build.append(ISTIO_OUTPUT, "-m", "owner", owner, owner_id, "-j", "RETURN")

    # handleCaptureByOwnerGroup (config.ParseInterceptFilter).
    if options.owner_groups_include == ALL:
        for group in options.owner_groups_exclude:
            build.append(ISTIO_OUTPUT, "-m", "owner", "--gid-owner", group, "-j", "RETURN")
    else:
        matchers = [
            arg
            for group in options.owner_groups_include
            for arg in ("-m", "owner", "!", "--gid-owner", group)
        ]
        build.append(ISTIO_OUTPUT, *matchers, "-j", "RETURN")

    build.append(ISTIO_OUTPUT, "-d", loopback, "-j", "RETURN")
    for network in options.outbound_ip_ranges_exclude:
        build.append(ISTIO_OUTPUT, "-d", str(network), "-j", "RETURN")
    for port in options.outbound_ports_include:
        build.append(ISTIO_OUTPUT, "-p", "tcp", "--dport", str(port), "-j", ISTIO_REDIRECT)

    # handleOutboundIncludeRules.
    if options.outbound_ip_ranges == ALL:
        build.append(ISTIO_OUTPUT, "-j", ISTIO_REDIRECT)
        for interface in options.reroute_virtual_interfaces:
            build.insert("PREROUTING", 1, "-i", interface, "-j", ISTIO_REDIRECT)
    else:
        for network in options.outbound_ip_ranges:
            for interface in options.reroute_virtual_interfaces:
                build.insert("PREROUTING", 1, "-i", interface, "-d", str(network), "-j", ISTIO_REDIRECT)
            build.append(ISTIO_OUTPUT, "-d", str(network), "-j", ISTIO_REDIRECT)

    return RuleSet(tuple(build.rules))


__all__ = [
    "BUILT_IN",
    "INBOUND_PASSTHROUGH_SOURCE",
    "ISTIO_CHAINS",
    "ISTIO_INBOUND",
    "ISTIO_IN_REDIRECT",
    "ISTIO_OUTPUT",
    "ISTIO_REDIRECT",
    "Rule",
    "RuleSet",
    "redirect_rules",
]
