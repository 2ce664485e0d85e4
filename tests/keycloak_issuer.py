"""A real local OIDC issuer for tests: an aiohttp app that serves discovery and JWKS
like Keycloak, and signs RS256 tokens shaped like Keycloak's."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import jwt
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

REALM = "game"
CLIENT = "game-client"


class Issuer:
    def __init__(self) -> None:
        self.base = ""  # set when started: http://127.0.0.1:<port>
        self.keys: list[tuple[str, rsa.RSAPrivateKey]] = []
        self.jwks_hits = 0
        self.discovery_hits = 0
        self.down = False
        self.jwks_hang = False  # JWKS requests are accepted and never answered...
        self._unhang = asyncio.Event()  # ...until release()
        self.rotate()

    @property
    def issuer(self) -> str:
        return f"{self.base}/realms/{REALM}"

    def rotate(self) -> str:
        """A new signing key, published beside the old ones; returns its kid."""
        kid = uuid.uuid4().hex[:12]
        self.keys.append((kid, rsa.generate_private_key(public_exponent=65537, key_size=2048)))
        return kid

    def retire(self, kid: str) -> None:
        """Stop publishing a key (Keycloak's "disable key"): its tokens must die."""
        self.keys = [(k, key) for k, key in self.keys if k != kid]

    def release(self) -> None:
        """End a JWKS hang: held requests answer (to clients that may have given up)."""
        self.jwks_hang = False
        self._unhang.set()

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get(f"/realms/{REALM}/.well-known/openid-configuration", self._discovery)
        app.router.add_get(f"/realms/{REALM}/protocol/openid-connect/certs", self._jwks)
        return app

    async def _discovery(self, request: web.Request) -> web.Response:
        self.discovery_hits += 1
        if self.down:
            return web.Response(status=503)
        return web.json_response(
            {
                "issuer": self.issuer,
                "jwks_uri": f"{self.issuer}/protocol/openid-connect/certs",
                "id_token_signing_alg_values_supported": ["RS256", "PS256", "HS256"],
            }
        )

    async def _jwks(self, request: web.Request) -> web.Response:
        self.jwks_hits += 1
        if self.jwks_hang:
            await self._unhang.wait()
        if self.down:
            return web.Response(status=503)
        keys = []
        for kid, key in self.keys:
            jwk = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
            keys.append(jwk | {"kid": kid, "use": "sig", "alg": "RS256"})
        return web.json_response({"keys": keys})

    def token(
        self,
        *,
        sub: str | None = None,
        kid: str | None = None,
        alg: str = "RS256",
        key=None,
        **claims,
    ) -> str:
        now = int(time.time())
        body = {
            "exp": now + 300,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "iss": self.issuer,
            "aud": "account",
            "sub": sub or str(uuid.uuid4()),
            "typ": "Bearer",
            "azp": CLIENT,
            "preferred_username": "kc_user",
            "email": "kc@example.com",
            "realm_access": {"roles": ["offline_access", "default-roles-game"]},
            "resource_access": {CLIENT: {"roles": ["player"]}, "account": {"roles": ["x"]}},
        }
        body.update(claims)
        body = {k: v for k, v in body.items() if v is not None}
        signing_kid, signing_key = self.keys[-1]
        return jwt.encode(
            body,
            key if key is not None else signing_key,
            algorithm=alg,
            headers={"kid": kid or signing_kid},
        )
