"""Test certificates made with the ``openssl`` command line: a CA and a server certificate it signed.

EC P-256 keys (fast to make), valid for two days, the server certificate naming its hosts as DNS
subject alternative names so that a client can verify it against the CA and the SNI host.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Certificates", "make_certificates", "openssl_available"]

_EC = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")


@dataclass(frozen=True)
class Certificates:
    ca: Path  # the CA certificate (PEM): what clients trust
    cert: Path  # the server certificate (PEM), signed by the CA
    key: Path  # the server's private key (PEM)


def openssl_available() -> bool:
    return shutil.which("openssl") is not None


def _openssl(*args: str) -> None:
    result = subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {result.stderr.strip()}")


def make_certificates(directory: Path, hosts: Sequence[str]) -> Certificates:
    """A CA and a certificate for ``hosts`` (the first is the subject CN), written to ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca = directory / "ca.key", directory / "ca.pem"
    key, csr, cert = directory / "server.key", directory / "server.csr", directory / "server.pem"
    _openssl(
        "req", "-x509", *_EC, "-keyout", str(ca_key), "-out", str(ca), "-days", "2",
        "-subj", "/CN=pilot test CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    _openssl(
        "req", *_EC, "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={hosts[0]}",
        "-addext", "subjectAltName=" + ",".join(f"DNS:{h}" for h in hosts),
        "-addext", "extendedKeyUsage=serverAuth",
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
        "-set_serial", f"0x{secrets.token_hex(8)}", "-days", "2", "-copy_extensions", "copy",
        "-out", str(cert),
    )  # fmt: skip
    return Certificates(ca=ca, cert=cert, key=key)
