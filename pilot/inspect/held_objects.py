"""A config object held back because a proxy rejected what it produced (``rejected_objects`` of
``/debug/syncz`` and ``/debug/convergence``, ``rejected`` of an object in ``/debug/configz``), as
proxy-status and explain print it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def held_object(rejection: Mapping[str, Any]) -> str:
    """``VirtualService default/alpha (routes/alpha.yaml:3)``: a held object and where it is."""
    where = _where(rejection)
    text = f"{rejection.get('kind')} {rejection.get('namespace')}/{rejection.get('name')}"
    return f"{text} ({where})" if where else text


def held_lines(rejection: Mapping[str, Any]) -> list[str]:
    """What a held object's note says: the object, what the view runs instead, the proxy's error."""
    held = rejection.get("held_revision")
    instead = f"runs revision {held}" if held is not None else "runs without it"
    return [
        f"held back: {held_object(rejection)} revision {rejection.get('rejected_revision')}, "
        f"rejected by {rejection.get('proxy')} in {str(rejection.get('type', '')).upper()} "
        f"{rejection.get('resource')}; the view {instead}",
        f"  error: {rejection.get('error')}",
    ]


def held_note(rejection: Mapping[str, Any]) -> str:
    """Why the route comes from an older version of its object: a proxy of this view rejected the
    newer one (``rejected`` of the object in ``/debug/configz``, pilot.push.holds)."""
    held, revision = rejection.get("held_revision"), rejection.get("rejected_revision")
    return (
        f"revision {revision} ({_where(rejection)}) was rejected by {rejection.get('proxy')} "
        f"({rejection.get('error')}); this proxy is served revision {held} until the object is edited"
    )


def _where(rejection: Mapping[str, Any]) -> str:
    """``file:line`` of the object (the file alone when the line is not known)."""
    origin = str(rejection.get("origin") or "")
    line = rejection.get("line")
    return f"{origin}:{line}" if origin and line else origin
