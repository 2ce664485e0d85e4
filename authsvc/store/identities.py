"""Identities other than a password that sign in to an account: OIDC identities (issuer,
sub) and game devices.

Each is a claim key (`identity:<kind>:<digest>` -> account id, `SET NX`: one identity,
one account) plus an entry in the account's `account:{A}:identities` hash. The two live
in different slots, so they are ordered like registration's claims: linking takes the
claim, then writes the entry (only if the account and the caller's session are live);
unlinking removes the entry (refusing the last way to sign in, in the same script), then
releases the claim. The entry is the truth: a claim whose account lacks it (a crash in
between) signs nobody in, is taken over by the next link or registration of that
identity, and `authsvc check --fix` releases it."""

from __future__ import annotations

import json

import redis.asyncio as redis

from . import keys
from .connection import LuaStep, lua_source, store_call
from .records import Identity, LinkOutcome, SignIn


def entry_json(identity: Identity) -> str:
    """The JSON an identity keeps in its account's hash (empty parts left out)."""
    data = {
        "slug": identity.slug,
        "issuer": identity.issuer,
        "sub": identity.sub,
        "name": identity.name,
        "linked_at": identity.linked_at_ms,
    }
    return json.dumps({k: v for k, v in data.items() if v != ""}, separators=(",", ":"))


def identity_of(kind: str, digest: str, raw: str, used: str | None, roles: str | None) -> Identity:
    meta = json.loads(raw)
    return Identity(
        kind=kind,
        digest=digest,
        linked_at_ms=int(meta.get("linked_at", 0)),
        slug=meta.get("slug", ""),
        issuer=meta.get("issuer", ""),
        sub=meta.get("sub", ""),
        name=meta.get("name", ""),
        last_used_ms=int(used) if used else None,
        roles=tuple((roles or "").split()),
    )


class IdentityStore:
    def __init__(self, client: redis.Redis, *, pending_timeout_ms: int = keys.PENDING_TIMEOUT_MS):
        self._r = client
        self._pending_timeout_ms = pending_timeout_ms
        self._sign_in = LuaStep(client, lua_source("identity_signin"))
        self._put = LuaStep(client, lua_source("identity_put"))
        self._remove = LuaStep(client, lua_source("identity_remove"))
        self._held = LuaStep(client, lua_source("identity_held"))
        self._release = LuaStep(client, lua_source("claim_release"))
        self._takeover = LuaStep(client, lua_source("claim_takeover"))
        self._hset_if_exists = LuaStep(client, lua_source("hset_if_exists"))

    @store_call
    async def holder(self, kind: str, digest: str) -> str | None:
        """The account the identity's claim names (maybe stale: see `sign_in`)."""
        return await self._r.get(keys.identity_claim(kind, digest))

    @store_call
    async def sign_in(
        self, account_id: str, kind: str, digest: str, *, now_ms: int
    ) -> SignIn | str:
        """The account, if it is live and holds the identity (its last sign-in stamped);
        otherwise "disabled" or "gone"."""
        reply = await self._sign_in(
            keys=[keys.account(account_id), keys.account_identities(account_id)],
            args=[keys.identity_field(kind, digest), now_ms],
        )
        if reply[0] != "ok":
            return reply[0]
        _, username, roles, entry, asserted = reply
        identity = identity_of(kind, digest, entry, str(now_ms), asserted)
        return SignIn(account_id, username, tuple(roles.split()), identity)

    async def _is_held(self, account_id: str, kind: str, digest: str, *, now_ms: int) -> bool:
        return bool(
            await self._held(
                keys=[keys.account(account_id), keys.account_identities(account_id)],
                args=[keys.identity_field(kind, digest), now_ms - self._pending_timeout_ms],
            )
        )

    @store_call
    async def release_if_stale(self, kind: str, digest: str, holder: str, *, now_ms: int) -> bool:
        """Release a claim whose account no longer holds the identity; True if it was."""
        if await self._is_held(holder, kind, digest, now_ms=now_ms):
            return False
        claim = keys.identity_claim(kind, digest)
        return bool(await self._release(keys=[claim], args=[holder]))

    @store_call
    async def link(
        self, account_id: str, identity: Identity, *, sid: str, now_ms: int
    ) -> LinkOutcome:
        """Link the identity to a live account (and, with `sid`, a live session)."""
        kind, digest = identity.kind, identity.digest
        claim = keys.identity_claim(kind, digest)
        took = False
        for _ in range(5):
            if await self._r.set(claim, account_id, nx=True):
                took = True
                break
            holder = await self._r.get(claim)
            if holder is None:
                continue  # released meanwhile
            if holder == account_id:
                break  # ours already (a retry, or the entry is being repaired)
            if await self._is_held(holder, kind, digest, now_ms=now_ms):
                return LinkOutcome("elsewhere", holder)
            if await self._takeover(keys=[claim], args=[holder, account_id]):
                took = True
                break
        else:
            return LinkOutcome("elsewhere")
        akey = keys.account(account_id)
        status = await self._put(
            keys=[
                akey,
                keys.account_identities(account_id),
                keys.session(account_id, sid) if sid else akey,
            ],
            args=[
                keys.identity_field(kind, digest),
                entry_json(identity),
                identity.slug,
                "0",
                "oidc:",
                "",
            ],
        )
        if status in ("gone", "slot_taken") and took:
            await self._release(keys=[claim], args=[account_id])
        return LinkOutcome(status)

    @store_call
    async def unlink(
        self, account_id: str, kind: str, *, slug: str = "", digest_prefix: str = ""
    ) -> list[str] | str:
        """Remove the account's identities of `kind` linked through `slug` (or whose digest
        starts with `digest_prefix`), then release their claims. Returns the digests
        removed, "last" (refused: nothing else would sign in) or "none"."""
        mode, value = ("slug", slug) if slug else ("prefix", digest_prefix)
        reply = await self._remove(
            keys=[keys.account(account_id), keys.account_identities(account_id)],
            args=[f"{kind}:", mode, value],
        )
        if reply[0] != "ok":
            return reply[0]
        for digest in reply[1:]:
            await self._release(keys=[keys.identity_claim(kind, digest)], args=[account_id])
        return list(reply[1:])

    @store_call
    async def list(self, account_id: str) -> list[Identity]:
        raw = await self._r.hgetall(keys.account_identities(account_id))
        out = []
        for name, value in raw.items():
            if name.count(":") != 1:
                continue  # a `:used` or `:roles` field
            kind, digest = name.split(":")
            out.append(
                identity_of(kind, digest, value, raw.get(f"{name}:used"), raw.get(f"{name}:roles"))
            )
        return sorted(out, key=lambda i: (i.linked_at_ms, i.digest))

    @store_call
    async def set_roles(self, account_id: str, kind: str, digest: str, roles: tuple[str, ...]):
        """Remember the local roles the provider asserted at this sign-in."""
        field = keys.identity_field(kind, digest) + ":roles"
        await self._hset_if_exists(
            keys=[keys.account_identities(account_id)], args=[field, " ".join(sorted(roles))]
        )

    @store_call
    async def release_all(self, account_id: str) -> int:
        """Release the claims of every identity of the account (before it is deleted;
        its identities hash goes with it)."""
        raw = await self._r.hkeys(keys.account_identities(account_id))
        released = 0
        for name in raw:
            if name.count(":") == 1:
                kind, digest = name.split(":")
                claim = keys.identity_claim(kind, digest)
                released += int(await self._release(keys=[claim], args=[account_id]))
        return released
