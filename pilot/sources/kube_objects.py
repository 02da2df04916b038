"""A Kubernetes object (the JSON the API server sends) → a ``ParseResult``, the way a file is read.

Shared by the watch (pilot.sources.kube) and the admission webhook (pilot.sources.kube_webhook) so that
the text a webhook denies with is exactly the text pilot logs for the same object.

Each object is one origin, ``kube:KIND/NAMESPACE/NAME``: a bad version of an object keeps its last good
one in the store, and a delete is ``store.remove_origin``. The JSON the API server produces has no
lines worth quoting, so errors carry no line number: ``kube:VirtualService/default/reviews:
VirtualService default/reviews: spec.http[0].route[0].weight: ...``.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from typing import Any

import orjson

from pilot.config.objects import FieldError, ParseResult
from pilot.config.parse import parse_text

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def origin_of(kind: str, namespace: str, name: str) -> str:
    """The store origin of one Kubernetes object: ``kube:VirtualService/default/reviews``."""
    return f"kube:{kind}/{namespace}/{name}"


def trimmed(obj: Mapping[str, Any]) -> dict[str, Any]:
    """``obj`` without what pilot never reads and what only costs memory: managedFields and kubectl's
    copy of the last applied object (a second copy of the spec, as a string)."""
    out = dict(obj)
    metadata = out.get("metadata")
    if isinstance(metadata, dict) and ("managedFields" in metadata or "annotations" in metadata):
        metadata = dict(metadata)
        metadata.pop("managedFields", None)
        annotations = metadata.get("annotations")
        if isinstance(annotations, dict) and LAST_APPLIED in annotations:
            metadata["annotations"] = {k: v for k, v in annotations.items() if k != LAST_APPLIED}
        out["metadata"] = metadata
    return out


def parse_object(obj: Mapping[str, Any], origin: str) -> ParseResult:
    """Parse and validate one object exactly as a file holding it would be; never raises."""
    try:
        text = orjson.dumps(trimmed(obj)).decode()
    except (TypeError, orjson.JSONEncodeError) as err:  # not JSON data: cannot come from the API server
        return ParseResult(origin, errors=(FieldError(origin, f"cannot read object: {err}"),), fatal=True)
    result = parse_text(text, origin=origin)
    errors = tuple(dataclasses.replace(error, line=None) for error in result.errors)
    return dataclasses.replace(result, errors=errors)


def log_errors(log: logging.Logger, errors: tuple[FieldError, ...]) -> None:
    """Log each problem as the folder source does: errors as warnings, warnings as info."""
    for error in errors:
        if error.severity == "error":
            log.warning("%s", error)
        else:
            log.info("%s", error)


__all__ = ["LAST_APPLIED", "log_errors", "origin_of", "parse_object", "trimmed"]
