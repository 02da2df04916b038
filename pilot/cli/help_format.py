"""How ``pilot --help`` and each subcommand's help lay out command names and flag defaults."""

from __future__ import annotations

import argparse


class CommandList(argparse.HelpFormatter):
    """``pilot --help``: each command's help on the line of its name. argparse measures subcommand
    names without the indent they are printed at, so a long one (``proxy-status``) wrapped."""

    def add_argument(self, action: argparse.Action) -> None:
        super().add_argument(action)
        if isinstance(action, argparse._SubParsersAction):
            for sub in action._get_subactions():
                width = (
                    len(self._format_action_invocation(sub))
                    + self._current_indent
                    + 2 * self._indent_increment
                )
                self._action_max_length = max(self._action_max_length, width)


class DefaultsOnce(argparse.ArgumentDefaultsHelpFormatter):
    """Each flag's default in its help, once: not when the help already says it, nor when it is
    None or False (the help says what absence means)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        quiet = action.default is None or action.default is False or action.default == argparse.SUPPRESS
        if "default" in text or quiet or not action.option_strings:
            return text
        return super()._get_help_string(action)
