"""Every flag of every subcommand, given a bad value, ends in a one-line usage error, never a traceback."""

from __future__ import annotations

import argparse
import contextlib
import io

import pytest

from pilot.cli import Command, build_parser

BAD_VALUES = ("-5", "0", "not-a-value", "", "99999999999999999999", "nan", "1e400")


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("pilot has no subcommands")


def plausible(action: argparse.Action) -> str:
    """A value a required flag accepts, so the flag under test is what decides the outcome."""
    if action.choices:
        return str(next(iter(action.choices)))
    if "address" in action.dest:
        return "127.0.0.1:15010"
    if action.type in (int, float) or "port" in action.dest:
        return "1"
    return "x"


def baseline(parser: argparse.ArgumentParser) -> list[str]:
    args: list[str] = []
    for action in parser._actions:
        if action.required and action.option_strings:
            args += [action.option_strings[0], plausible(action)]
    for action in parser._actions:
        if not action.option_strings and action.required and action.nargs not in ("*", "?"):
            args.append(plausible(action))
    return args


def valued_flags(parser: argparse.ArgumentParser) -> list[str]:
    return [
        action.option_strings[-1]
        for action in parser._actions
        if action.option_strings and action.nargs != 0 and not isinstance(action, argparse._HelpAction)
    ]


def numeric(parser: argparse.ArgumentParser, flag: str) -> bool:
    """A flag whose value is a number (its type is int, float or one of cli's numeric parsers)."""
    for action in parser._actions:
        if flag in action.option_strings:
            name = getattr(action.type, "__name__", "")
            return action.type in (int, float) or name in {
                "integer",
                "number",
                "count",
                "non_negative",
                "port",
                "positive",
            }
    return False


CASES = [(name, flag) for name, sub in sorted(subcommands().items()) for flag in valued_flags(sub)]


def test_every_subcommand_has_valued_flags_to_check() -> None:
    assert {name for name, _ in CASES} >= {"serve", "demo", "bootstrap", "iptables", "token"}


@pytest.mark.parametrize(("command", "flag"), CASES, ids=[f"{c} {f}" for c, f in CASES])
def test_a_bad_value_is_a_usage_error(command: str, flag: str) -> None:
    base = baseline(subcommands()[command])
    for value in BAD_VALUES:
        argv = [command, *base, f"{flag}={value}"]
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr):
            try:
                args = build_parser().parse_args(argv)
            except SystemExit as exit:
                assert exit.code == 2, argv
                assert "invalid _" not in stderr.getvalue(), stderr.getvalue()  # the parser's name leaked
                assert "Traceback" not in stderr.getvalue()
                assert stderr.getvalue().strip().splitlines()[-1].startswith("pilot"), stderr.getvalue()
                continue
            must_refuse = numeric(subcommands()[command], flag) and value in ("not-a-value", "nan", "1e400")
            spec: Command[object] = args.command_spec
            try:
                spec.options(args)  # main() turns a ValueError into a usage error
            except ValueError as err:
                assert str(err) and "\n" not in str(err).strip(), (argv, str(err))
            else:
                assert not must_refuse, f"{argv} was accepted"


def test_pilot_help_lists_every_command_on_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    text = build_parser().format_help()
    listed = text.split("COMMAND\n", 1)[1].split("\n\n", 1)[0].splitlines()
    names = [line.split()[0] for line in listed]
    assert names == list(subcommands()), listed
    assert all(len(line) <= 80 and len(line.split(None, 1)) == 2 for line in listed), listed
