"""Folder-mode service-account tokens: `pilot token` signs, FolderTokenAuthenticator verifies."""

from __future__ import annotations

import datetime
import io
import stat
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from pilot import cli
from pilot.ca.identity import ServiceAccount
from pilot.ca.token_command import TokenOptions, run
from pilot.ca.tokens import MAX_TOKEN_BYTES, FolderTokenAuthenticator, issue_token, load_or_create_signing_key
from pilot.errors import AuthenticationError
from pilot.flag_values import parse_duration

SLEEP = ServiceAccount("default", "sleep")
HOUR = datetime.timedelta(hours=1)


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


async def test_a_token_proves_its_service_account_with_kubernetes_claims(tmp_path: Path):
    key = load_or_create_signing_key(tmp_path)
    token = issue_token(key, SLEEP, HOUR)
    authenticator = FolderTokenAuthenticator.from_ca_dir(tmp_path)
    assert await authenticator.authenticate(token) == SLEEP

    claims = jwt.decode(token, options={"verify_signature": False})
    assert jwt.get_unverified_header(token)["alg"] == "ES256"
    assert claims["sub"] == "system:serviceaccount:default:sleep"
    assert claims["aud"] == ["istio-ca"] and claims["iss"] == "pilot"
    assert claims["exp"] - claims["iat"] == 3600 and claims["nbf"] == claims["iat"]
    assert claims["kubernetes.io"] == {"namespace": "default", "serviceaccount": {"name": "sleep"}}
    assert claims["jti"]


def test_the_token_signing_key_is_kept_private_and_apart_from_the_ca_key(tmp_path: Path):
    load_or_create_signing_key(tmp_path)
    path = tmp_path / "token-signing-key.pem"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not (tmp_path / "ca-key.pem").exists()
    again = load_or_create_signing_key(tmp_path)
    assert (
        again.private_numbers()
        == serialization.load_pem_private_key(path.read_bytes(), None).private_numbers()
    )


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        # issued two hours ago for one hour: an hour past exp, far beyond the one-minute leeway
        (lambda key, _: issue_token(key, SLEEP, HOUR, issued_at=now() - 2 * HOUR), "token has expired"),
        (lambda key, _: issue_token(key, SLEEP, HOUR, audience="kubernetes"), "audience is not istio-ca"),
        (lambda _, other: issue_token(other, SLEEP, HOUR), "signature does not verify"),
        (lambda key, _: issue_token(key, SLEEP, HOUR, issued_at=now() + HOUR), "not valid yet"),
        (lambda *_: "x" * (MAX_TOKEN_BYTES + 1), f"larger than the {MAX_TOKEN_BYTES} allowed"),
        (lambda *_: "not.a.jwt", "not a JWT"),
        (lambda *_: "", "no token"),
        # alg "none" and the HS256-with-the-public-key confusion: only ES256 is accepted
        (lambda key, _: jwt.encode({"sub": SLEEP.username}, None, algorithm="none"), "not signed with ES256"),
        (
            lambda key, _: jwt.encode({"sub": SLEEP.username}, _public_pem(key)[:32], algorithm="HS256"),
            "not signed with ES256",
        ),
        # a claim set that is not a service account's, or whose parts disagree
        (lambda key, _: _signed(key, sub="admin"), "not a service account user name"),
        (lambda key, _: _signed(key, namespace="prod"), "kubernetes.io claims do not match"),
        (lambda key, _: _signed(key, drop="exp"), "no 'exp' claim"),
        (lambda key, _: _signed(key, iss="https://kubernetes.default.svc"), "issuer is not 'pilot'"),
    ],
    ids=[
        "expired",
        "wrong-audience",
        "wrong-signature",
        "not-yet-valid",
        "oversized",
        "garbage",
        "empty",
        "alg-none",
        "alg-hs256",
        "not-a-service-account",
        "claims-disagree",
        "no-exp",
        "foreign-issuer",
    ],
)
def test_bad_tokens_are_refused_with_the_reason(tmp_path: Path, make, reason: str):
    key = load_or_create_signing_key(tmp_path / "ca")
    other = load_or_create_signing_key(tmp_path / "other-ca")
    authenticator = FolderTokenAuthenticator.from_ca_dir(tmp_path / "ca")
    with pytest.raises(AuthenticationError, match=reason):
        authenticator.verify(make(key, other))


def test_the_leeway_accepts_a_token_expired_seconds_ago(tmp_path: Path):
    key = load_or_create_signing_key(tmp_path)
    token = issue_token(
        key, SLEEP, datetime.timedelta(seconds=60), issued_at=now() - datetime.timedelta(seconds=90)
    )
    assert FolderTokenAuthenticator.from_ca_dir(tmp_path).verify(token) == SLEEP


def _public_pem(key) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _signed(
    key, sub: str = SLEEP.username, namespace: str = "default", drop: str = "", iss: str = "pilot"
) -> str:
    start = now()
    claims = {
        "iss": iss,
        "sub": sub,
        "aud": ["istio-ca"],
        "iat": start,
        "nbf": start,
        "exp": start + HOUR,
        "kubernetes.io": {"namespace": namespace, "serviceaccount": {"name": "sleep"}},
    }
    claims.pop(drop, None)
    return jwt.encode(claims, key, algorithm="ES256")


def test_pilot_token_prints_a_token_the_ca_accepts(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    code = cli.main(
        [
            "token",
            "--ca-dir",
            str(tmp_path),
            "--namespace",
            "default",
            "--service-account",
            "sleep",
            "--ttl",
            "30m",
        ]
    )
    assert code == 0
    token = capsys.readouterr().out.strip()
    assert FolderTokenAuthenticator.from_ca_dir(tmp_path).verify(token) == SLEEP
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 1800


def test_pilot_token_refuses_a_name_kubernetes_would_refuse(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    try:
        code = cli.main(
            ["token", "--ca-dir", str(tmp_path), "--namespace", "Default", "--service-account", "sl"]
        )
    except SystemExit as exit:  # argparse's usage error
        code = exit.code
    assert code == 2
    assert "namespace 'Default' is not a DNS-1123 label" in capsys.readouterr().err
    assert not (tmp_path / "token-signing-key.pem").exists()


def test_the_token_command_with_its_options(tmp_path: Path):
    out = io.StringIO()
    assert run(TokenOptions(tmp_path, SLEEP, audience="other"), out) == 0
    token = out.getvalue().strip()
    assert FolderTokenAuthenticator.from_ca_dir(tmp_path, audiences=("other",)).verify(token) == SLEEP


@pytest.mark.parametrize(
    ("text", "seconds"), [("1h", 3600), ("30m", 1800), ("1h30m", 5400), ("90s", 90), ("3600", 3600)]
)
def test_durations(text: str, seconds: int):
    assert parse_duration(text) == datetime.timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "1d", "h", "-5s", "1.5h"])
def test_bad_durations(text: str):
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)
