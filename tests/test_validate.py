"""``pilot validate``: every error and warning with file:line, object and field path; exit 1 on errors."""

from __future__ import annotations

import io
import subprocess
import sys
import time
from pathlib import Path

from pilot import validate
from pilot.cli import ValidateOptions, build_parser, validate_options_from

GOOD = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  trafficPolicy:
    tls: {mode: SIMPLE, credentialName: reviews-client}
"""

BAD = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings, namespace: shop}
spec:
  hosts: [ratings]
  http:
  - route:
    - destination: {host: ratings}
      weight: -1
"""


def run(*files: str, stdin: str = "") -> tuple[int, str]:
    out = io.StringIO()
    code = validate.run(ValidateOptions(files=tuple(list(files))), stdin=io.StringIO(stdin), out=out)
    return code, out.getvalue()


def test_valid_file_with_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "good.yaml"
    path.write_text(GOOD)
    code, out = run(str(path))
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith(
        f"warning: {path}:16: DestinationRule default/reviews: spec.trafficPolicy.tls.credentialName: "
    )
    assert f'"{path}" is valid (2 objects)' in lines
    assert lines[-1] == "1 file(s) valid: 0 error(s), 1 warning(s)"


def test_errors_name_file_line_object_and_field(tmp_path: Path) -> None:
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(GOOD)
    bad.write_text(BAD)
    code, out = run(str(good), str(bad))
    assert code == 1
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert errors and all(
        line.startswith(f"error: {bad}:9: VirtualService shop/ratings: ") for line in errors
    )
    assert any("spec.http[0].route[0].weight" in line for line in errors)
    assert f'"{bad}" is valid' not in out and out.splitlines()[-1].startswith("2 file(s) invalid: ")


def test_stdin_folders_and_unreadable_files(tmp_path: Path) -> None:
    code, out = run("-", stdin=BAD)
    assert code == 1 and "error: <stdin>:9: VirtualService shop/ratings" in out
    folder = tmp_path / "config"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "a.yaml").write_text(GOOD)
    (folder / "notes.txt").write_text("not config")
    code, out = run(str(folder))
    assert code == 0 and out.splitlines()[-1].startswith("1 file(s) valid")
    code, out = run(str(tmp_path / "missing.yaml"))
    assert code == 1 and f"error: {tmp_path / 'missing.yaml'}: cannot read file: " in out


def test_yaml_syntax_error_is_invalid() -> None:
    code, out = run("-", stdin="kind: [unclosed\n")
    assert code == 1 and out.startswith("error: <stdin>:")


def test_pilot_validate_command(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD)
    result = subprocess.run(
        [sys.executable, "-m", "pilot", "validate", str(bad)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1 and f"error: {bad}:9:" in result.stdout
    piped = subprocess.run(
        [sys.executable, "-m", "pilot", "validate", "-"],
        input=GOOD,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert piped.returncode == 0 and '"<stdin>" is valid (2 objects)' in piped.stdout


def test_a_file_over_the_size_limit_is_refused_without_reading_it(tmp_path: Path) -> None:
    huge = tmp_path / "huge.yaml"
    with open(huge, "wb") as stream:
        stream.truncate(50 * 1024 * 1024 * 1024)  # sparse: reading it whole would take minutes
    started = time.monotonic()
    result = validate.check(str(huge), io.StringIO())
    assert time.monotonic() - started < 1
    assert result.fatal and "larger than 10 MiB" in result.errors[0].message


def test_validate_reports_a_kind_typo_and_scales_with_hosts(tmp_path: Path) -> None:
    """``VirtualServce`` was "valid, 0 objects"; 8,000 hosts took 6.7 s (the pairwise duplicate check)."""
    typo = tmp_path / "typo.yaml"
    typo.write_text("apiVersion: networking.istio.io/v1\nkind: VirtualServce\nmetadata: {name: r}\n")
    out = io.StringIO()
    assert validate.run(ValidateOptions(files=tuple([str(typo)])), out=out) == 1
    assert 'unknown kind "VirtualServce"' in out.getvalue()
    hosts = "".join(f"  - h{i}.example.com\n" for i in range(8_000))
    big = tmp_path / "big.yaml"
    big.write_text(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: big}\nspec:\n  hosts:\n"
        f"{hosts}  http:\n  - route:\n    - destination: {{host: reviews}}\n"
    )
    started = time.monotonic()
    assert validate.run(ValidateOptions(files=tuple([str(big)])), out=io.StringIO()) == 0
    assert time.monotonic() - started < 3


def test_validate_takes_the_servers_limits(tmp_path: Path) -> None:
    """A file validates exactly when ``pilot serve`` with the same limit flags would load it."""
    three = tmp_path / "three.yaml"
    three.write_text(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: three}\nspec:\n"
        "  hosts: [a.example.com, b.example.com, c.example.com]\n"
        "  http:\n  - route:\n    - destination: {host: reviews}\n"
    )
    args = build_parser().parse_args(["validate", "--max-hosts-per-object", "2", str(three)])
    out = io.StringIO()
    assert validate.run(validate_options_from(args), out=out) == 1
    assert "three.yaml" in out.getvalue() and "2" in out.getvalue()
    args = build_parser().parse_args(["validate", str(three)])
    assert validate.run(validate_options_from(args), out=io.StringIO()) == 0
    args = build_parser().parse_args(["validate", "--max-file-bytes", "100", str(three)])
    out = io.StringIO()
    assert validate.run(validate_options_from(args), out=out) == 1
    assert "larger than" in out.getvalue()


def test_objects_of_other_apis_are_counted_as_skipped(tmp_path: Path) -> None:
    """A Deployment or a ServiceAccount beside Istio config is not an error, nor silence."""
    mixed = tmp_path / "mixed.yaml"
    mixed.write_text(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: a}\n---\n"
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: b}\n---\n"
        "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: c}\n---\n" + GOOD
    )
    code, out = run(str(mixed))
    assert code == 0
    assert f'"{mixed}" is valid (2 objects, 3 skipped: Deployment x2, ServiceAccount)' in out
