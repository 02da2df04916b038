"""The rules pilot writes, compared with Istio's own golden files for the same flag sets.

tests/capture/istio_goldens/ holds Istio's files unchanged (see its README); each case below sets the
same fields as the case of that name in Istio's run_test.go (getCommonTestCases), starting from
istio-iptables' flagless defaults as Istio's constructTestConfig does.
"""

from __future__ import annotations

import ipaddress
from dataclasses import replace
from pathlib import Path

import pytest

from pilot.capture.options import ALL, ISTIO_IPTABLES_DEFAULTS, CaptureOptions, from_flags
from pilot.capture.rules import ISTIO_CHAINS, redirect_rules

GOLDENS = Path(__file__).parent / "istio_goldens"
TEN_EIGHT = (ipaddress.IPv4Network("10.0.0.0/8"),)

# Istio case name -> the same settings as CaptureOptions changes.
CASES: dict[str, dict[str, object]] = {
    "empty": {},
    "inbound-ports-include": {"inbound_ports": (32000, 31000)},
    "inbound-ports-wildcard": {"inbound_ports": ALL},
    "ipnets": {"outbound_ip_ranges": TEN_EIGHT},
    "kube-virt-interfaces": {"reroute_virtual_interfaces": ("eth1", "eth2"), "outbound_ip_ranges": ALL},
    "ipnets-with-kube-virt-interfaces": {
        "reroute_virtual_interfaces": ("eth1", "eth2"),
        "outbound_ip_ranges": TEN_EIGHT,
    },
    "basic-exclude-nic": {"exclude_interfaces": ("not-istio-nic",)},
    "outbound-ports-include": {"outbound_ports_include": (32000, 31000)},
    "outbound-owner-groups": {"owner_groups_include": ("java", "202")},
    "outbound-owner-groups-exclude": {"owner_groups_exclude": ("888", "ftp")},
    "host-ipv4-loopback-cidr": {"host_loopback": ipaddress.IPv4Interface("127.0.0.1/8")},
    # IPv6 cases: their first block is the IPv4 restore input; IPv6-only ranges leave IPv4 without any.
    "ipv6-virt-interfaces": {"inbound_ports": (4000, 5000), "reroute_virtual_interfaces": ("eth0", "eth1")},
    "ipv6-uid-gid": {
        "inbound_ports": (4000, 5000),
        "inbound_ports_exclude": (6000, 7000),
        "reroute_virtual_interfaces": ("eth0", "eth1"),
        "proxy_gids": ("1", "2"),
        "proxy_uids": ("3", "4"),
    },
}


def ipv4_restore_block(golden: str) -> str:
    """The first iptables-restore input in a golden file: from its first ``* table`` to its COMMIT."""
    lines = golden.splitlines()
    start = next(index for index, line in enumerate(lines) if line.startswith("* "))
    end = lines.index("COMMIT", start)
    return "\n".join(lines[start : end + 1]) + "\n"


