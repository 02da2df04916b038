"""What to capture: istio-iptables' settings as one frozen value, and the flag parsing that makes it.

Each field names the istio-iptables flag or environment variable it stands for
(https://github.com/istio/istio/blob/86c9f01fd735fb01d8192f5bcaf0d424afb7f14c/tools/istio-iptables/pkg/cmd/root.go,
tools/common/config/config.go). The defaults are the arguments Istio's sidecar injector gives the
``istio-init`` container (manifests/charts/istio-control/istio-discovery/files/injection-template.yaml):
``-p 15001 -z 15006 -u 1337 -m REDIRECT -i '*' -x '' -b '*' -d 15090,15021,15020``, so the default
value is the capture a sidecar pod gets. istio-iptables run without flags captures nothing:
``ISTIO_IPTABLES_DEFAULTS`` is that value, which Istio's golden tests start from.

Only IPv4 and REDIRECT mode are implemented: TPROXY, DNS capture (``--redirect-dns``), ``--drop-invalid``
and ip6tables rules are not. Values that are not valid raise ValueError, as ``pilot.settings.Settings``
does: the command line reports them as usage errors.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Literal

ALL: Literal["*"] = "*"
"""istio-iptables' wildcard: every port (``-b '*'``), every destination (``-i '*'``), every group."""

PortSelection = tuple[int, ...] | Literal["*"]
RangeSelection = tuple[ipaddress.IPv4Network, ...] | Literal["*"]
GroupSelection = tuple[str, ...] | Literal["*"]

REDIRECT = "REDIRECT"
INTERCEPTION_MODES = (REDIRECT,)

# Istio's sidecar ports (constants.go, injection-template.yaml): Envoy's Prometheus stats, the health
# port and the agent's status port are never redirected inbound.
DEFAULT_EXCLUDED_INBOUND_PORTS = (15090, 15021, 15020)
PROXY_UID = "1337"


@dataclass(frozen=True, slots=True)
class CaptureOptions:
    """One pod's capture, as istio-iptables is told it (flag in parentheses)."""

    proxy_port: int = 15001  # -p --envoy-port: outbound capture target (Envoy's virtualOutbound)
    inbound_capture_port: int = 15006  # -z --inbound-capture-port: inbound target (virtualInbound)
    inbound_tunnel_port: int = 15008  # -e --inbound-tunnel-port: HBONE, never redirected
    proxy_uids: tuple[str, ...] = (PROXY_UID,)  # -u --proxy-uid: the proxy's own traffic is not captured
    proxy_gids: tuple[str, ...] | None = None  # -g --proxy-gid; None: the same as proxy_uids, as Istio
    interception_mode: str = REDIRECT  # -m --istio-inbound-interception-mode
    inbound_ports: PortSelection = ALL  # -b --istio-inbound-ports; () captures no inbound traffic
    inbound_ports_exclude: tuple[int, ...] = DEFAULT_EXCLUDED_INBOUND_PORTS  # -d; only with -b '*'
    outbound_ip_ranges: RangeSelection = ALL  # -i --istio-service-cidr; () captures no outbound traffic
    outbound_ip_ranges_exclude: tuple[ipaddress.IPv4Network, ...] = ()  # -x --istio-service-exclude-cidr
    outbound_ports_include: tuple[int, ...] = ()  # -q --istio-outbound-ports
    outbound_ports_exclude: tuple[int, ...] = ()  # -o --istio-local-outbound-ports-exclude
    reroute_virtual_interfaces: tuple[str, ...] = ()  # -k --kube-virt-interfaces: inbound treated as outbound
    exclude_interfaces: tuple[str, ...] = ()  # -c --istio-exclude-interfaces: never captured
    owner_groups_include: GroupSelection = ALL  # env ISTIO_OUTBOUND_OWNER_GROUPS
    owner_groups_exclude: tuple[str, ...] = ()  # env ISTIO_OUTBOUND_OWNER_GROUPS_EXCLUDE
    # env ISTIO_OUTBOUND_IPV4_LOOPBACK_CIDR; an interface, not a network: Istio writes it as given,
    # host bits and all (127.0.0.1/8).
    host_loopback: ipaddress.IPv4Interface = ipaddress.IPv4Interface("127.0.0.1/32")

    def __post_init__(self) -> None:
        if self.interception_mode not in INTERCEPTION_MODES:
            raise ValueError(
                f"interception mode {self.interception_mode!r} is not implemented (only {REDIRECT})"
            )
        ports = [self.proxy_port, self.inbound_capture_port, self.inbound_tunnel_port]
        for group in (
            self.inbound_ports,
            self.inbound_ports_exclude,
            self.outbound_ports_include,
            self.outbound_ports_exclude,
        ):
            ports.extend(() if group == ALL else group)
        bad = [port for port in ports if not 0 < port < 65536]
        if bad:
            raise ValueError(f"not a port: {bad[0]}")
        # config.ValidateIPv4LoopbackCidr.
        if not self.host_loopback.ip.is_loopback or self.host_loopback.network.prefixlen < 8:
            raise ValueError(f"host loopback {self.host_loopback}: not IPv4 loopback with a /8 to /32 mask")
        if not self.proxy_uids:
            raise ValueError("at least one proxy uid is needed: the proxy's own traffic is never captured")

    @property
    def gids(self) -> tuple[str, ...]:
        """The proxy's groups: ``proxy_gids``, else its uids (config.go FillConfigFromEnvironment)."""
        return self.proxy_uids if self.proxy_gids is None else self.proxy_gids


