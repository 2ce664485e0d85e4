"""Favorites of one declared kind: the record, the unique (user, target) pair and the
time index, changed together by Lua (one slot: the user's hash tag)."""

from __future__ import annotations

import redis.asyncio as redis

from . import keys
from .connection import lua_source, store_call


def _pairs(flat: list[str]) -> dict[str, str]:
    it = iter(flat)
    return dict(zip(it, it, strict=True))


class FavoriteStore:
    def __init__(self, client: redis.Redis, kind: str) -> None:
        self.kind = kind
        s = client.register_script
        self._add = s(lua_source("favorite_add"))
        self._remove = s(lua_source("favorite_remove"))
        self._list = s(lua_source("favorite_list"))
        self._purge = s(lua_source("favorites_purge"))

    def _keys(self, user_id: str) -> list[str]:
        return [
            keys.favorites_by_target(user_id, self.kind),
            keys.favorites_index(user_id, self.kind),
        ]

    @store_call
    async def add(
        self, user_id: str, target: str, uuid: str, created_ms: int, record: dict[str, str]
    ) -> tuple[bool, dict[str, str]]:
        """(created, record): the new record, or the one that was already there."""
        flat = [x for kv in record.items() for x in kv]
        reply = await self._add(
            keys=self._keys(user_id),
            args=[
                target,
                uuid,
                f"{created_ms:013d}:{uuid}",
                keys.favorite_prefix(user_id, self.kind),
                *flat,
            ],
        )
        if reply[0] == "created":
            return True, record
        return False, _pairs(reply[1:])

    @store_call
    async def remove(self, user_id: str, target: str) -> dict[str, str] | None:
        reply = await self._remove(
            keys=self._keys(user_id), args=[target, keys.favorite_prefix(user_id, self.kind)]
        )
        return _pairs(reply[1:]) if reply[0] == "removed" else None

    @store_call
    async def page(self, user_id: str, *, cursor: str, limit: int) -> list[tuple[str, dict]]:
        """Newest first after `cursor` (an index member): [(member, record), ...]."""
        reply = await self._list(
            keys=[keys.favorites_index(user_id, self.kind)],
            args=[f"({cursor}" if cursor else "+", limit, keys.favorite_prefix(user_id, self.kind)],
        )
        return [(reply[i], _pairs(reply[i + 1])) for i in range(0, len(reply), 2) if reply[i + 1]]

    @store_call
    async def purge(self, user_id: str) -> None:
        await self._purge(keys=self._keys(user_id), args=[keys.favorite_prefix(user_id, self.kind)])
