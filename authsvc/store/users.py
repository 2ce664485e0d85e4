"""The users record of external (Keycloak) users, keyed by their `sub`, and their listing
index for administration."""

from __future__ import annotations

import redis.asyncio as redis

from . import keys
from .connection import LuaStep, lua_source, store_call
from .lexindex import LexIndexes


class UserStore:
    def __init__(self, client: redis.Redis) -> None:
        self._r = client
        self._upsert = LuaStep(client, lua_source("user_upsert"))
        self._hset_if_exists = LuaStep(client, lua_source("hset_if_exists"))
        self._delete = LuaStep(client, lua_source("external_user_delete"))
        self._lex = LexIndexes(client)

    @store_call
    async def upsert(self, user_id: str, *, display_name: str, email: str, now_ms: int) -> int:
        """Create or sync the record; 1 created (and listed), 2 updated, 0 unchanged."""
        outcome = int(
            await self._upsert(keys=[keys.user_record(user_id)], args=[display_name, email, now_ms])
        )
        if outcome == 1:  # derived, after the record: `authsvc check --fix` repairs a gap
            await self._lex.add(
                keys.USERS_EXTERNAL_BY_CREATED, keys.external_listing_entry(user_id, now_ms)
            )
        return outcome

    @store_call
    async def get(self, user_id: str) -> dict[str, str] | None:
        return await self._r.hgetall(keys.user_record(user_id)) or None

    @store_call
    async def get_many(self, user_ids: list[str]) -> list[dict[str, str]]:
        pipe = self._r.pipeline(transaction=False)
        for uid in user_ids:
            pipe.hgetall(keys.user_record(uid))
        return [u for u in await pipe.execute() if u]

    @store_call
    async def is_live(self, user_id: str) -> bool:
        """Not disabled by an administrator (a user not seen yet is live: its token's
        verification creates the record)."""
        return await self._r.hget(keys.user_record(user_id), "is_active") != "0"

    @store_call
    async def set_active(self, user_id: str, active: bool, *, now_ms: int) -> bool:
        """False when there is no such record."""
        return bool(
            await self._hset_if_exists(
                keys=[keys.user_record(user_id)],
                args=["is_active", "1" if active else "0", "updated_at", now_ms],
            )
        )

    @store_call
    async def page_by_created(self, *, cursor: str, limit: int) -> list[str]:
        """Members "<created_ms, 13 digits>:<sub>", newest first, after `cursor`."""
        return await self._lex.page(
            keys.USERS_EXTERNAL_BY_CREATED, after=cursor, reverse=True, limit=limit
        )

    @store_call
    async def delete(self, user_id: str) -> bool:
        """Delete the record, roles, API keys and activity index, and unlist it."""
        created = await self._delete(
            keys=[
                keys.user_record(user_id),
                keys.user_roles(user_id),
                keys.user_api_keys(user_id),
                keys.user_activity(user_id),
            ],
            args=[keys.api_key(user_id, ""), 3],
        )
        if not created:
            return False
        await self._lex.remove(
            keys.USERS_EXTERNAL_BY_CREATED, keys.external_listing_entry(user_id, int(created))
        )
        return True
