"""The validating admission webhook: the API server asks pilot before it stores an Istio object.

``POST /validate`` takes an ``admission.k8s.io/v1`` AdmissionReview
(https://kubernetes.io/docs/reference/access-authn-authz/extensible-admission-controllers/#request) and runs
the object through exactly the parse and validation the watch applies (pilot.sources.kube_objects), with
the origin the watch would give it. So a denied review's ``status.message`` is, line for line, what pilot
logs when it meets that object, and the webhook accepts exactly what pilot would serve:

- errors → ``allowed: false``, ``status: {code: 400, reason: Invalid, message: <one line per error>}``;
- warnings (deprecated fields, ...) → ``response.warnings``, which kubectl prints (``Warning: ...``);
- a kind pilot does not read, a DELETE, or a review without an object → allowed;
- a body that is not an AdmissionReview → HTTP 400 (the API server then applies the failurePolicy).

It lives beside the watch (the same layer: it imports only pilot.config) so that both share one
conversion. It serves HTTPS only, as the API server requires, from a cert/key pair re-read when the files
change (cert-manager or a Secret update rotates them without a restart).
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from pilot.errors import ConfigError, LifecycleError
from pilot.sources.kube_objects import origin_of, parse_object

log = logging.getLogger("pilot.sources.kube_webhook")

PATH = "/validate"
DEFAULT_PORT = 15017
ADMISSION_API_VERSION = "admission.k8s.io/v1"
MAX_BODY = 4 * 1024 * 1024  # the API server's own request limit is 3 MiB
# Kubernetes truncates longer warnings; keep each readable.
MAX_WARNING = 512
CERT_CHECK_INTERVAL = 30.0


class BadReview(ValueError):
    """The request body is not an AdmissionReview pilot can answer."""


def review(body: object) -> dict[str, Any]:
    """Answer one AdmissionReview (already JSON-decoded). Raises BadReview for a malformed one."""
    if not isinstance(body, dict):
        raise BadReview("expected a JSON object")
    if body.get("kind") != "AdmissionReview" or body.get("apiVersion") != ADMISSION_API_VERSION:
        raise BadReview(f"expected kind AdmissionReview, apiVersion {ADMISSION_API_VERSION}")
    request = body.get("request")
    if not isinstance(request, dict):
        raise BadReview("request: required")
    uid = request.get("uid")
    if not isinstance(uid, str) or not uid:
        raise BadReview("request.uid: required")
    response: dict[str, Any] = {"uid": uid, "allowed": True}
    obj = request.get("object")
    if request.get("operation") != "DELETE" and isinstance(obj, dict):
        _validate(request, obj, response)
    return {"apiVersion": ADMISSION_API_VERSION, "kind": "AdmissionReview", "response": response}


def _validate(request: Mapping[str, Any], obj: dict[str, Any], response: dict[str, Any]) -> None:
    metadata = obj.get("metadata")
    metadata = dict(metadata) if isinstance(metadata, dict) else {}
    # On CREATE the namespace may be only in the request (the URL's), and the name only in the request.
    namespace = metadata.get("namespace") or request.get("namespace") or "default"
    name = metadata.get("name") or request.get("name") or ""
    if "namespace" not in metadata and isinstance(request.get("namespace"), str):
        metadata["namespace"] = namespace
    kind = obj.get("kind") if isinstance(obj.get("kind"), str) else ""
    result = parse_object({**obj, "metadata": metadata}, origin_of(str(kind), str(namespace), str(name)))
    errors = [str(error) for error in result.errors if error.severity == "error"]
    warnings = [_short(str(error)) for error in result.errors if error.severity == "warning"]
    if errors:
        response["allowed"] = False
        response["status"] = {"code": 400, "reason": "Invalid", "message": "\n".join(errors)}
    if warnings:
        response["warnings"] = warnings


def _short(text: str) -> str:
    return text if len(text) <= MAX_WARNING else text[: MAX_WARNING - 3] + "..."


async def _handle(request: web.Request) -> web.Response:
    if request.content_length is not None and request.content_length > MAX_BODY:
        return web.Response(status=413, text="request body too large\n")
    raw = await request.read()
    try:
        # Parsing and validation are CPU work: off the loop that serves xDS (a 1.5 MB object takes
        # a noticeable part of a second to validate).
        body, answer = await asyncio.to_thread(_decode_and_review, raw)
    except (orjson.JSONDecodeError, BadReview) as err:
        log.warning("malformed admission review from %s: %s", request.remote, err)
        return web.Response(status=400, text=f"malformed AdmissionReview: {err}\n")
    response = answer["response"]
    if not response["allowed"]:
        log.info("denied %s: %s", _what(body), response["status"]["message"])
    return web.Response(body=orjson.dumps(answer), content_type="application/json")


def _decode_and_review(raw: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    body = orjson.loads(raw)
    return body, review(body)


def _what(body: dict[str, Any]) -> str:
    request = body.get("request") or {}
    kind = (request.get("kind") or {}).get("kind", "?") if isinstance(request, dict) else "?"
    return f"{request.get('operation', '?')} {kind} {request.get('namespace', '')}/{request.get('name', '')}"


def build_app() -> web.Application:
    app = web.Application(client_max_size=MAX_BODY)
    app.router.add_post(PATH, _handle)
    return app


class CertFiles:
    """A server SSLContext loaded from ``cert_file``/``key_file``, reloaded when either file changes.

    Reloading replaces the chain in the same context: new handshakes get the new certificate, open
    connections keep theirs.
    """

    def __init__(self, cert_file: Path | str, key_file: Path | str) -> None:
        self.cert_file = Path(cert_file)
        self.key_file = Path(key_file)
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        self._stamp = self._stat()
        self._load()

    def _stat(self) -> tuple[float, float]:
        try:
            return (os.stat(self.cert_file).st_mtime, os.stat(self.key_file).st_mtime)
        except OSError as err:
            raise ConfigError(f"webhook certificate: {err}") from err

    def _load(self) -> None:
        try:
            self.context.load_cert_chain(self.cert_file, self.key_file)
        except (OSError, ssl.SSLError) as err:
            pair = f"{self.cert_file} / {self.key_file}"
            raise ConfigError(f"cannot load webhook certificate {pair}: {err}") from err

    def reload_if_changed(self) -> bool:
        """Reload when the files changed; True if it did. A half-written pair keeps the old one."""
        try:
            stamp = self._stat()
        except ConfigError as err:
            log.warning("%s; keeping the current certificate", err)
            return False
        if stamp == self._stamp:
            return False
        try:
            self._load()
        except ConfigError as err:
            log.warning("%s; keeping the current certificate", err)
            return False
        self._stamp = stamp
        log.info("reloaded the webhook certificate from %s", self.cert_file)
        return True


class AdmissionWebhook:
    """The webhook's HTTPS server: ``start``/``stop``, or ``run`` until cancelled."""

    def __init__(
        self,
        cert_file: Path | str,
        key_file: Path | str,
        *,
        host: str = "0.0.0.0",
        port: int = DEFAULT_PORT,
        cert_check_interval: float = CERT_CHECK_INTERVAL,
    ) -> None:
        self.host = host
        self.port = port
        self._cert_file = cert_file
        self._key_file = key_file
        self._interval = cert_check_interval
        self._runner: web.AppRunner | None = None
        self.certs: CertFiles | None = None

    async def start(self) -> int:
        """Load the certificate, bind and serve; returns the bound port. ConfigError if it cannot."""
        if self._runner is not None:
            raise LifecycleError("AdmissionWebhook already started")
        self.certs = CertFiles(self._cert_file, self._key_file)
        runner = web.AppRunner(build_app(), access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, ssl_context=self.certs.context)
        try:
            await site.start()
        except OSError as err:
            await runner.cleanup()
            raise ConfigError(f"cannot serve the webhook on {self.host}:{self.port}: {err}") from err
        self._runner = runner
        server = getattr(site, "_server", None)
        sockets = getattr(server, "sockets", None) or ()
        bound = sockets[0].getsockname()[1] if sockets else self.port
        log.info("admission webhook on https://%s:%d%s", self.host, bound, PATH)
        return int(bound)

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def watch_certificates(self) -> None:
        """Reload the certificate when its files change, until cancelled (after ``start``)."""
        while True:
            await asyncio.sleep(self._interval)
            if self.certs is not None:
                self.certs.reload_if_changed()

    async def run(self) -> None:
        """``start``, follow certificate rotations until cancelled, then ``stop``."""
        await self.start()
        try:
            await self.watch_certificates()
        finally:
            await self.stop()


__all__ = [
    "ADMISSION_API_VERSION",
    "PATH",
    "AdmissionWebhook",
    "BadReview",
    "CertFiles",
    "build_app",
    "review",
]
