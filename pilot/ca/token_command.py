"""``pilot token``: print a folder-mode service-account token signed with the CA directory's key.

The folder-mode stand-in for a Kubernetes projected service-account token: give it to a workload's
agent (``--token-file``) and the CA on the secure port accepts it as proof of NS/SA.
"""

from __future__ import annotations

import datetime
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from pilot.ca.identity import ServiceAccount
from pilot.ca.tokens import DEFAULT_AUDIENCE, issue_token, load_or_create_signing_key

DEFAULT_LIFETIME = datetime.timedelta(hours=1)


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
