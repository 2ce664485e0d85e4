"""Who is calling: bearer-token parsing and a cache of verified tokens.

Verifying an HS256 token costs ~25 us of pyjwt; a busy client sends the same token
hundreds of times. Verified claims are cached by the exact token string until the
token's own `exp`, so a hit skips the signature check but never extends a token's
life. Revocation is not cached: every store operation re-checks that the account is
live (the `_guard.lua` prelude), in the same round trip that serves the request."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import Code, InvalidToken
from .tokens import TokenService


@dataclass(frozen=True, slots=True)
class Principal:
    account_id: int
    username: str
    sid: str
    exp: int
    claims: dict[str, Any]


class Authenticator:
    def __init__(
        self,
        *,
        tokens: TokenService,
        cache_size: int = 10_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._tokens = tokens
        self._clock = clock
        self._cache: dict[str, Principal] = {}
        self._cache_size = cache_size

    def authenticate(self, authorization: str | None) -> Principal:
        """The principal for an `Authorization` header value; InvalidToken otherwise."""
        if not authorization:
            raise InvalidToken(
                "an Authorization: Bearer <token> header is required", code=Code.MISSING_TOKEN
            )
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise InvalidToken("the Authorization header must be 'Bearer <token>'")
        now = self._clock()
        hit = self._cache.get(token)
        if hit is not None:
            if hit.exp > now:
                return hit
            del self._cache[token]
        principal = self._verify(token)
        if self._cache_size:
            if len(self._cache) >= self._cache_size:
                # Evict the oldest entry (dicts keep insertion order): O(1), bounded.
                del self._cache[next(iter(self._cache))]
            self._cache[token] = principal
        return principal

    def _verify(self, token: str) -> Principal:
        claims = self._tokens.verify(token)
        try:
            account_id = int(claims["sub"])
        except (TypeError, ValueError):
            raise InvalidToken() from None
        return Principal(
            account_id=account_id,
            username=str(claims.get("preferred_username", "")),
            sid=str(claims.get("sid", "")),
            exp=int(claims["exp"]),
            claims=claims,
        )
