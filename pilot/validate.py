"""``pilot validate FILE... | -``: check Istio YAML the way pilot would load it, like ``istioctl validate``.

Every file (``-`` is standard input; a folder means the YAML/JSON files under it) goes through the
same parser and validation as a watched config folder. Each error and warning is printed with its
file and line, the object (kind namespace/name) and the field path. Exit status: 0 when no file has an
error (warnings allowed), 1 otherwise; files that cannot be read count as errors.
"""

from __future__ import annotations

import dataclasses
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol, TextIO

from pilot.config import kinds
from pilot.config.limits import DEFAULT_LIMITS, ParseLimits
from pilot.config.objects import ConfigObject, FieldError, ParseResult
from pilot.config.parse import parse_text, too_large
from pilot.config.validation.grpc_clients import grpc_client_warnings, grpc_tls_warnings

STDIN = "-"
STDIN_ORIGIN = "<stdin>"
SUFFIXES = (".yaml", ".yml", ".json")


def expand(paths: Iterable[str]) -> Iterator[str]:
    """The given paths, with folders replaced by the YAML/JSON files under them (sorted)."""
    for path in paths:
        folder = Path(path)
        if path != STDIN and folder.is_dir():
            yield from sorted(str(p) for p in folder.rglob("*") if p.is_file() and p.suffix in SUFFIXES)
        else:
            yield path


def check(path: str, stdin: TextIO, limits: ParseLimits = DEFAULT_LIMITS) -> ParseResult:
    """Parse one file (``-``: ``stdin``); an unreadable file is a fatal result, never an exception."""
    if path == STDIN:
        return parse_text(stdin.read(limits.file_bytes + 1), STDIN_ORIGIN, limits)
    try:
        if Path(path).stat().st_size > limits.file_bytes:  # refused before it is read
            return ParseResult(path, errors=(too_large(path, limits.file_bytes),), fatal=True)
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
        return ParseResult(path, errors=(FieldError(path, f"cannot read file: {reason}"),), fatal=True)
    return parse_text(text, path, limits)


def describe(problem: FieldError) -> str:
    """``error: FILE:LINE: Kind ns/name: path: message`` (``warning:`` for warnings)."""
    text = str(problem).removesuffix(" (warning)")
    return f"{problem.severity}: {text}"


def report(results: Iterable[ParseResult], out: TextIO) -> int:
    """Print every problem of every result, then a summary; the exit status."""
    files = failed = errors = warnings = 0
    for result in results:
        files += 1
        problems = sorted(result.errors, key=lambda p: (p.line or 0, p.path))
        for problem in problems:
            print(describe(problem), file=out)
        file_errors = sum(1 for p in problems if p.severity == "error")
        errors += file_errors
        warnings += len(problems) - file_errors
        if file_errors or result.fatal:
            failed += 1
        else:
            # Kubernetes Services, EndpointSlices and Pods count too (a Pod is also its identity object).
            count = len({obj.key for obj in result.objects} | {core.key for core in result.core})
            print(f'"{result.origin}" is valid ({_plural(count, "object")}{_skipped(result)})', file=out)
    status = "invalid" if failed else "valid"
    print(f"{files} file(s) {status}: {errors} error(s), {warnings} warning(s)", file=out)
    return 1 if failed else 0


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _skipped(result: ParseResult) -> str:
    """``, 3 skipped (Deployment x2, ServiceAccount)``: objects of other APIs, which pilot does not read."""
    if not result.skipped:
        return ""
    counts = Counter(result.skipped)
    kinds = ", ".join(kind if n == 1 else f"{kind} x{n}" for kind, n in sorted(counts.items()))
    return f", {len(result.skipped)} skipped: {kinds}"


class Files(Protocol):
    """The ``validate`` subcommand's options (pilot.cli.validate.ValidateOptions)."""

    @property
    def files(self) -> Sequence[str]: ...

    @property
    def limits(self) -> ParseLimits: ...

    @property
    def grpc(self) -> bool: ...


# What a proxyless gRPC server does not enforce of an AuthorizationPolicy: that is the translator's
# knowledge (pilot.translate.grpc_authz_warnings), which this layer does not import; pilot.cli.validate
# passes it.
PolicyWarnings = Callable[[ConfigObject[Any]], Sequence[FieldError]]


def run(
    args: Files,
    stdin: TextIO | None = None,
    out: TextIO | None = None,
    policy_warnings: PolicyWarnings | None = None,
) -> int:
    """The ``validate`` subcommand: ``args.files`` is a list of paths, ``-`` for standard input;
    with ``args.grpc``, ``policy_warnings`` are an AuthorizationPolicy's warnings too."""
    source = stdin if stdin is not None else sys.stdin
    target = out if out is not None else sys.stdout
    paths = list(expand(args.files)) or [STDIN]
    results = (check(path, source, args.limits) for path in paths)
    if args.grpc:
        results = (with_grpc_warnings(result, policy_warnings) for result in results)
    return report(results, target)


def with_grpc_warnings(result: ParseResult, policy_warnings: PolicyWarnings | None = None) -> ParseResult:
    """``result`` with a warning for every VirtualService field, and every DestinationRule TLS
    setting, proxyless gRPC clients cannot honour, and (``policy_warnings``) every
    AuthorizationPolicy part proxyless gRPC servers do not enforce."""
    extra: list[FieldError] = []
    for obj in result.objects:
        if kinds.VIRTUAL_SERVICE_INFO.holds(obj):
            extra += grpc_client_warnings(obj)
        elif kinds.DESTINATION_RULE_INFO.holds(obj):
            extra += grpc_tls_warnings(obj)
        elif policy_warnings is not None and kinds.AUTHORIZATION_POLICY_INFO.holds(obj):
            extra += policy_warnings(obj)
    return dataclasses.replace(result, errors=(*result.errors, *extra)) if extra else result


__all__ = ["check", "describe", "expand", "report", "run"]
