"""API keys: one hash per key (only the key's SHA-256 is stored) and a per-owner index,
changed together in MULTI (one slot: the owner's hash tag)."""

from __future__ import annotations

import redis.asyncio as redis

from . import keys
from .connection import LuaStep, lua_source, store_call


def _pairs(flat: list[str]) -> dict[str, str]:
    it = iter(flat)
    return dict(zip(it, it, strict=True))


class ApiKeyStore:
    def __init__(self, client: redis.Redis) -> None:
        self._r = client
        self._auth = LuaStep(client, lua_source("apikey_auth"))
        self._hset_if_exists = LuaStep(client, lua_source("hset_if_exists"))

    @store_call
    async def create(self, owner: str, key_id: str, fields: dict[str, str]) -> None:
        pipe = self._r.pipeline(transaction=True)
        pipe.hset(keys.api_key(owner, key_id), mapping=fields)
        pipe.zadd(keys.user_api_keys(owner), {key_id: int(fields["created_at"])})
        await pipe.execute()

    @store_call
    async def list(self, owner: str) -> list[dict[str, str]]:
        ids = await self._r.zrange(keys.user_api_keys(owner), 0, -1)
        pipe = self._r.pipeline(transaction=False)
        for key_id in ids:
            pipe.hgetall(keys.api_key(owner, key_id))
        return [k for k in await pipe.execute() if k]

    @store_call
    async def get(self, owner: str, key_id: str) -> dict[str, str] | None:
        return await self._r.hgetall(keys.api_key(owner, key_id)) or None

    @store_call
    async def update(self, owner: str, key_id: str, fields: dict[str, str]) -> bool:
        flat = [x for pair in fields.items() for x in pair]
        return bool(await self._hset_if_exists(keys=[keys.api_key(owner, key_id)], args=flat))

    @store_call
    async def delete(self, owner: str, key_id: str) -> bool:
        pipe = self._r.pipeline(transaction=True)
        pipe.delete(keys.api_key(owner, key_id))
        pipe.zrem(keys.user_api_keys(owner), key_id)
        deleted, _ = await pipe.execute()
        return bool(deleted)

    @store_call
    async def authenticate(
        self, owner: str, key_id: str, key_hash: str, *, now_ms: int, local: bool, owner_key: str
    ) -> dict[str, str] | None:
        reply = await self._auth(
            keys=[keys.api_key(owner, key_id), owner_key],
            args=[key_hash, now_ms, "1" if local else "0"],
        )
        return _pairs(reply[1:]) if reply[0] == "ok" else None
