"""Our own access tokens: HS256 JWTs signed with API_JWT_SECRET.

The header carries a `kid` derived from the secret, so after a rotation tokens signed
with a previous secret (API_JWT_PREVIOUS_SECRETS) still verify until they expire,
while only the current secret signs. Verification pins HS256 and requires
exp/iat/iss/aud/sub/jti."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt

from ..errors import InvalidToken

ALGORITHM = "HS256"
REQUIRED_CLAIMS = ["exp", "iat", "iss", "aud", "sub", "jti"]


def key_id(secret: str) -> str:
    """A public label for a secret: derived one-way, safe to put in a header."""
    return hashlib.sha256(b"authsvc-kid:" + secret.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str
    expires_in: int
    exp: int
    jti: str
    iat: int


class TokenService:
    def __init__(
        self,
        *,
        secret: str,
        previous_secrets: tuple[str, ...] = (),
        issuer: str,
        audience: str,
        ttl: int,
        leeway: int = 30,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.issuer = issuer
        self.audience = audience
        self.ttl = ttl
        self.leeway = leeway
        self._clock = clock
        self._kid = key_id(secret)
        self._secret = secret
        self._keys = {key_id(s): s for s in (*previous_secrets, secret)}
        # Keys that derive refresh-token successors (see sessions.service): current
        # first, then previous, so a secret rotation mid-race still finds the successor.
        self.successor_keys = tuple(
            hmac.new(s.encode(), b"authsvc-refresh-successor", hashlib.sha256).digest()
            for s in (secret, *previous_secrets)
        )

    def issue(
        self,
        *,
        subject: str,
        username: str,
        extra: dict[str, Any] | None = None,
        iat: int | None = None,
        jti: str | None = None,
    ) -> IssuedToken:
        """A signed token. Given the same iat and jti (and claims), the same token again:
        HS256 is deterministic, which lets a refresh inside the reuse window hand back
        the very access token it handed out the first time."""
        now = int(self._clock()) if iat is None else iat
        claims = {
            "sub": subject,
            # An account without a username (a guest) has no preferred_username.
            **({"preferred_username": username} if username else {}),
            "iss": self.issuer,
            "aud": self.audience,
            "iat": now,
            "exp": now + self.ttl,
            "jti": jti or secrets.token_urlsafe(16),
            **(extra or {}),
        }
        token = jwt.encode(claims, self._secret, algorithm=ALGORITHM, headers={"kid": self._kid})
        return IssuedToken(
            token=token, expires_in=self.ttl, exp=claims["exp"], jti=claims["jti"], iat=now
        )

    def verify(self, token: str) -> dict[str, Any]:
        """The claims of a valid token; InvalidToken for anything else."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise InvalidToken("the access token is malformed") from None
        if header.get("alg") != ALGORITHM:
            raise InvalidToken("the access token uses an algorithm this issuer never signs with")
        secret = self._secret_for(header.get("kid"))
        try:
            claims = jwt.decode(
                token,
                secret,
                algorithms=[ALGORITHM],
                audience=self.audience,
                issuer=self.issuer,
                # Times are checked below against the injected clock (pyjwt reads the
                # wall clock, which would make expiry untestable).
                options={
                    "require": REQUIRED_CLAIMS,
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                },
            )
        except jwt.PyJWTError:
            raise InvalidToken() from None
        check_times(claims, now=self._clock(), leeway=self.leeway)
        return claims

    def _secret_for(self, kid: object) -> str:
        if isinstance(kid, str):
            for known, secret in self._keys.items():
                if hmac.compare_digest(known, kid):
                    return secret
        raise InvalidToken("the access token was not signed by a key this service knows")


def check_times(claims: dict[str, Any], *, now: float, leeway: float) -> None:
    """exp (required), iat and nbf against `now`, with `leeway` seconds of clock skew."""
    times = {}
    for name in ("exp", "iat", "nbf"):
        value = claims.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidToken(f"the access token's {name} is not a number")
        times[name] = value
    if "exp" not in times:
        raise InvalidToken("the access token has no expiry")
    if times["exp"] <= now - leeway:
        raise InvalidToken("the access token has expired")
    if times.get("iat", now) > now + leeway or times.get("nbf", now) > now + leeway:
        raise InvalidToken("the access token is not valid yet")
