"""Certificates named by file path, served over SDS (Istio's ``file-cert:`` and ``file-root:`` resources).

istiod names the files a DestinationRule or Gateway refers to (``clientCertificate``, ``privateKey``,
``caCertificates``, ``serverCertificate``) as SDS resources for the agent to read, rather than
file data sources Envoy reads itself (security/pkg/nodeagent/cache/secretcache.go
``generateFileSecret``, pilot/pkg/model/authentication.go ``SdsCertificateConfig``):

* ``file-cert:CERT_PATH~KEY_PATH``: a ``tls_certificate`` with the chain and the key;
* ``file-root:CA_PATH``: a ``validation_context`` trusting those roots.

Files are read when a name is first asked for and polled afterwards (every ``interval`` seconds);
a change is pushed on the SDS streams that asked for the name. A file that cannot be read leaves
its resource unanswered (logged once per failure): Envoy keeps that one listener or cluster
warming, where a file data source Envoy cannot read would reject the whole update.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from envoy.config.core.v3 import base_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, secret_pb2
from google.protobuf import any_pb2

log = logging.getLogger("pilot.agent.sds")

# Istio's security.FileCertPrefix / FileRootPrefix and the separator of ``SdsCertificateConfig``.
FILE_CERT_PREFIX = "file-cert:"
FILE_ROOT_PREFIX = "file-root:"
CERT_KEY_SEPARATOR = "~"
POLL_INTERVAL = 1.0


@dataclass(frozen=True, slots=True)
class FileSecretName:
    """A parsed ``file-cert:`` (``certificate`` and ``key``) or ``file-root:`` (``root``) name."""

    name: str
    certificate: str = ""
    key: str = ""
    root: str = ""

    @property
    def paths(self) -> tuple[str, ...]:
        return (self.root,) if self.root else (self.certificate, self.key)


def parse_file_secret_name(name: str) -> FileSecretName | None:
    """The files ``name`` refers to, or None when it is no file resource (or is malformed)."""
    if name.startswith(FILE_ROOT_PREFIX):
        root = name.removeprefix(FILE_ROOT_PREFIX)
        return FileSecretName(name, root=root) if root else None
    if name.startswith(FILE_CERT_PREFIX):
        certificate, separator, key = name.removeprefix(FILE_CERT_PREFIX).partition(CERT_KEY_SEPARATOR)
        if certificate and separator and key:
            return FileSecretName(name, certificate=certificate, key=key)
    return None


@dataclass(frozen=True, slots=True)
class ServedSecret:
    """One SDS resource: its version (what changes when the content does) and its packed message."""

    version: str
    resource: any_pb2.Any


def _secret(parsed: FileSecretName, contents: tuple[bytes, ...]) -> ServedSecret:
    if parsed.root:
        message = secret_pb2.Secret(
            name=parsed.name,
            validation_context=common_pb2.CertificateValidationContext(
                trusted_ca=base_pb2.DataSource(inline_bytes=contents[0])
            ),
        )
    else:
        message = secret_pb2.Secret(
            name=parsed.name,
            tls_certificate=common_pb2.TlsCertificate(
                certificate_chain=base_pb2.DataSource(inline_bytes=contents[0]),
                private_key=base_pb2.DataSource(inline_bytes=contents[1]),
            ),
        )
    packed = any_pb2.Any()
    packed.Pack(message)
    digest = hashlib.sha256(b"\0".join(contents)).hexdigest()[:16]
    return ServedSecret(digest, packed)


class FileSecrets:
    """The file resources asked for so far, their files' contents, and a wait for a change."""

    def __init__(self, interval: float = POLL_INTERVAL) -> None:
        self._interval = interval
        self._names: dict[str, FileSecretName] = {}
        self._contents: dict[str, bytes | None] = {}  # path → bytes, None when unreadable
        self._generation = 0
        self._changed = asyncio.Condition()

    @property
    def generation(self) -> int:
        return self._generation

    def watch(self, names: Iterable[str]) -> None:
        """Start serving (and polling the files of) the file resources among ``names``."""
        for name in names:
            if name in self._names:
                continue
            parsed = parse_file_secret_name(name)
            if parsed is None:
                continue
            self._names[name] = parsed
            for path in parsed.paths:
                if path not in self._contents:
                    self._contents[path] = self._read(path, None)

    def served(self) -> dict[str, ServedSecret]:
        """The watched resources whose files could all be read."""
        out = {}
        for name, parsed in self._names.items():
            contents = [self._contents.get(path) for path in parsed.paths]
            if all(data is not None for data in contents):
                out[name] = _secret(parsed, tuple(data for data in contents if data is not None))
        return out

    def _read(self, path: str, before: bytes | None) -> bytes | None:
        try:
            return Path(path).read_bytes()
        except OSError as err:
            if before is not None or path not in self._contents:
                users = sorted(n for n, p in self._names.items() if path in p.paths)
                log.warning(
                    "cannot read %s (%s): %s not served until it can be read",
                    path,
                    err.strerror or err,
                    ", ".join(users),
                )
            return None

    async def poll(self) -> bool:
        """Re-read every watched file; True (and waiters woken) if any changed."""
        changed = False
        for path, before in list(self._contents.items()):
            data = self._read(path, before)
            if data != before:
                if data is not None:
                    log.info("%s changed: pushing it to the SDS streams that use it", path)
                self._contents[path] = data
                changed = True
        if changed:
            async with self._changed:
                self._generation += 1
                self._changed.notify_all()
        return changed

    async def poll_forever(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self.poll()

    async def wait_newer(self, generation: int) -> int:
        """Return the generation once it is past ``generation``."""
        async with self._changed:
            await self._changed.wait_for(lambda: self._generation > generation)
            return self._generation


__all__ = [
    "CERT_KEY_SEPARATOR",
    "FILE_CERT_PREFIX",
    "FILE_ROOT_PREFIX",
    "FileSecretName",
    "FileSecrets",
    "ServedSecret",
    "parse_file_secret_name",
]
