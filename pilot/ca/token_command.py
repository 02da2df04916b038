"""``pilot token``: print a folder-mode service-account token signed with the CA directory's key.

The folder-mode stand-in for a Kubernetes projected service-account token: give it to a workload's
agent (``--token-file``) and the CA on the secure port accepts it as proof of NS/SA.
"""

from __future__ import annotations

import datetime
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from pilot.ca.identity import ServiceAccount
from pilot.ca.tokens import DEFAULT_AUDIENCE, issue_token, load_or_create_signing_key

DEFAULT_LIFETIME = datetime.timedelta(hours=1)
# Go duration syntax as Istio's flags take it, restricted to whole h/m/s: 1h, 30m, 1h30m, 90s, 3600.
_DURATION = re.compile(r"(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m)?(?:(?P<s>\d+)s)?")


def parse_duration(text: str) -> datetime.timedelta:
    """``1h``, ``30m``, ``1h30m``, ``90s`` or plain seconds → timedelta; ValueError otherwise."""
    match = _DURATION.fullmatch(text)
    if not text or (match is None and not text.isdigit()):
        raise ValueError(f"not a duration (like 1h, 30m, 90s): {text!r}")
    try:
        if text.isdigit():
            return datetime.timedelta(seconds=int(text))
        assert match is not None
        hours, minutes, seconds = (int(match.group(unit) or 0) for unit in "hms")
        return datetime.timedelta(hours=hours, minutes=minutes, seconds=seconds)
    except OverflowError:
        raise ValueError(f"duration too long: {text!r}") from None


@dataclass(frozen=True, slots=True)
class TokenOptions:
    """Flags of ``pilot token``."""

    ca_dir: Path
    account: ServiceAccount
    lifetime: datetime.timedelta = DEFAULT_LIFETIME
    audience: str = DEFAULT_AUDIENCE

    def __post_init__(self) -> None:
        if self.lifetime <= datetime.timedelta(0):
            raise ValueError("the token lifetime must be positive")


def run(options: TokenOptions, out: TextIO | None = None) -> int:
    """Print the token on ``out``; ConfigError (from the CA directory) propagates to the caller."""
    key = load_or_create_signing_key(options.ca_dir)
    print(issue_token(key, options.account, options.lifetime, options.audience), file=out or sys.stdout)
    return 0
