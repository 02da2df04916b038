"""The store's objects grouped by kind, and istiod's order among objects of one kind (what
``PushContext.build`` and a context built from edits read them through)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from pilot._gen import security_pb2 as sec
from pilot.config import kinds
from pilot.config.objects import ConfigObject, SpecT


def by_key(obj: ConfigObject) -> tuple[str, str, str]:
    """``obj.key``'s order as a plain tuple: compared in C, not by the dataclass's ``__lt__``."""
    key = obj.key
    return key.kind, key.namespace, key.name


def by_precedence(obj: ConfigObject) -> tuple[bool, datetime, str, str]:
    return obj.precedence


def of_kind(
    info: kinds.KindInfo[SpecT], by_kind: Mapping[str, list[ConfigObject]]
) -> list[ConfigObject[SpecT]]:
    """The objects of ``info``'s kind, typed by their spec."""
    return [obj for obj in by_kind.get(info.kind, ()) if info.holds(obj)]


def peer_authentications_of(
    by_kind: Mapping[str, list[ConfigObject]],
) -> tuple[ConfigObject[sec.PeerAuthentication], ...]:
    return tuple(sorted(of_kind(kinds.PEER_AUTHENTICATION_INFO, by_kind), key=by_precedence))


def authorization_policies_of(
    by_kind: Mapping[str, list[ConfigObject]],
) -> tuple[ConfigObject[sec.AuthorizationPolicy], ...]:
    return tuple(sorted(of_kind(kinds.AUTHORIZATION_POLICY_INFO, by_kind), key=by_precedence))
