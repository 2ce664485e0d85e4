"""Accounts reached through an identity that is not a password (an OIDC identity, a game
device): finding the account that holds one, registering a new account with one, and the
caller's own identities (link, list, unlink). Shared by the sign-in through providers
(authsvc.federation) and the guests of game clients (authsvc.devices). No HTTP here."""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

from ..errors import Code, Conflict, Forbidden, InvalidToken, NotFound
from ..platform.clock import Clock, to_ms
from ..store.records import Identity, LinkOutcome, SignIn


class IdentityStorePort(Protocol):
    async def holder(self, kind: str, digest: str) -> str | None: ...
    async def sign_in(
        self, account_id: str, kind: str, digest: str, *, now_ms: int
    ) -> SignIn | str: ...
    async def release_if_stale(
        self, kind: str, digest: str, holder: str, *, now_ms: int
    ) -> bool: ...
    async def link(
        self, account_id: str, identity: Identity, *, sid: str, now_ms: int
    ) -> LinkOutcome: ...
    async def unlink(
        self, account_id: str, kind: str, *, slug: str = "", digest_prefix: str = ""
    ) -> list[str] | str: ...
    async def list(self, account_id: str) -> list[Identity]: ...
    async def set_roles(
        self, account_id: str, kind: str, digest: str, roles: tuple[str, ...]
    ) -> None: ...


class RegistrarPort(Protocol):
    async def register_federated(
        self,
        *,
        username: str,
        email: str,
        email_verified: bool,
        identity: Identity,
        roles: tuple[str, ...] | None = None,
        ip: str | None = None,
    ) -> str: ...


LAST_WAY = (
    "this is the account's last way to sign in; set a password "
    "(POST /api/v1/users/me/credentials) or link another first"
)


class IdentityAccounts:
    def __init__(
        self, *, store: IdentityStorePort, registrar: RegistrarPort, clock: Clock = time.time
    ) -> None:
        self.store = store
        self._registrar = registrar
        self._clock = clock

    def _now_ms(self) -> int:
        return to_ms(self._clock())

    async def find(self, identity: Identity) -> SignIn | None:
        """The live account holding the identity (its sign-in stamped), or None. A
        disabled one is Forbidden; a stale claim (its account no longer holds the
        identity) is released, so the identity is free again."""
        holder = await self.store.holder(identity.kind, identity.digest)
        if holder is None:
            return None
        now_ms = self._now_ms()
        found = await self.store.sign_in(holder, identity.kind, identity.digest, now_ms=now_ms)
        if found == "disabled":
            raise Forbidden("this account is disabled", code=Code.ACCOUNT_DISABLED)
        if isinstance(found, SignIn):
            return found
        await self.store.release_if_stale(identity.kind, identity.digest, holder, now_ms=now_ms)
        return None

    async def register(
        self,
        identity: Identity,
        *,
        username: str = "",
        email: str = "",
        roles: tuple[str, ...] | None = None,
        ip: str | None = None,
    ) -> SignIn:
        """A new account holding the identity. When a concurrent registration of the
        same identity wins, its account (once live). Conflict USERNAME_TAKEN or
        EMAIL_TAKEN for the caller to choose again."""
        try:
            account_id = await self._registrar.register_federated(
                username=username,
                email=email,
                email_verified=bool(email),
                identity=identity,
                roles=roles,
                ip=ip,
            )
        except Conflict as exc:
            if exc.code != Code.IDENTITY_TAKEN:
                raise
            for delay in (0, 0.02, 0.05, 0.1, 0.2, 0.4):  # the winner goes live shortly
                await asyncio.sleep(delay)
                found = await self.find(identity)
                if found is not None:
                    return found
            raise
        return SignIn(account_id, username, tuple(roles or ()), identity)

    async def link(self, account_id: str, identity: Identity, *, sid: str) -> LinkOutcome:
        """Link the identity to the account; Conflict when another account holds it,
        InvalidToken when the account or session is no longer live."""
        outcome = await self.store.link(account_id, identity, sid=sid, now_ms=self._now_ms())
        if outcome.status == "elsewhere":
            what = "this identity at the provider" if identity.kind == "oidc" else "this device"
            raise Conflict(
                f"{what} is linked to another account", code=Code.IDENTITY_LINKED_ELSEWHERE
            )
        if outcome.status == "slot_taken":
            raise Conflict(
                "your account is linked to another identity at this provider; unlink it first",
                code=Code.PROVIDER_ALREADY_LINKED,
            )
        if outcome.status == "gone":
            raise InvalidToken("the account or session is no longer live; sign in and retry")
        return outcome

    async def unlink(
        self, account_id: str, kind: str, *, slug: str = "", digest_prefix: str = ""
    ) -> list[str]:
        removed = await self.store.unlink(account_id, kind, slug=slug, digest_prefix=digest_prefix)
        if removed == "none":
            raise NotFound("no such identity is linked to this account")
        if removed == "last":
            raise Conflict(LAST_WAY, code=Code.LAST_SIGN_IN_METHOD)
        return removed

    async def of_kind(self, account_id: str, kind: str) -> list[Identity]:
        return [i for i in await self.store.list(account_id) if i.kind == kind]
