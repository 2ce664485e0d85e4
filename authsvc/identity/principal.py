"""Who is calling: bearer-token parsing, routing a token to the verifier of its issuer,
and a cache of verified tokens.

Each issuer has its own verifier with its own pinned algorithms (our HS256 tokens;
Keycloak's RS256 through JWKS), chosen by the token's unverified `iss`: a token is
never checked with another issuer's key. Verifying costs ~25 us (HS256) to ~60 us
(RS256) and a busy client sends the same token hundreds of times, so verified
principals are cached by the exact token string until the token's own `exp`; a hit
skips the signature check but never extends a token's life, nor outlives the key that
verified it: an entry of an issuer whose keys rotate (Keycloak) is dropped once a JWKS
refresh no longer lists its `kid` (a dict lookup per hit). Revocation is not
cached: store operations re-check that the caller is live (the `_guard.lua` prelude)
in the same round trip that serves the request."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..errors import Code, Forbidden, InvalidToken
from .tokens import TokenService

LOCAL = "local"


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller. `user_id` is the shared user space: a local account's
    id in decimal, or a Keycloak user's `sub` (a UUID)."""

    user_id: str
    kind: str  # LOCAL, or the name of the external issuer ("keycloak")
    username: str
    exp: int
    sid: str = ""
    roles: tuple[str, ...] = ()
    email: str | None = None
    claims: dict[str, Any] = field(default_factory=dict)
    # An API key's scopes (None: not an API key). The key acts with these only, and
    # never with more than its owner holds.
    scopes: frozenset[str] | None = None
    api_key_id: str | None = None
    # The `kid` of the issuer's key that verified the token (issuers with a JWKS).
    key_id: str | None = None

    @property
    def account_id(self) -> int:
        """The local game account; game features need one."""
        if self.kind != LOCAL:
            raise Forbidden("this endpoint needs a local account", code=Code.FORBIDDEN)
        return int(self.user_id)


class Verifier(Protocol):
    async def verify(self, token: str) -> Principal: ...


class RotatingVerifier(Verifier, Protocol):
    """A verifier whose keys can be withdrawn (a JWKS): cached principals it verified
    are asked about on every cache hit."""

    def still_valid(self, key_id: str | None, now: float) -> bool:
        """Does the issuer still publish that key? Cheap (no I/O): it may start a
        refresh in the background when its keys are due for one."""
        ...


class LocalVerifier:
    """Our own HS256 tokens."""

    def __init__(self, tokens: TokenService) -> None:
        self._tokens = tokens

    async def verify(self, token: str) -> Principal:
        claims = self._tokens.verify(token)
        sub = claims["sub"]
        if not isinstance(sub, str) or not sub.isdigit():
            raise InvalidToken()
        return Principal(
            user_id=sub,
            kind=LOCAL,
            username=str(claims.get("preferred_username", "")),
            exp=int(claims["exp"]),
            sid=str(claims.get("sid", "")),
            claims=claims,
        )


def unverified_issuer(token: str) -> str:
    """The `iss` a token claims, read without trusting it (only to pick a verifier)."""

    parts = token.split(".")
    if len(parts) != 3:
        raise InvalidToken("the access token is malformed")
    try:
        payload = parts[1] + "=" * (-len(parts[1]) % 4)
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except (ValueError, TypeError):
        raise InvalidToken("the access token is malformed") from None
    iss = claims.get("iss") if isinstance(claims, dict) else None
    if not isinstance(iss, str):
        raise InvalidToken("the access token has no issuer")
    return iss


class ApiKeyResolver(Protocol):
    async def resolve(self, key: str) -> Principal: ...


class Authenticator:
    def __init__(
        self,
        *,
        verifiers: Mapping[str, Verifier],
        cache_size: int = 10_000,
        api_keys: ApiKeyResolver | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._verifiers = dict(verifiers)  # issuer -> verifier
        self._clock = clock
        # token -> (principal, the verifier to ask whether its key still counts, or
        # None when its keys never change at run time: our own secrets)
        self._cache: dict[str, tuple[Principal, RotatingVerifier | None]] = {}
        self._cache_size = cache_size
        self._api_keys = api_keys  # None: API keys are refused

    def add_issuer(self, issuer: str, verifier: Verifier) -> None:
        self._verifiers[issuer] = verifier

    async def authenticate(self, headers: Mapping[str, str]) -> Principal:
        """The caller, from `Authorization: Bearer <token>`, `Authorization: ApiKey
        <key>` or `X-API-Key: <key>`; InvalidToken otherwise."""
        authorization = headers.get("Authorization")
        api_key = headers.get("X-API-Key")
        if not authorization and not api_key:
            raise InvalidToken(
                "an Authorization: Bearer <token> header is required", code=Code.MISSING_TOKEN
            )
        if authorization:
            scheme, _, token = authorization.partition(" ")
            token = token.strip()
            if scheme.lower() == "apikey" and token:
                api_key = token
            elif scheme.lower() != "bearer" or not token:
                raise InvalidToken("the Authorization header must be 'Bearer <token>'")
            else:
                return await self.verify_token(token)
        if self._api_keys is None:
            raise InvalidToken("API keys are not accepted here")
        return await self._api_keys.resolve(api_key.strip())

    async def verify_token(self, token: str) -> Principal:
        """The principal of a bearer token (cached until its expiry); InvalidToken."""
        hit = self._cache.get(token)
        if hit is not None:
            principal, rotating = hit
            now = self._clock()
            if principal.exp > now and (
                rotating is None or rotating.still_valid(principal.key_id, now)
            ):
                return principal
            del self._cache[token]
        verifier = self._verifiers.get(unverified_issuer(token))
        if verifier is None:
            raise InvalidToken("the access token's issuer is not trusted here")
        principal = await verifier.verify(token)
        if self._cache_size:
            if len(self._cache) >= self._cache_size:
                # Evict the oldest entry (dicts keep insertion order): O(1), bounded.
                del self._cache[next(iter(self._cache))]
            rotating = verifier if hasattr(verifier, "still_valid") else None
            self._cache[token] = (principal, rotating)
        return principal
