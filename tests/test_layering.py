"""The import table of docs/internals.md, enforced by reading every module's imports with ast.

Imports inside functions and under TYPE_CHECKING count too: a layer is a layer. The leaves
``errors``, ``metrics`` and ``log`` may be imported from anywhere (docs/internals.md; errors is the
one exception tree every layer raises from).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path

import pytest

PILOT = Path(__file__).resolve().parent.parent / "pilot"

LEAVES_FOR_EVERYONE = frozenset({"errors", "metrics", "log"})


@dataclass(frozen=True)
class Rule:
    """``may``: pilot modules/packages it may import (None: everything); ``never``: external modules."""

    may: frozenset[str] | None
    never: frozenset[str] = field(default_factory=frozenset)


def rule(*may: str, never: tuple[str, ...] = ()) -> Rule:
    return Rule(frozenset(may), frozenset(never))


EVERYTHING = Rule(None)

# docs/internals.md, "may import from pilot" / "must never import".
TABLE: dict[str, Rule] = {
    "xds": rule(),
    "_gen": rule(),
    "errors": rule(),
    "metrics": rule(),
    "log": rule(),
    "settings": rule(),
    # argparse ``type=`` functions of every subcommand's flags.
    "flag_values": rule(),
    "config": rule("errors", "_gen", never=("grpc",)),
    # The sources read the world (files, the Kubernetes API, JWKS over HTTP) into the store.
    "sources": rule("config", "errors"),
    # Translation does no I/O: the JWKS it inlines were fetched by a source (pilot.sources.jwks) and
    # reach it in the push context, so it never imports an HTTP client.
    "translate": rule("config", "xds", "_gen", "cache.snapshot", never=("asyncio", "grpc", "aiohttp")),
    "cache": rule("xds", never=("grpc",)),
    # settings too: the debouncer checks its bounds with the settings' own check.
    "push": rule("config", "translate", "cache", "settings"),
    "server": rule("cache", "xds", "errors"),
    # xds too: the debug views name types by their type URL (pilot.xds.types).
    "debug": rule("server", "cache", "config", "xds"),
    "app": EVERYTHING,
    "cli": EVERYTHING,
    "demo": EVERYTHING,
    # The process harness (Envoy, backends, pilot serve, free ports, polling): it starts a pilot
    # from the outside, so it may build a bootstrap and nothing else of pilot. Of the product only
    # demo imports it (test_only_the_demo_imports_the_harness); tests and bench import it too.
    "localmesh": rule("bootstrap", never=("grpc",)),
    "bootstrap": EVERYTHING,
    # `pilot bootstrap --grpc`: the gRPC xDS bootstrap, reading the node id as translation does.
    "grpc_bootstrap": rule("bootstrap", "translate", never=("grpc", "asyncio")),
    # `pilot validate`: the config layer's parser and validation, nothing that serves or translates.
    "validate": rule("config", "errors", never=("grpc", "asyncio")),
    # `pilot iptables`: istio-iptables' rules; set up before any proxy runs, it knows no config or xDS.
    "capture": rule("errors", never=("grpc", "asyncio")),
    # What pilot reports on each object's status (written back by pilot.sources.kube_status): the
    # Gateway API conversion's status, the analyzers' messages, and which proxies run which version
    # (read from the server's frozen stream status and the cached snapshots, structurally), and the
    # objects a proxy rejected (pilot.push.holds' reports).
    "status": rule("config", "inspect", "cache.snapshot", "push.holds", never=("grpc", "asyncio")),
    "__main__": EVERYTHING,
    # The operator's commands (pilot.inspect): proxy-status and proxy-config read pilot only over
    # HTTP; analyze reads a folder with the config layer (through `pilot validate`'s reader); diff
    # translates locally with pilot's own translator. Never the server, cache store or push.
    "inspect": rule(
        "config", "validate", "translate", "cache.snapshot", "xds", "_gen", never=("grpc", "asyncio")
    ),
    # The mesh CA: certificates and tokens, no xDS, no config; grpc only in the two modules of the
    # secure port (the IstioCertificateService servicer and its TLS credentials), which may also
    # import the generated CA API.
    "ca": rule("errors", never=("grpc",)),
    "ca.csr_service": rule("ca", "_gen.ca_pb2", "_gen.ca_pb2_grpc"),
    "ca.server_credentials": rule("ca"),
    # `pilot agent` (the pilot-agent role): a client of the secure port (the CA's API and ADS as
    # bytes) that writes Envoy's bootstrap, or a proxyless application's gRPC bootstrap; it knows
    # nothing of config, translation or the server.
    "agent": rule(
        "ca", "_gen.ca_pb2", "_gen.ca_pb2_grpc", "xds", "bootstrap", "grpc_bootstrap", "flag_values"
    ),
    "__init__": rule(),
}


def modules() -> list[Path]:
    return sorted(PILOT.rglob("*.py"))


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PILOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(path: Path) -> str:
    """``config`` for pilot/config/store.py, ``app`` for pilot/app.py, ``__init__`` for pilot/__init__.py;
    a module with its own row (``ca.csr_service``) is its own layer."""
    relative = path.relative_to(PILOT)
    module = ".".join(relative.with_suffix("").parts)
    if module in TABLE:
        return module
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


def is_module(dotted: str) -> bool:
    target = PILOT.parent.joinpath(*dotted.split("."))
    return target.with_suffix(".py").is_file() or (target / "__init__.py").is_file()


def imports(path: Path) -> list[tuple[int, str]]:
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    return imports_in(path.read_text(), package)


def imports_in(source: str, package: str) -> list[tuple[int, str]]:
    """(line, absolute dotted name) of every import; ``from pkg import mod`` resolves to pkg.mod."""
    tree = ast.parse(source)
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            for alias in node.names:
                candidate = f"{module}.{alias.name}"
                found.append((node.lineno, candidate if is_module(candidate) else module))
    return found


def violation(layer: str, target: str) -> str | None:
    table_rule = TABLE[layer]
    top = target.split(".")[0]
    if top != "pilot":
        return f"{layer} must never import {top}" if top in table_rule.never else None
    inner = target.removeprefix("pilot").removeprefix(".")
    if not inner or table_rule.may is None:
        return None
    target_layer = inner if inner in TABLE else inner.split(".")[0]
    if target_layer == layer or target_layer in LEAVES_FOR_EVERYONE:
        return None
    if any(inner == allowed or inner.startswith(allowed + ".") for allowed in table_rule.may):
        return None
    return f"{layer} may not import pilot.{inner}"


def test_every_layer_is_in_the_table():
    unknown = sorted({layer_of(path) for path in modules()} - TABLE.keys())
    assert not unknown, f"add these to docs/internals.md and tests/test_layering.py: {unknown}"


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PILOT.parent)))
def test_imports_follow_the_table(path: Path):
    layer = layer_of(path)
    if layer not in TABLE:
        pytest.skip(f"{layer} is not in the table (see test_every_layer_is_in_the_table)")
    problems = [
        f"{path.relative_to(PILOT.parent)}:{line}: {problem}"
        for line, target in imports(path)
        if (problem := violation(layer, target)) is not None
    ]
    assert not problems, "\n".join(problems)


def importers(layer: str, allowed: frozenset[str]) -> list[str]:
    """Where a module outside the ``allowed`` layers imports ``layer`` (a package or a module)."""
    return [
        f"{path.relative_to(PILOT.parent)}:{line}: imports {target}"
        for path in modules()
        if layer_of(path) not in allowed
        for line, target in imports(path)
        if target == f"pilot.{layer}" or target.startswith(f"pilot.{layer}.")
    ]


HARNESS = "localmesh"
HARNESS_USERS = frozenset({"demo", HARNESS})


def test_only_the_demo_imports_the_harness():
    found = importers(HARNESS, HARNESS_USERS)
    assert not found, "\n".join(found)


CLI = "cli"
CLI_USERS = frozenset({"__main__", CLI})


def test_only_the_entry_point_imports_the_cli():
    """The command line (pilot/cli/) is the outermost layer: it may import everything, so nothing of
    the product but ``python -m pilot`` imports it (tests, bench and the console script do)."""
    found = importers(CLI, CLI_USERS)
    assert not found, "\n".join(found)


@pytest.mark.parametrize(
    ("layer", "target", "allowed"),
    [
        ("translate", "pilot.cache.snapshot", True),
        ("translate", "pilot.cache.cache", False),
        ("translate", "asyncio", False),
        ("translate", "grpc.aio", False),
        ("cache", "grpc", False),
        ("cache", "pilot.config.objects", False),
        ("config", "grpc", False),
        ("config", "pilot.xds.types", False),
        ("server", "pilot.push.pusher", False),
        ("server", "pilot.cache.cache", True),
        ("push", "pilot.server.ads", False),
        ("push", "pilot.translate.proxy", True),
        ("debug", "pilot.push.pusher", False),
        ("sources", "pilot.config.parse", True),
        ("sources", "pilot.cache.cache", False),
        ("xds", "pilot.config.objects", False),
        ("xds", "pilot.metrics", True),
        ("app", "pilot.server.ads", True),
        ("localmesh", "pilot.bootstrap", True),
        ("localmesh", "pilot.demo.scenario", False),
        ("localmesh", "pilot.server.ads", False),
        ("ca", "grpc", False),
        ("ca", "pilot._gen.ca_pb2", False),
        ("ca", "pilot.translate.proxy", False),
        ("ca", "pilot.server.ads", False),
        ("ca.csr_service", "grpc.aio", True),
        ("ca.csr_service", "pilot._gen.ca_pb2_grpc", True),
        ("ca.csr_service", "pilot.ca.authority", True),
        ("ca.csr_service", "pilot.server.ads", False),
        ("ca.server_credentials", "pilot.translate.proxy", False),
        ("ca", "pilot.ca.csr_service", False),
        ("inspect", "pilot.config.parse", True),
        ("inspect", "pilot.server.ads", False),
        ("inspect", "pilot.push.pusher", False),
        ("inspect", "pilot.cache.cache", False),
        ("agent", "pilot.ca.identity", True),
        ("agent", "pilot._gen.ca_pb2_grpc", True),
        ("agent", "pilot.bootstrap", True),
        ("agent", "grpc.aio", True),
        ("agent", "pilot.server.ads", False),
        ("agent", "pilot.translate.proxy", False),
        ("agent", "pilot.config.objects", False),
    ],
)
def test_the_checker_itself(layer: str, target: str, allowed: bool):
    assert (violation(layer, target) is None) is allowed


def test_imports_are_resolved():
    source = """
from . import snapshot
from .cache import SnapshotCache
from ..config import objects
from pilot.xds import types
import grpc.aio
def lazy():
    import asyncio
"""
    assert [target for _, target in imports_in(source, "pilot.cache")] == [
        "pilot.cache.snapshot",
        "pilot.cache.cache",
        "pilot.config.objects",
        "pilot.xds.types",
        "grpc.aio",
        "asyncio",
    ]
