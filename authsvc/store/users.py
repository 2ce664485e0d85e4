"""The users record of external (Keycloak) users, keyed by their `sub`."""

from __future__ import annotations

import redis.asyncio as redis

from . import keys
from .connection import LuaStep, lua_source, store_call


class UserStore:
    def __init__(self, client: redis.Redis) -> None:
        self._r = client
        self._upsert = LuaStep(client, lua_source("user_upsert"))

    @store_call
    async def upsert(self, user_id: str, *, display_name: str, email: str, now_ms: int) -> int:
        return int(
            await self._upsert(keys=[keys.user_record(user_id)], args=[display_name, email, now_ms])
        )

    @store_call
    async def get(self, user_id: str) -> dict[str, str] | None:
        return await self._r.hgetall(keys.user_record(user_id)) or None

    @store_call
    async def delete(self, user_id: str) -> None:
        await self._r.delete(
            keys.user_record(user_id),
            keys.user_roles(user_id),
            keys.user_api_keys(user_id),
            keys.user_activity(user_id),
        )
