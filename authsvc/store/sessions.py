"""Sessions, refresh tokens and the account-wide revocations, each one Lua step on the
account's slot (`_sessions.lua` holds the shared revoke functions)."""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as redis

from . import keys
from .connection import GuardedStep, LuaStep, lua_source, store_call


@dataclass(frozen=True, slots=True)
class Rotation:
    outcome: str  # "rotated", "reused", "theft" or "invalid"
    sid: str = ""
    username: str = ""
    successor_iat: int = 0
    successor_jti: str = ""
    successor_hash: str = ""


def _pairs(flat: list[str]) -> dict[str, str]:
    it = iter(flat)
    return dict(zip(it, it, strict=True))


class SessionStore:
    def __init__(self, client: redis.Redis) -> None:
        self._r = client
        self._create = LuaStep(client, lua_source("session_create", "_sessions"))
        self._rotate = LuaStep(client, lua_source("refresh_rotate", "_sessions"))
        self._revoke = LuaStep(client, lua_source("session_revoke", "_sessions"))
        self._set_active = LuaStep(client, lua_source("account_set_active", "_sessions"))
        self._set_password = LuaStep(client, lua_source("password_set", "_sessions", "_link"))
        self._list = GuardedStep(client, "session_list")

    @store_call
    async def create(
        self,
        account_id: str,
        sid: str,
        token_hash: str,
        fields: dict[str, str],
        *,
        now_ms: int,
        ttl_ms: int,
        max_sessions: int,
    ) -> list[str] | None:
        """Store a new session with its first refresh token; returns the evicted sids,
        or None when the account is not live."""
        flat = [x for kv in fields.items() for x in kv]
        reply = await self._create(
            keys=[
                keys.account(account_id),
                keys.account_sessions(account_id),
                keys.session(account_id, sid),
                keys.session_refresh_tokens(account_id, sid),
                keys.refresh_token(account_id, token_hash),
            ],
            args=[
                now_ms,
                ttl_ms,
                max_sessions,
                sid,
                token_hash,
                keys.session_prefix(account_id),
                keys.refresh_prefix(account_id),
                *flat,
            ],
        )
        if reply[0] != "ok":
            return None
        return list(reply[1:])

    @store_call
    async def rotate(
        self,
        account_id: str,
        token_hash: str,
        successor_hash: str,
        *,
        now_ms: int,
        ttl_ms: int,
        reuse_window_ms: int,
        successor_iat: int,
        successor_jti: str,
    ) -> Rotation:
        reply = await self._rotate(
            keys=[
                keys.account(account_id),
                keys.account_sessions(account_id),
                keys.refresh_token(account_id, token_hash),
                keys.refresh_token(account_id, successor_hash),
            ],
            args=[
                now_ms,
                ttl_ms,
                reuse_window_ms,
                keys.session_prefix(account_id),
                keys.refresh_prefix(account_id),
                successor_hash,
                successor_iat,
                successor_jti,
            ],
        )
        outcome = reply[0]
        if outcome == "reused":
            return Rotation(outcome, reply[1], reply[2], int(reply[3]), reply[4], reply[5])
        if outcome == "rotated":
            return Rotation(outcome, reply[1], reply[2])
        return Rotation(outcome, reply[1] if len(reply) > 1 else "")

    @store_call
    async def revoke(self, account_id: str, *, mode: str, sid: str = "") -> int:
        """mode "one" (the session `sid`), "others" (all but `sid`) or "all"."""
        return int(
            await self._revoke(
                keys=[keys.account(account_id), keys.account_sessions(account_id)],
                args=[keys.session_prefix(account_id), keys.refresh_prefix(account_id), mode, sid],
            )
        )

    @store_call
    async def set_active(self, account_id: str, active: bool, *, now_ms: int) -> int | None:
        """Enable or disable; disabling revokes every session. None: no such account."""
        n = int(
            await self._set_active(
                keys=[keys.account(account_id), keys.account_sessions(account_id)],
                args=[
                    "1" if active else "0",
                    now_ms,
                    keys.session_prefix(account_id),
                    keys.refresh_prefix(account_id),
                ],
            )
        )
        return None if n < 0 else n

    @store_call
    async def set_password(
        self,
        account_id: str,
        password_hash: str,
        *,
        now_ms: int,
        keep_sid: str = "",
        reset_digest: str = "",
    ) -> int | None:
        """Set the password and revoke sessions (all but keep_sid). With a reset link's
        digest, only if it matches the pending, unexpired reset link. None: refused."""
        n = int(
            await self._set_password(
                keys=[keys.account(account_id), keys.account_sessions(account_id)],
                args=[
                    password_hash,
                    now_ms,
                    keys.session_prefix(account_id),
                    keys.refresh_prefix(account_id),
                    keep_sid,
                    reset_digest,
                ],
            )
        )
        return None if n < 0 else n

    @store_call
    async def list(self, account_id: str, *, sid: str) -> list[dict[str, str]] | None:
        """The account's live sessions, oldest first; None when the caller is not live."""
        reply = await self._list(
            account_id,
            sid,
            keys=[keys.account(account_id), keys.account_sessions(account_id)],
            args=[keys.session_prefix(account_id)],
        )
        if reply[0] != "ok":
            return None
        return [_pairs(flat) for flat in reply[1:] if flat]
