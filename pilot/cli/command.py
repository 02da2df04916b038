"""What a subcommand is: its typed options built from the parsed flags, and the handler that takes them."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeAlias, TypeVar

LOG_LEVELS = ("debug", "info", "warning", "error")

Options = TypeVar("Options")

# The ``commands`` that ``build_parser`` hands each subcommand's ``add_parser``.
Subcommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


@dataclass(frozen=True, slots=True)
class Command(Generic[Options]):
    """A subcommand: its typed options built from the parsed flags, and the handler that takes them.

    ``options`` raises ValueError for flags that contradict each other (a usage error, exit 2).
    """

    options: Callable[[argparse.Namespace], Options]
    handler: Callable[[Options], int]
