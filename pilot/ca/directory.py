"""The CA directory (``--ca-dir``): its file names, its lock, and files written whole or not at all.

``pilot serve`` and ``pilot token`` may start together on an empty directory; both create missing
key material under an exclusive ``flock`` on ``.lock``, so one creates and the other reads.
Private keys are written 0600 into a temporary file in the same directory and renamed over the
target, so a reader sees the old file or the new one, never half of one.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pilot.errors import ConfigError

# Istio's plug-in CA layout (security/pkg/pki/ca/ca.go: CACertFile, CAPrivateKeyFile, RootCertFile,
# CertChainFile), the `cacerts` Secret mounted at /etc/cacerts.
CA_CERT = "ca-cert.pem"
CA_KEY = "ca-key.pem"
ROOT_CERT = "root-cert.pem"
CERT_CHAIN = "cert-chain.pem"
CACERTS_FILES = (CA_CERT, CA_KEY, ROOT_CERT, CERT_CHAIN)
# The key that signs folder-mode tokens (`pilot token`); never the CA key, so a leaked token key
# cannot mint certificates.
TOKEN_SIGNING_KEY = "token-signing-key.pem"
LOCK = ".lock"

PRIVATE = 0o600
PUBLIC = 0o644


def ensure_directory(ca_dir: Path) -> None:
    """Create ``ca_dir`` (0700) if missing; ConfigError when it cannot be."""
    try:
        ca_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"CA directory {ca_dir}: {err.strerror or err}") from err
    if not ca_dir.is_dir():
        raise ConfigError(f"CA directory {ca_dir} is not a directory")


@contextmanager
def locked(ca_dir: Path) -> Iterator[None]:
    """Hold the directory's exclusive lock (blocks while another process holds it)."""
    ensure_directory(ca_dir)
    fd = os.open(ca_dir / LOCK, os.O_RDWR | os.O_CREAT, PRIVATE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the flock


def write_atomically(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to ``path`` with ``mode``: a temporary file, fsync, rename, fsync the directory."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def read(path: Path) -> bytes:
    """The file's bytes; ConfigError naming the file when it cannot be read."""
    try:
        return path.read_bytes()
    except OSError as err:
        raise ConfigError(f"{path}: {err.strerror or err}") from err
