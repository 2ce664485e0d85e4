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

import asyncio
import contextlib
from dataclasses import dataclass

import redis.asyncio as redis

from ..platform import normalize
from . import connection, keys
from .connection import OUTAGE_ERRORS, GuardedStep, LuaStep, lua_source, store_call
from .identities import entry_json
from .lexindex import LexIndexes
from .records import Identity

PENDING_TIMEOUT_MS = keys.PENDING_TIMEOUT_MS


class ClaimTaken(Exception):
    def __init__(self, field: str) -> None:
        super().__init__(field)
        self.field = field


class RegistrationAbandoned(Exception):
    """Our pending account was taken for dead by a competing registration."""


@dataclass(frozen=True, slots=True)
class NewAccount:
    """An account to create. `username`, `email` and `password_hash` may be empty (a
    guest, a sign-in through a provider): what is empty is not claimed, not listed and
    matches no login. `identity` is linked in the same registration (its claim taken
    like the username's)."""

    id: int
    username: str
    email: str
    username_lc: str
    email_lc: str
    password_hash: str
    created_at_ms: int
    roles: tuple[str, ...] = ()
    email_verified: bool = False
    identity: Identity | None = None


class AccountStore:
    def __init__(
        self, client: redis.Redis, *, pending_timeout_ms: int = PENDING_TIMEOUT_MS
    ) -> None:
        self._r = client
        self._pending_timeout_ms = pending_timeout_ms
        self._create_pending = LuaStep(client, lua_source("account_create_pending"))
        self._activate = LuaStep(client, lua_source("account_activate"))
        self._abandon = LuaStep(client, lua_source("account_abandon"))
        self._delete_pending = LuaStep(client, lua_source("account_delete_pending"))
        self._claim_release = LuaStep(client, lua_source("claim_release"))
        self._claim_takeover = LuaStep(client, lua_source("claim_takeover"))
        self._hset_if_exists = LuaStep(client, lua_source("hset_if_exists"))
        self._me = GuardedStep(client, "account_me")
        self._live_check = GuardedStep(client, "principal_live")
        self._verify_email = LuaStep(client, lua_source("email_verify", "_link"))
        self._delete = LuaStep(client, lua_source("account_delete", "_sessions"))
        self._set_identity = LuaStep(client, lua_source("account_set_identity"))
        self._set_credentials = GuardedStep(client, "account_set_credentials")
        self._identity_put = LuaStep(client, lua_source("identity_put"))
        self._lex = LexIndexes(client)

    @staticmethod
    def _slot_keys(aid: str) -> list[str]:
        """The account hash and the keys of its slot deleted with it by the scripts that
        delete a (pending) account."""
        return [keys.account(aid), keys.account_identities(aid)]

    @store_call
    async def create(self, acc: NewAccount, *, now_ms: int) -> bool:
        """Runs the registration steps. False: the id is in use (pick another).
        Raises ClaimTaken(field) when the username, email or identity is taken."""
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
            "email_verified": "1" if acc.email_verified else "0",
            "pending": "1",
        }
        flat = [x for kv in fields.items() for x in kv]
        if not await self._create_pending(keys=[akey], args=[" ".join(acc.roles), *flat]):
            return False
        # The identity first: of concurrent first sign-ins of one identity, the losers
        # fail on it (and sign in to the winner), not on its username or email.
        wanted = [
            ("username", keys.username_claim(acc.username_lc) if acc.username else None),
            ("email", keys.email_claim(acc.email_lc) if acc.email else None),
        ]
        claims: list[str] = []  # attempted: a claim's SET may land with its reply lost
        try:
            if acc.identity is not None:
                ident = acc.identity
                await self._identity_put(
                    keys=[akey, keys.account_identities(aid), akey],
                    args=[
                        keys.identity_field(ident.kind, ident.digest),
                        entry_json(ident),
                        ident.slug,
                        "1",
                        "oidc:",
                        now_ms,
                    ],
                )
                wanted.insert(0, ("identity", keys.identity_claim(ident.kind, ident.digest)))
            for field, claim in wanted:
                if claim is None:
                    continue
                claims.append(claim)
                await self._claim(claim, aid, field, now_ms=now_ms)
            if not await self._activate(keys=[akey]):
                raise RegistrationAbandoned()
            await self.index(aid, acc.username_lc, acc.email_lc, acc.created_at_ms, acc.roles)
        except BaseException:
            await self._undo(akey, aid, claims)
            raise
        return True

    async def _undo(self, akey: str, aid: str, claims: list[str]) -> None:
        """Undo a failed registration, best effort and bounded (after a timeout the
        step's own bound has run out; an unbounded clean-up on a stalled connection
        would hang the request). The account goes first, and only while pending: if it
        is live, its activation reached the store (only the reply was lost), the
        registration happened, and it keeps its claims. Otherwise the claims are
        released (compare-and-delete). What this cannot do (store gone) is the crash
        state described above."""
        with contextlib.suppress(TimeoutError, *OUTAGE_ERRORS):
            async with asyncio.timeout(connection.COMMAND_TIMEOUT):
                pending = await self._delete_pending(keys=self._slot_keys(aid))
                if not pending and await self._r.exists(akey):
                    return
                for claim in claims:
                    await self._claim_release(keys=[claim], args=[aid])

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
            if await self._abandon(keys=self._slot_keys(holder), args=[cutoff]):
                if await self._claim_takeover(keys=[key], args=[holder, aid]):
                    return
                continue
            raise ClaimTaken(field)
        raise ClaimTaken(field)

    @store_call
    async def resolve(self, claim_key: str, *, field: str, value_lc: str) -> dict[str, str] | None:
        """The live account a claim names, or None (no claim, pending, or stale: the
        account's current `field` no longer normalises to the claimed value). Two round
        trips either way (without a claim, the second reads keys.NO_ACCOUNT), so the
        time does not tell whether the name or address is registered."""
        aid = await self._r.get(claim_key)
        acc = await self._live(keys.NO_ACCOUNT if aid is None else aid)
        if acc is None or normalize.normalizer(field)(acc.get(field, "")) != value_lc:
            return None
        return acc

    async def _live(self, aid: str) -> dict[str, str] | None:
        acc = await self._r.hgetall(keys.account(aid))
        if not acc or acc.get("pending") == "1":
            return None
        return acc

    @store_call
    async def get(self, account_id: int | str) -> dict[str, str] | None:
        return await self._live(str(account_id))

    @store_call
    async def is_live(self, account_id: int | str, *, sid: str) -> bool:
        """Is the account active and the session (if any) not revoked? One round trip."""
        reply = await self._live_check(account_id, sid, keys=[keys.account(account_id)])
        return reply[0] == "ok"

    @store_call
    async def get_for_caller(self, account_id: int | str, *, sid: str) -> dict[str, str] | None:
        """The account, if it and the caller's session are live (one guarded step)."""
        reply = await self._me(account_id, sid, keys=[keys.account(account_id)])
        if reply[0] != "ok":
            return None
        it = iter(reply[1])
        return dict(zip(it, it, strict=True))

    @store_call
    async def update_fields(self, account_id: int | str, fields: dict[str, str]) -> bool:
        flat = [x for kv in fields.items() for x in kv]
        return bool(await self._hset_if_exists(keys=[keys.account(account_id)], args=flat))

    @store_call
    async def put_link(self, account_id: str, field: str, digest: str, *, expires_ms: int) -> bool:
        """Store a single-use link's digest (keys.VERIFY_LINK or keys.RESET_LINK) in the
        account, replacing any earlier one: only the newest link works. False when the
        account is gone (it is not recreated as a stub)."""
        return bool(
            await self._hset_if_exists(
                keys=[keys.account(account_id)], args=[field, f"{expires_ms}.{digest}"]
            )
        )

    @store_call
    async def verify_email(self, account_id: str, digest: str, *, now_ms: int) -> bool:
        return bool(
            await self._verify_email(keys=[keys.account(account_id)], args=[digest, now_ms])
        )

    @store_call
    async def index(
        self,
        aid: str,
        username_lc: str,
        email_lc: str,
        created_ms: int,
        roles: tuple[str, ...] = (),
    ) -> None:
        """Add the account to the admin listing indexes (derived; after activation)."""
        await self._lex.add_each(
            [
                *((keys.role_members(role), aid) for role in roles),
                *keys.listing_entries(aid, username_lc, email_lc, created_ms),
            ]
        )

    @store_call
    async def unindex(self, aid: str, username_lc: str, email_lc: str, created_ms: int) -> None:
        await self._lex.remove_each(keys.listing_entries(aid, username_lc, email_lc, created_ms))

    @store_call
    async def page_by_created(self, *, cursor: str, limit: int) -> list[str]:
        """Members "<created_ms, 13 digits>:<id>", newest first, after `cursor`."""
        return await self._lex.page(keys.USERS_BY_CREATED, after=cursor, reverse=True, limit=limit)

    @store_call
    async def page_by_prefix(
        self, index: str, prefix: str, *, cursor: str, limit: int
    ) -> list[str]:
        """Index members starting with `prefix`, in order, after `cursor` (a member)."""
        return await self._lex.page(index, prefix=prefix, after=cursor, limit=limit)

    @store_call
    async def get_many(self, ids: list[str]) -> list[dict[str, str]]:
        pipe = self._r.pipeline(transaction=False)
        for aid in ids:
            pipe.hgetall(keys.account(aid))
        return [a for a in await pipe.execute() if a and a.get("pending") != "1"]

    @store_call
    async def delete(self, account_id: str) -> dict | None:
        """Delete the account with everything in its slot, then its claims (username,
        email, identities) and index entries (compare-and-delete: a claim already taken
        over is left alone). Returns what was deleted (username, email, roles), or None."""
        identities = [
            name.split(":")
            for name in await self._r.hkeys(keys.account_identities(account_id))
            if name.count(":") == 1
        ]
        reply = await self._delete(keys=self._slot_keys(account_id))
        if not reply:
            return None
        username, email, created, *roles = reply
        claims = [keys.identity_claim(kind, digest) for kind, digest in identities]
        if username:
            claims.append(keys.username_claim(normalize.username_lc(username)))
        if email:
            claims.append(keys.email_claim(normalize.email_lc(email)))
        for claim in claims:
            await self._claim_release(keys=[claim], args=[account_id])
        await self.unindex(
            account_id, normalize.username_lc(username), normalize.email_lc(email), int(created)
        )
        return {"username": username, "email": email, "roles": roles}

    @store_call
    async def change_identity(
        self, account_id: str, field: str, old: str, new: str, *, now_ms: int
    ) -> None:
        """Move a username or email: claim the new value (SET NX, stale takeover as at
        registration), compare-and-set the account, release the old claim. A crash in
        between leaves a claim that does not match the account: `resolve` ignores it and
        `authsvc check --fix` releases it. Raises ClaimTaken or RegistrationAbandoned.
        An empty `old` (an account without one yet) has no claim to release."""
        norm = normalize.normalizer(field)
        claim = keys.username_claim if field == "username" else keys.email_claim
        new_claim = claim(norm(new))
        old_claim = claim(norm(old)) if old else None
        if new_claim != old_claim:
            await self._claim(new_claim, account_id, field, now_ms=now_ms)
        if not await self._set_identity(
            keys=[keys.account(account_id)], args=[field, old, new, now_ms]
        ):
            if new_claim != old_claim:
                await self._claim_release(keys=[new_claim], args=[account_id])
            raise RegistrationAbandoned()
        if old_claim is not None and new_claim != old_claim:
            await self._claim_release(keys=[old_claim], args=[account_id])
        acc = await self._r.hgetall(keys.account(account_id))
        await self._relist(account_id, field, old, acc.get(field, new))

    async def _relist(self, account_id: str, field: str, old: str, current: str) -> None:
        norm = normalize.normalizer(field)
        index = keys.USERS_BY_USERNAME if field == "username" else keys.USERS_BY_EMAIL
        sep = ":" if field == "username" else " "
        stale = f"{norm(old)}{sep}{account_id}" if old else None
        fresh = f"{norm(current)}{sep}{account_id}"
        if stale is not None and stale != fresh:  # in this order: a case-only change keeps it
            await self._lex.remove(index, stale)
        await self._lex.add(index, fresh)

    @store_call
    async def set_credentials(
        self,
        account_id: str,
        *,
        sid: str,
        old_username: str,
        old_email: str,
        username: str,
        email: str,
        password_hash: str,
        email_verified: bool,
        now_ms: int,
    ) -> str:
        """Give an account without a password its username, email and password at once:
        claim the new username and email (as registration does), compare-and-set the
        account (only while it still has no password and the values read), then release
        the old claims and move the listing entries. Returns "ok", "credentials_set" or
        "gone" (account or session not live, or changed meanwhile). Raises ClaimTaken."""
        changes = []
        for field, old, new in (("username", old_username, username), ("email", old_email, email)):
            norm = normalize.normalizer(field)
            claim = keys.username_claim if field == "username" else keys.email_claim
            old_claim = claim(norm(old)) if old else None
            new_claim = claim(norm(new))
            changes.append((field, old, new, old_claim, new_claim))
        taken: list[str] = []
        try:
            for field, _old, _new, old_claim, new_claim in changes:
                if new_claim != old_claim:
                    taken.append(new_claim)
                    await self._claim(new_claim, account_id, field, now_ms=now_ms)
            reply = await self._set_credentials(
                account_id,
                sid,
                keys=[keys.account(account_id)],
                args=[
                    old_username,
                    old_email,
                    username,
                    email,
                    password_hash,
                    "1" if email_verified else "0",
                    now_ms,
                ],
            )
        except BaseException:
            for claim in taken:
                with contextlib.suppress(TimeoutError, *OUTAGE_ERRORS):
                    await self._claim_release(keys=[claim], args=[account_id])
            raise
        status = reply[0] if isinstance(reply, list) else reply
        if status != "ok":
            for claim in taken:
                await self._claim_release(keys=[claim], args=[account_id])
            return "gone" if status == "unauthenticated" else status
        for field, old, new, old_claim, new_claim in changes:
            if old_claim is not None and old_claim != new_claim:
                await self._claim_release(keys=[old_claim], args=[account_id])
            await self._relist(account_id, field, old, new)
        return "ok"