# istio-iptables with no flags (config.DefaultConfig plus the env defaults): no inbound and no outbound
# capture, only the chains and the uid/gid/loopback exceptions. Istio's capture golden tests start here.
ISTIO_IPTABLES_DEFAULTS = CaptureOptions(inbound_ports=(), inbound_ports_exclude=(), outbound_ip_ranges=())


@dataclass(frozen=True, slots=True)
class IptablesOptions:
    """What ``pilot iptables`` is told: the capture, and whether to install it or print it."""

    capture: CaptureOptions
    apply: bool = False  # install in the current network namespace instead of printing


def split(text: str) -> tuple[str, ...]:
    """istio-iptables' comma lists (config.Split): empty items are dropped, so ``'6000,7000,'`` is two."""
    return tuple(item.strip() for item in text.split(",") if item.strip())


def parse_ports(text: str, flag: str) -> tuple[int, ...]:
    ports = []
    for item in split(text):
        if not item.isdigit() or not 0 < int(item) < 65536:
            raise ValueError(f"{flag}: not a port: {item!r}")
        ports.append(int(item))
    return tuple(ports)


def parse_port_selection(text: str, flag: str) -> PortSelection:
    return ALL if text.strip() == ALL else parse_ports(text, flag)


def parse_ranges(text: str, flag: str) -> tuple[ipaddress.IPv4Network, ...]:
    ranges = []
    for item in split(text):
        try:
            network = ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise ValueError(f"{flag}: not an IP range in CIDR form: {item!r}") from None
        if not isinstance(network, ipaddress.IPv4Network):
            raise ValueError(f"{flag}: {item}: IPv6 ranges are not implemented (IPv4 rules only)")
        ranges.append(network)
    return tuple(ranges)


def parse_range_selection(text: str, flag: str) -> RangeSelection:
    return ALL if text.strip() == ALL else parse_ranges(text, flag)


def from_flags(
    *,
    proxy_port: str = "15001",
    inbound_capture_port: str = "15006",
    inbound_tunnel_port: str = "15008",
    proxy_uid: str = PROXY_UID,
    proxy_gid: str = "",
    interception_mode: str = REDIRECT,
    inbound_ports: str = ALL,
    inbound_ports_exclude: str = ",".join(map(str, DEFAULT_EXCLUDED_INBOUND_PORTS)),
    outbound_ip_ranges: str = ALL,
    outbound_ip_ranges_exclude: str = "",
    outbound_ports_include: str = "",
    outbound_ports_exclude: str = "",
    reroute_virtual_interfaces: str = "",
    exclude_interfaces: str = "",
) -> CaptureOptions:
    """Options from istio-iptables' flag strings (ValueError on a bad value, naming the flag)."""
    if outbound_ip_ranges_exclude.strip() == ALL:
        # run.go: "invalid value for OUTBOUND_IP_RANGES_EXCLUDE".
        raise ValueError("-x: '*' is not a valid exclusion (exclude ranges, or capture nothing with -i '')")
    single = {"-p": proxy_port, "-z": inbound_capture_port, "-e": inbound_tunnel_port}
    ports = {flag: parse_ports(text, flag) for flag, text in single.items()}
    for flag, parsed in ports.items():
        if len(parsed) != 1:
            raise ValueError(f"{flag}: expected one port, got {single[flag]!r}")
    gids = split(proxy_gid)
    return CaptureOptions(
        proxy_port=ports["-p"][0],
        inbound_capture_port=ports["-z"][0],
        inbound_tunnel_port=ports["-e"][0],
        proxy_uids=split(proxy_uid),
        proxy_gids=gids or None,
        interception_mode=interception_mode,
        inbound_ports=parse_port_selection(inbound_ports, "-b"),
        inbound_ports_exclude=parse_ports(inbound_ports_exclude, "-d"),
        outbound_ip_ranges=parse_range_selection(outbound_ip_ranges, "-i"),
        outbound_ip_ranges_exclude=parse_ranges(outbound_ip_ranges_exclude, "-x"),
        outbound_ports_include=parse_ports(outbound_ports_include, "-q"),
        outbound_ports_exclude=parse_ports(outbound_ports_exclude, "-o"),
        reroute_virtual_interfaces=split(reroute_virtual_interfaces),
        exclude_interfaces=split(exclude_interfaces),
    )


__all__ = [
    "ALL",
    "DEFAULT_EXCLUDED_INBOUND_PORTS",
    "ISTIO_IPTABLES_DEFAULTS",
    "CaptureOptions",
    "GroupSelection",
    "IptablesOptions",
    "PortSelection",
    "RangeSelection",
    "from_flags",
    "parse_port_selection",
    "parse_ports",
    "parse_range_selection",
    "parse_ranges",
    "split",
]