def test_every_golden_file_has_a_case():
    assert sorted(path.stem for path in GOLDENS.glob("*.golden")) == sorted(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_rules_match_istios_golden_file(name: str):
    options = replace(ISTIO_IPTABLES_DEFAULTS, **CASES[name])  # type: ignore[arg-type]
    expected = ipv4_restore_block((GOLDENS / f"{name}.golden").read_text())
    assert redirect_rules(options).restore_text() == expected


def test_the_sidecar_defaults_are_the_injected_istio_init_arguments():
    """-i '*' -b '*' -d 15090,15021,15020, as the injector passes them. No Istio golden file has exactly
    this set, so this composes the two that do: inbound-ports-wildcard plus the -d RETURN rules
    (run.go handleInboundPortsInclude) and kube-virt-interfaces' final ISTIO_REDIRECT jump."""
    text = redirect_rules(CaptureOptions()).restore_text()
    wildcard = ipv4_restore_block((GOLDENS / "inbound-ports-wildcard.golden").read_text()).splitlines()
    at = wildcard.index("-A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT")
    excluded = [f"-A ISTIO_INBOUND -p tcp --dport {port} -j RETURN" for port in (15090, 15021, 15020)]
    expected = wildcard[:at] + excluded + wildcard[at:-1] + ["-A ISTIO_OUTPUT -j ISTIO_REDIRECT", "COMMIT"]
    assert text.splitlines() == expected
    assert from_flags() == CaptureOptions()


def test_every_chain_is_created_once_before_its_rules():
    lines = redirect_rules(CaptureOptions(reroute_virtual_interfaces=("eth1",))).restore_text().splitlines()
    assert [line for line in lines if line.startswith("-N")] == [f"-N {chain}" for chain in ISTIO_CHAINS]
    first_rule = next(index for index, line in enumerate(lines) if line.startswith(("-A", "-I")))
    assert all(index < first_rule for index, line in enumerate(lines) if line.startswith("-N"))


def test_a_loopback_include_range_captures_the_apps_loopback_traffic():
    """loopback-outbound-iprange (run.go: "If loopback explicitly set via OutboundIPRangesInclude, then
    don't return"); Istio's golden for it also has DNS capture, which pilot does not write."""
    loopback = (ipaddress.IPv4Network("127.1.2.3/32"),)
    text = redirect_rules(replace(ISTIO_IPTABLES_DEFAULTS, outbound_ip_ranges=loopback)).restore_text()
    assert "! --uid-owner" not in text and "! --gid-owner" not in text
    assert "-A ISTIO_OUTPUT -d 127.1.2.3/32 -j ISTIO_REDIRECT" in text


def test_excluded_outbound_ports_and_ranges_come_before_the_redirect():
    options = from_flags(
        outbound_ports_exclude="53,8443",
        outbound_ip_ranges_exclude="10.96.0.0/12,",
        outbound_ip_ranges="10.0.0.0/8",
    )
    lines = redirect_rules(options).restore_text().splitlines()
    assert lines.index("-A ISTIO_OUTPUT -p tcp --dport 53 -j RETURN") < lines.index(
        "-A ISTIO_OUTPUT -o lo -s 127.0.0.6/32 -j RETURN"
    )
    assert "-A ISTIO_OUTPUT -p udp --dport 8443 -j RETURN" in lines
    assert lines.index("-A ISTIO_OUTPUT -d 10.96.0.0/12 -j RETURN") < lines.index(
        "-A ISTIO_OUTPUT -d 10.0.0.0/8 -j ISTIO_REDIRECT"
    )


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"outbound_ip_ranges_exclude": "*"}, "-x: '*'"),
        ({"inbound_ports": "80,http"}, "-b: not a port: 'http'"),
        ({"inbound_ports_exclude": "70000"}, "-d: not a port: '70000'"),
        ({"proxy_port": "15001,15002"}, "-p: expected one port"),
        ({"outbound_ip_ranges": "2001:db8::/32"}, "IPv6 ranges are not implemented"),
        ({"outbound_ip_ranges": "10.0.0/33"}, "-i: not an IP range"),
        ({"interception_mode": "TPROXY"}, "'TPROXY' is not implemented"),
        ({"proxy_uid": ""}, "at least one proxy uid"),
    ],
)
def test_bad_flags_are_value_errors_naming_the_flag(flags: dict[str, str], message: str):
    with pytest.raises(ValueError, match=message.replace("*", r"\*")):
        from_flags(**flags)


def test_gids_default_to_the_uids_as_istio():
    assert from_flags(proxy_uid="3,4").gids == ("3", "4")
    assert from_flags(proxy_uid="3", proxy_gid="7").gids == ("7",)


def test_host_loopback_must_be_loopback():
    with pytest.raises(ValueError, match="loopback"):
        CaptureOptions(host_loopback=ipaddress.IPv4Interface("10.0.0.1/32"))
