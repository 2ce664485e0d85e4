"""RFC 7662 introspection: is this token active, and for whom.

Our tokens are active while their signature, issuer, audience and expiry hold and
their account and session are live; Keycloak tokens while their issuer's verifier
accepts them. Anything else is `{"active": false}`, with no reason given."""

from __future__ import annotations

from ..errors import InvalidToken
from ..rbac.service import Authorizer
from ..store.accounts import AccountStore
from .principal import LOCAL, Authenticator


class Introspector:
    def __init__(
        self, *, authenticator: Authenticator, accounts: AccountStore, authorizer: Authorizer
    ) -> None:
        self._authn = authenticator
        self._accounts = accounts
        self._authz = authorizer

    async def introspect(self, token: str) -> dict:
        try:
            p = await self._authn.verify_token(token.strip())
        except InvalidToken:
            return {"active": False}
        if p.kind == LOCAL and await self._accounts.get_for_caller(p.user_id, sid=p.sid) is None:
            return {"active": False}
        perms = await self._authz.permissions(p)
        return {
            "active": True,
            "sub": p.user_id,
            "username": p.username,
            "scope": " ".join(sorted(perms)),
            "exp": p.exp,
            "iat": p.claims.get("iat"),
            "iss": p.claims.get("iss"),
            "aud": p.claims.get("aud"),
            "token_type": "Bearer",
            "sid": p.sid or None,
            "client_id": p.claims.get("azp"),
        }
