"""Profiles, preferences and follows: per-user keys under the user's hash tag."""

from __future__ import annotations

import json

import redis.asyncio as redis

from . import keys
from .connection import LuaStep, lua_source, store_call


class PreferencesTooLarge(Exception):
    pass


class ProfileStore:
    def __init__(self, client: redis.Redis) -> None:
        self._r = client
        self._cas = LuaStep(client, lua_source("string_cas"))
        self._follow = LuaStep(client, lua_source("follow_add"))

    @store_call
    async def profile(self, user_id: str) -> dict[str, str]:
        return await self._r.hgetall(keys.profile(user_id))

    @store_call
    async def update_profile(
        self, user_id: str, changes: dict[str, str | None], now_ms: int
    ) -> dict[str, str]:
        key = keys.profile(user_id)
        pipe = self._r.pipeline(transaction=True)
        gone = [k for k, v in changes.items() if v is None]
        kept = {k: v for k, v in changes.items() if v is not None}
        if gone:
            pipe.hdel(key, *gone)
        pipe.hset(key, mapping={**kept, "updated_at": str(now_ms)})
        pipe.hgetall(key)
        return (await pipe.execute())[-1]

    @store_call
    async def preferences(self, user_id: str) -> dict:
        raw = await self._r.get(keys.preferences(user_id))
        return json.loads(raw) if raw else {}

    @store_call
    async def merge_preferences(self, user_id: str, patch: dict, *, max_bytes: int) -> dict:
        """Merge top-level keys (null deletes one), atomically with WATCH/MULTI."""
        key = keys.preferences(user_id)
        while True:
            raw = await self._r.get(key)
            merged = json.loads(raw) if raw else {}
            for name, value in patch.items():
                if value is None:
                    merged.pop(name, None)
                else:
                    merged[name] = value
            encoded = json.dumps(merged, separators=(",", ":"), ensure_ascii=False)
            if len(encoded.encode()) > max_bytes:
                raise PreferencesTooLarge()
            expected = ["1", raw] if raw is not None else ["0", ""]
            if await self._cas(keys=[key], args=[*expected, encoded]):
                return merged

    @store_call
    async def follow(self, user_id: str, target: str, now_ms: int) -> bool:
        # The follower's own set is the truth; the target's followers set follows it,
        # with the same score (`authsvc check` compares them).
        added, score = await self._follow(keys=[keys.following(user_id)], args=[target, now_ms])
        await self._r.zadd(keys.followers(target), {user_id: int(float(score))}, nx=True)
        return bool(added)

    @store_call
    async def unfollow(self, user_id: str, target: str) -> bool:
        removed = await self._r.zrem(keys.following(user_id), target)
        await self._r.zrem(keys.followers(target), user_id)
        return bool(removed)

    @store_call
    async def page(self, key: str, *, cursor: str, limit: int) -> list[tuple[str, int]]:
        """Newest first; the cursor is "<ms>:<id>" of the last entry returned."""
        if not cursor:
            rows = await self._r.zrevrange(key, 0, limit - 1, withscores=True)
            return [(m, int(s)) for m, s in rows]
        score, _, last = cursor.partition(":")
        rows = await self._r.zrevrangebyscore(
            key, score, "-inf", start=0, num=limit + 256, withscores=True
        )
        out = [
            (m, int(s))
            for m, s in rows
            if int(s) < int(score) or (int(s) == int(score) and m < last)
        ]
        return out[:limit]

    @store_call
    async def all_ids(self, key: str) -> list[str]:
        return await self._r.zrange(key, 0, -1)

    @store_call
    async def purge(self, user_id: str) -> None:
        """Forget the user's profile, preferences and follows, both ways."""
        for target in await self._r.zrange(keys.following(user_id), 0, -1):
            await self._r.zrem(keys.followers(target), user_id)
        for fan in await self._r.zrange(keys.followers(user_id), 0, -1):
            await self._r.zrem(keys.following(fan), user_id)
        await self._r.delete(
            keys.profile(user_id),
            keys.preferences(user_id),
            keys.following(user_id),
            keys.followers(user_id),
        )
