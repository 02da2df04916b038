"""``pilot iptables``: flags as istio-iptables names them, printed rules, exit codes."""

from __future__ import annotations

import pytest

from pilot.capture.options import CaptureOptions, from_flags
from pilot.capture.rules import redirect_rules
from pilot.cli import build_parser, main


def test_without_flags_it_prints_a_sidecar_pods_rules(capsys: pytest.CaptureFixture[str]):
    assert main(["iptables"]) == 0
    assert capsys.readouterr().out == redirect_rules(CaptureOptions()).restore_text()


def test_istio_init_arguments_parse_to_the_same_options():
    # The injector's istio-init arguments (injection-template.yaml), short flags as istio-iptables has them.
    args = build_parser().parse_args(
        [
            "iptables",
            "-p",
            "15001",
            "-z",
            "15006",
            "-u",
            "1337",
            "-m",
            "REDIRECT",
            "-i",
            "*",
            "-x",
            "",
            "-b",
            "*",
            "-d",
            "15090,15021,15020",
            "-o",
            "9000",
            "-k",
            "eth1",
            "-c",
            "eth2",
            "-q",
            "25",
            "-g",
            "7",
        ]
    )
    from pilot.capture.command import options_from

    assert options_from(args).capture == from_flags(
        outbound_ports_exclude="9000",
        reroute_virtual_interfaces="eth1",
        exclude_interfaces="eth2",
        outbound_ports_include="25",
        proxy_gid="7",
    )


def test_long_flags_set_the_same_fields(capsys: pytest.CaptureFixture[str]):
    assert (
        main(
            [
                "iptables",
                "--envoy-port",
                "16001",
                "--istio-inbound-ports",
                "",
                "--istio-service-cidr",
                "10.0.0.0/8",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 16001" in out
    assert "PREROUTING" not in out
    assert "-A ISTIO_OUTPUT -d 10.0.0.0/8 -j ISTIO_REDIRECT" in out


def exit_code(argv: list[str]) -> int | str | None:
    """``main``'s exit code, returned or raised (argparse's usage errors exit)."""
    try:
        return main(argv)
    except SystemExit as exit_info:
        return exit_info.code


def test_a_bad_value_exits_2_naming_the_flag(capsys: pytest.CaptureFixture[str]):
    assert exit_code(["iptables", "-b", "80,http"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "-b: not a port: 'http'" in captured.err


def test_tproxy_is_refused_by_the_parser(capsys: pytest.CaptureFixture[str]):
    assert exit_code(["iptables", "-m", "TPROXY"]) == 2
    assert "invalid choice: 'TPROXY'" in capsys.readouterr().err


def test_a_refused_line_is_quoted_from_the_input():
    from pilot.capture.apply import quoted_line

    text = "* nat\n-N ISTIO_INBOUND\nCOMMIT\n"
    assert quoted_line("iptables-restore: line 2 failed: Chain already exists.", text) == (
        " (line 2: -N ISTIO_INBOUND)"
    )
    assert quoted_line("iptables-restore: line 9 failed", text) == ""
    assert quoted_line("Permission denied (you must be root)", text) == ""
