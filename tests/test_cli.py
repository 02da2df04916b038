"""The ``pilot`` command line: flags, help, exit codes, and ``pilot serve`` as a real process."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from pilot.cli import BootstrapOptions, ValidateOptions, build_parser, main, settings_from
from pilot.demo import DemoOptions
from pilot.localmesh.loopback import free_port
from pilot.settings import Settings

DEADLINE = 30.0

LOOPBACK_PORTS = [
    "--xds-host",
    "127.0.0.1",
    "--xds-port",
    str(free_port()),  # 0 would turn the plain port off
    "--http-host",
    "127.0.0.1",
    "--http-port",
    "0",
]

SERVICE_ENTRY = """\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: httpbin, namespace: default}
spec:
  hosts: [httpbin.org]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: DNS
"""


def test_help_lists_the_subcommands(capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    subcommands = next(
        a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)
    ).choices
    assert {"serve", "proxy-status", "proxy-config", "analyze", "diff", "explain"} <= subcommands.keys()
    listed = {line.split()[0]: line for line in out.splitlines() if line.startswith("    ") and line.split()}
    # Every command on a line of its own, with its help on that same line (none wraps onto a second).
    assert listed.keys() == subcommands.keys(), out
    for line in listed.values():
        assert len(line.split()) > 2 and len(line) <= 80, line


def test_serve_help_lists_every_flag(capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit) as exit_info:
        main(["serve", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for flag in (
        "--config-dir",
        "--xds-host",
        "--xds-port",
        "--http-host",
        "--http-port",
        "--debounce-after",
        "--debounce-max",
        "--push-concurrency",
        "--log-level",
    ):
        assert flag in out


def test_serve_flags_become_settings():
    args = build_parser().parse_args(
        [
            "serve",
            "--config-dir",
            "conf",
            "--xds-host",
            "127.0.0.1",
            "--xds-port",
            "0",
            "--http-port",
            "0",
            "--debounce-after",
            "0.25",
            "--debounce-max",
            "3",
            "--push-concurrency",
            "7",
        ]
    )
    assert settings_from(args) == Settings(
        config_dir=Path("conf"),
        xds_host="127.0.0.1",
        xds_port=None,  # --xds-port 0: the plain port is off
        http_host="0.0.0.0",
        http_port=0,
        debounce_after=0.25,
        debounce_max=3.0,
        push_concurrency=7,
    )


def test_serve_defaults_are_istios():
    settings = settings_from(build_parser().parse_args(["serve"]))
    assert (settings.xds_port, settings.http_port) == (15010, 15014)
    assert (settings.debounce_after, settings.debounce_max) == (0.1, 10.0)
    assert settings.config_dir is None


@pytest.mark.parametrize(
    ("value", "age"),
    [(None, 1800.0), ("2.5", 2.5), ("0", None)],  # 0: connections never age out
)
def test_serve_max_connection_age(value: str | None, age: float | None):
    argv = ["serve"] if value is None else ["serve", "--max-connection-age", value]
    assert settings_from(build_parser().parse_args(argv)).max_connection_age == age


@pytest.mark.parametrize(
    "argv",
    [
        ["serve", "--max-connection-age", "-1"],
        ["serve", "--xds-port", "banana"],
        ["serve", "--xds-port", "70000"],
        ["serve", "--push-concurrency", "0"],
        ["serve", "--debounce-after", "-1"],
        ["serve", "--debounce-after", "5", "--debounce-max", "1"],
        ["serve", "--log-level", "loud"],
        ["serve", "--no-such-flag"],
        ["bootstrap", "--node-id", "x"],  # --xds-address is required
        [],  # a subcommand is required
    ],
)
def test_bad_flags_exit_2_with_argparse_message(argv: list[str], capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert "usage: pilot" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["serve", "--debounce-after", "5", "--debounce-max", "1"], "must be at least debounce_after"),
        (["serve", "--webhook-port", "15017"], "webhook needs webhook_cert and webhook_key"),
        (["serve", "--watch-namespaces", "a"], "watch_namespaces needs kube"),
    ],
)
def test_settings_that_contradict_each_other_are_a_one_line_usage_error(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
):
    """Settings holds the check; the command line reports its ValueError as argparse does."""
    with pytest.raises(ValueError, match=message):
        settings_from(build_parser().parse_args(argv))
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    last = err.splitlines()[-1]
    assert last.startswith("pilot: error: ") and message in last, err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("argv", "options"),
    [
        (["serve", "--xds-port", "0"], Settings(xds_port=None)),
        (["demo", "--duration", "5"], DemoOptions(duration=5.0)),
        (
            ["bootstrap", "--node-id", "n", "--xds-address", "pilot:15010", "--label", "a=b"],
            BootstrapOptions("n", "pilot:15010", label=(("a", "b"),)),
        ),
        (["validate", "a.yaml", "b"], ValidateOptions(("a.yaml", "b"))),
    ],
)
def test_each_subcommand_gets_frozen_options(argv: list[str], options: object):
    args = build_parser().parse_args(argv)
    built = args.command_spec.options(args)
    assert built == options
    assert dataclasses.is_dataclass(built)
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(built, dataclasses.fields(built)[0].name, None)


def test_demo_and_bootstrap_flags():
    demo = build_parser().parse_args(
        ["demo", "--duration", "5", "--xds-port", "1", "--http-port", "2", "--listen-port", "3"]
    )
    assert (demo.duration, demo.xds_port, demo.http_port, demo.listen_port) == (5.0, 1, 2, 3)
    bootstrap = build_parser().parse_args(
        ["bootstrap", "--node-id", "n", "--xds-address", "127.0.0.1:15010", "--delta", "--admin-port", "9901"]
    )
    assert (bootstrap.node_id, bootstrap.xds_address, bootstrap.delta, bootstrap.admin_port) == (
        "n",
        "127.0.0.1:15010",
        True,
        9901,
    )
    assert bootstrap.output == "json"


def test_bootstrap_prints_json(capsys: pytest.CaptureFixture[str]):
    assert main(["bootstrap", "--node-id", "front", "--xds-address", "127.0.0.1:15010"]) == 0
    config = json.loads(capsys.readouterr().out)
    assert config["node"]["id"] == "front"


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()
    except OSError:
        return 0, ""


def _wait_for(check, what: str, timeout: float = DEADLINE):
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_serve_runs_until_a_signal_and_exits_0(tmp_path: Path, signum: signal.Signals):
    (tmp_path / "se.yaml").write_text(SERVICE_ENTRY)
    log_path = tmp_path / "pilot.log"
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pilot",
                "serve",
                "--config-dir",
                str(tmp_path),
                *LOOPBACK_PORTS,
                "--log-level",
                "debug",
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:

            def http_port() -> int | None:
                if proc.poll() is not None:
                    raise AssertionError(f"pilot exited with {proc.returncode}:\n{log_path.read_text()}")
                match = re.search(r"on http://127\.0\.0\.1:(\d+)", log_path.read_text())
                return int(match.group(1)) if match else None

            port = _wait_for(http_port, "the HTTP address in the log")
            _wait_for(lambda: _get(port, "/ready")[0] == 200, "/ready")
            status, body = _get(port, "/debug/configz")
            assert status == 200
            assert [o["name"] for o in json.loads(body)["objects"]] == ["httpbin"]
            assert re.search(r"xDS \(ADS gRPC\) on 127\.0\.0\.1:\d+", log_path.read_text())
            proc.send_signal(signum)
            assert proc.wait(timeout=DEADLINE) == 0, log_path.read_text()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert "stopped" in log_path.read_text()


def test_serve_reports_a_missing_config_dir_and_exits_1(tmp_path: Path):
    result = subprocess.run(
        [sys.executable, "-m", "pilot", "serve", "--config-dir", str(tmp_path / "nope"), *LOOPBACK_PORTS],
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 1, result.stderr
    assert "not a directory" in result.stderr
    assert "Traceback" not in result.stderr
