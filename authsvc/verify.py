"""Verify an authsvc access token inside another Python service, without a network call.

    from authsvc.verify import verify_token, InvalidToken

    claims = verify_token(token, secret=os.environ["API_JWT_SECRET"],
                          issuer="authsvc", audience="authsvc")
    user_id, session_id = claims["sub"], claims.get("sid")

This checks the signature (HS256 only), issuer, audience, expiry and the required
claims, exactly as authsvc does. It cannot know about revocation (a logged-out session
or a disabled account): a service that must know asks authsvc instead, with
`POST /api/v1/tokens/introspect`."""

from __future__ import annotations

import time
from typing import Any

from .errors import InvalidToken
from .identity.tokens import TokenService

__all__ = ["InvalidToken", "verify_token"]


def verify_token(
    token: str,
    *,
    secret: str,
    issuer: str = "authsvc",
    audience: str = "authsvc",
    previous_secrets: tuple[str, ...] = (),
    leeway: int = 30,
) -> dict[str, Any]:
    """The token's claims if it is valid; raises InvalidToken otherwise."""
    service = TokenService(
        secret=secret,
        previous_secrets=previous_secrets,
        issuer=issuer,
        audience=audience,
        ttl=60,
        leeway=leeway,
        clock=time.time,
    )
    return service.verify(token)
