#!/usr/bin/env python3
"""Regenerate pilot/_gen/*_pb2.py and *_pb2.pyi (and *_pb2_grpc.py for protos that declare a gRPC
service) from protos/*.proto with grpcio-tools' protoc and its gRPC Python plugin.

    python scripts/gen_protos.py           # (re)write pilot/_gen
    python scripts/gen_protos.py --check   # exit 1, naming each stale file, if pilot/_gen is out of date

Output is deterministic: running it twice gives identical files. Code is generated into a temporary
directory first; --check compares that with pilot/_gen byte for byte and writes nothing. Imports between
our own protos (``import foo_pb2``, as protoc emits them) are rewritten to package-relative imports so the
modules import as ``pilot._gen.foo_pb2``. ``pilot/_gen/__init__.py`` is never touched.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from importlib import resources
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROTO_DIR = ROOT / "protos"
OUT_DIR = ROOT / "pilot" / "_gen"
MESSAGE_SUFFIXES = ("_pb2.py", "_pb2.pyi")
SERVICE_SUFFIX = "_pb2_grpc.py"
GENERATED_SUFFIXES = (*MESSAGE_SUFFIXES, SERVICE_SUFFIX)

_TOP_LEVEL_IMPORT = re.compile(r"^import (?P<mod>\w+)_pb2 as (?P<alias>\w+)$", re.MULTILINE)


def _protos() -> list[Path]:
    protos = sorted(PROTO_DIR.glob("*.proto"))
    if not protos:
        raise SystemExit(f"no .proto files in {PROTO_DIR}")
    return protos


def _fix_imports(text: str, local_modules: set[str]) -> str:
    """``import networking_pb2 as x`` → ``from . import networking_pb2 as x`` for our own protos only
    (protoc and the gRPC plugin both emit the former)."""

    def repl(m: re.Match[str]) -> str:
        if m.group("mod") in local_modules:
            return f"from . import {m.group('mod')}_pb2 as {m.group('alias')}"
        return m.group(0)

    return _TOP_LEVEL_IMPORT.sub(repl, text)


def generate(dest: Path) -> dict[str, bytes]:
    """Run protoc into ``dest``; return {file name: contents} of every generated file."""
    from google.protobuf import descriptor_pb2
    from grpc_tools import protoc  # imported here so --help works without grpcio-tools

    protos = _protos()
    well_known = resources.files("grpc_tools") / "_proto"
    descriptor_set = dest / "protos.desc"
    args = [
        "grpc_tools.protoc",
        f"--proto_path={PROTO_DIR}",
        f"--proto_path={well_known}",
        f"--python_out={dest}",
        f"--pyi_out={dest}",
        f"--grpc_python_out={dest}",
        f"--descriptor_set_out={descriptor_set}",
        *(str(p) for p in protos),
    ]
    code = protoc.main(args)
    if code != 0:
        raise SystemExit(f"protoc failed with exit code {code}")

    # The gRPC plugin writes a *_pb2_grpc.py for every proto, holding only imports when the proto
    # declares no service; only the protos with a service keep theirs.
    parsed = descriptor_pb2.FileDescriptorSet.FromString(descriptor_set.read_bytes())
    with_services = {Path(f.name).stem for f in parsed.file if f.service}
    local_modules = {p.stem for p in protos}
    files: dict[str, bytes] = {}
    for path in sorted(dest.iterdir()):
        if not path.name.endswith(GENERATED_SUFFIXES):
            continue
        if path.name.endswith(SERVICE_SUFFIX) and path.name.removesuffix(SERVICE_SUFFIX) not in with_services:
            continue
        text = _fix_imports(path.read_text(encoding="utf-8"), local_modules)
        files[path.name] = text.encode("utf-8")
    expected = {p.stem + suffix for p in protos for suffix in MESSAGE_SUFFIXES}
    expected |= {stem + SERVICE_SUFFIX for stem in with_services}
    if set(files) != expected:
        raise SystemExit(f"protoc produced {sorted(files)}, expected {sorted(expected)}")
    return files


def _existing() -> dict[str, bytes]:
    if not OUT_DIR.is_dir():
        return {}
    return {p.name: p.read_bytes() for p in sorted(OUT_DIR.iterdir()) if p.name.endswith(GENERATED_SUFFIXES)}


def _rel(name: str) -> str:
    return str((OUT_DIR / name).relative_to(ROOT))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--check", action="store_true", help="only compare pilot/_gen with fresh output; exit 1 if stale"
    )
    opts = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="pilot-gen-protos-") as tmp:
        fresh = generate(Path(tmp))
    current = _existing()

    if opts.check:
        stale = sorted(name for name in fresh if current.get(name) != fresh[name])
        extra = sorted(set(current) - set(fresh))
        for name in stale:
            print(f"stale: {_rel(name)} (run scripts/gen_protos.py)", file=sys.stderr)
        for name in extra:
            print(
                f"stale: {_rel(name)} has no source in protos/ (run scripts/gen_protos.py to remove it)",
                file=sys.stderr,
            )
        return 1 if stale or extra else 0

    OUT_DIR.mkdir(parents=True, exist_ok=True)
    for name, data in fresh.items():
        target = OUT_DIR / name
        if current.get(name) != data:
            tmp_target = target.with_name(target.name + ".tmp")
            tmp_target.write_bytes(data)
            tmp_target.replace(target)
            print(f"wrote {_rel(name)}")
    for name in sorted(set(current) - set(fresh)):
        (OUT_DIR / name).unlink()
        print(f"removed {_rel(name)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
