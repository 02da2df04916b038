"""A test identity provider: RSA keys made in the test, tokens signed with pyjwt, and a real aiohttp
server for the JWKS (``/jwks.json``) and the OpenID discovery document, whose answers a test changes
(other keys, an error status, no answer at all).

``IssuerServer`` runs in the test's event loop (``async with IssuerServer(issuer) as server``);
``IssuerThread`` runs one in a thread of its own, for tests that drive real processes.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Mapping
from concurrent.futures import Future
from typing import Any

import jwt
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa

JWKS_PATH = "/jwks.json"
DISCOVERY_PATH = "/.well-known/openid-configuration"


class Issuer:
    """One signing key (``kid``) at a time; ``rotate`` makes a new one."""

    def __init__(self, name: str, kid: str = "key-1") -> None:
        self.name = name
        self.kid = kid
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def rotate(self, kid: str) -> None:
        self.kid = kid
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def jwks(self) -> str:
        jwk: dict[str, Any] = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        jwk.update(kid=self.kid, alg="RS256", use="sig")
        return json.dumps({"keys": [jwk]})

    def token(self, subject: str = "alice", lifetime: float = 3600, **claims: Any) -> str:
        now = int(time.time())
        payload = {"iss": self.name, "sub": subject, "iat": now, "exp": now + int(lifetime), **claims}
        return jwt.encode(payload, self.key, algorithm="RS256", headers={"kid": self.kid})


class IssuerServer:
    """Serves ``issuer``'s JWKS; set ``status`` (answer it instead), ``hang`` (never answer) or
    ``body`` (answer this instead of the keys). ``requests`` counts the JWKS requests."""

    def __init__(self, issuer: Issuer, port: int = 0) -> None:
        self.issuer = issuer
        self.port = port
        self.status = 200
        self.hang = False
        self.body: bytes | None = None
        self.requests = 0
        self._runner: web.AppRunner | None = None
        self._released = asyncio.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def jwks_uri(self) -> str:
        return self.url + JWKS_PATH

    async def _jwks(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        if self.hang:
            await self._released.wait()
        if self.status != 200:
            return web.Response(status=self.status, text="identity provider down")
        body = self.body if self.body is not None else self.issuer.jwks().encode()
        return web.Response(body=body, content_type="application/json")

    async def _discovery(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"issuer": self.issuer.name, "jwks_uri": self.jwks_uri})

    async def __aenter__(self) -> IssuerServer:
        app = web.Application()
        app.router.add_get(JWKS_PATH, self._jwks)
        app.router.add_get(DISCOVERY_PATH, self._discovery)
        self._runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._released.set()
        if self._runner is not None:
            await self._runner.cleanup()


class IssuerThread:
    """An ``IssuerServer`` on its own event loop in a thread; ``set`` changes its answers."""

    def __init__(self, issuer: Issuer) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="jwt-issuer", daemon=True)
        self.server = IssuerServer(issuer)

    def __enter__(self) -> IssuerServer:
        self._thread.start()
        return self._call(self.server.__aenter__())

    def __exit__(self, *exc: object) -> None:
        try:
            self._call(self.server.__aexit__())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
            self._loop.close()

    def set(self, **answers: Mapping[str, Any] | int | bool | bytes | None) -> None:
        def apply() -> None:
            for name, value in answers.items():
                setattr(self.server, name, value)

        self._loop.call_soon_threadsafe(apply)

    def _call(self, coroutine: Any) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        return future.result(10)
