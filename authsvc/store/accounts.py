"""Account hashes and the username/email claim keys.

Registration spans three slots (the account and two claims), so it cannot be one
script on a cluster. It is ordered so that a crash at any point leaves only state a
later registration or `authsvc check --fix` repairs:

1. the account hash is written with `pending=1` (invisible to login);
2. the username claim, then the email claim, are taken with `SET NX`;
3. the account is activated (`pending` removed), only if still pending.

A claim counts as free when the account it names is missing, or stayed pending past
`pending_timeout_ms` (that registration died); a competing registration then deletes
the dead account (only if still pending: `account_abandon.lua`) and takes the claim
over with compare-and-set. A registration that was abandoned that way finds its
account gone at step 3 and releases what it still holds."""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as redis

from . import keys
from .connection import guarded_lua_source, lua_source, store_call

PENDING_TIMEOUT_MS = 60_000


class ClaimTaken(Exception):
    def __init__(self, field: str) -> None:
        super().__init__(field)
        self.field = field


class RegistrationAbandoned(Exception):
    """Our pending account was taken for dead by a competing registration."""


@dataclass(frozen=True, slots=True)
class NewAccount:
    id: int
    username: str
    email: str
    username_lc: str
    email_lc: str
    password_hash: str
    created_at_ms: int


class AccountStore:
    def __init__(
        self, client: redis.Redis, *, pending_timeout_ms: int = PENDING_TIMEOUT_MS
    ) -> None:
        self._r = client
        self._pending_timeout_ms = pending_timeout_ms
        s = client.register_script
        self._create_pending = s(lua_source("account_create_pending"))
        self._activate = s(lua_source("account_activate"))
        self._abandon = s(lua_source("account_abandon"))
        self._delete_pending = s(lua_source("account_delete_pending"))
        self._claim_release = s(lua_source("claim_release"))
        self._claim_takeover = s(lua_source("claim_takeover"))
        self._hset_if_exists = s(lua_source("hset_if_exists"))
        self._me = s(guarded_lua_source("account_me"))
        self._verify_email = s(lua_source("email_verify"))

    @store_call
    async def create(self, acc: NewAccount, *, now_ms: int) -> bool:
        """Runs the registration steps. False: the id is in use (pick another).
        Raises ClaimTaken(field) when the username or email is taken."""
        akey = keys.account(acc.id)
        aid = str(acc.id)
        fields = {
            "id": aid,
            "username": acc.username,
            "email": acc.email,
            "password": acc.password_hash,
            "created_at": str(acc.created_at_ms),
            "updated_at": str(acc.created_at_ms),
            "is_active": "1",
            "email_verified": "0",
            "pending": "1",
        }
        flat = [x for kv in fields.items() for x in kv]
        if not await self._create_pending(keys=[akey], args=flat):
            return False
        held: list[str] = []
        try:
            for field, claim in (
                ("username", keys.username_claim(acc.username_lc)),
                ("email", keys.email_claim(acc.email_lc)),
            ):
                await self._claim(claim, aid, field, now_ms=now_ms)
                held.append(claim)
            if not await self._activate(keys=[akey]):
                raise RegistrationAbandoned()
        except BaseException:
            # Best effort: if this fails too (store gone), the pending account and
            # its claims are exactly the crash state described above.
            for claim in held:
                await self._claim_release(keys=[claim], args=[aid])
            await self._delete_pending(keys=[akey])
            raise
        return True

    async def _claim(self, key: str, aid: str, field: str, *, now_ms: int) -> None:
        for _ in range(5):
            if await self._r.set(key, aid, nx=True):
                return
            holder = await self._r.get(key)
            if holder is None:
                continue  # released meanwhile: try again
            if holder == aid:
                return
            cutoff = now_ms - self._pending_timeout_ms
            if await self._abandon(keys=[keys.account(holder)], args=[cutoff]):
                if await self._claim_takeover(keys=[key], args=[holder, aid]):
                    return
                continue
            raise ClaimTaken(field)
        raise ClaimTaken(field)

    @store_call
    async def resolve(self, claim_key: str) -> dict[str, str] | None:
        """The live account a claim names, or None (no claim, stale claim, pending)."""
        aid = await self._r.get(claim_key)
        if aid is None:
            return None
        return await self._live(aid)

    async def _live(self, aid: str) -> dict[str, str] | None:
        acc = await self._r.hgetall(keys.account(aid))
        if not acc or acc.get("pending") == "1":
            return None
        return acc

    @store_call
    async def get(self, account_id: int | str) -> dict[str, str] | None:
        return await self._live(str(account_id))

    @store_call
    async def get_for_caller(self, account_id: int | str, *, sid: str) -> dict[str, str] | None:
        """The account, if it and the caller's session are live (one guarded step)."""
        reply = await self._me(keys=[keys.account(account_id)], args=[sid])
        if reply[0] != "ok":
            return None
        it = iter(reply[1])
        return dict(zip(it, it, strict=True))

    @store_call
    async def update_fields(self, account_id: int | str, fields: dict[str, str]) -> bool:
        flat = [x for kv in fields.items() for x in kv]
        return bool(await self._hset_if_exists(keys=[keys.account(account_id)], args=flat))

    @store_call
    async def put_link_token(self, key: str, token_hash: str, *, ttl_ms: int) -> None:
        """Store a single-use link token's hash (verification or reset), replacing any
        earlier one: only the newest link works."""
        pipe = self._r.pipeline(transaction=True)
        pipe.delete(key)
        pipe.hset(key, "hash", token_hash)
        pipe.pexpire(key, ttl_ms)
        await pipe.execute()

    @store_call
    async def verify_email(self, account_id: str, token_hash: str, *, now_ms: int) -> bool:
        return bool(
            await self._verify_email(
                keys=[keys.account(account_id), keys.email_verification(account_id)],
                args=[token_hash, now_ms],
            )
        )
