"""Favorites of one declared kind, in two keys per user and kind, changed together by
Lua (one slot: the user's hash tag):

- `by_target` (hash): target id -> "<created_ms:013d>:<uuid>", then ":<JSON>" of the
  kind's extra fields when it has any. The field is the unique (user, target) pair, and
  the value is the whole record: the user id is in the key and the target is the field.
- `index` (lex zset): "<created_ms:013d>:<target>", newest-first pages with stable
  cursors.

No hash per favorite: at ~250 bytes a key it was most of a favorite's cost, and both
small keys stay listpack-encoded (values and members of a UUID target fit in 64 bytes)."""

from __future__ import annotations

import json

import redis.asyncio as redis

from . import keys
from .connection import LuaStep, lua_source, store_call

_UUID_END = 14 + 36  # "<13 digits>:" then the uuid


def pack(created_ms: int, uuid: str, extra: dict[str, str]) -> str:
    value = f"{created_ms:013d}:{uuid}"
    return f"{value}:{json.dumps(extra, separators=(',', ':'))}" if extra else value


def unpack(user_id: str, target: str, value: str) -> dict[str, str]:
    record = {
        "uuid": value[14:_UUID_END],
        "user_id": user_id,
        "target": target,
        "created_ms": str(int(value[:13])),
    }
    if len(value) > _UUID_END:
        record |= json.loads(value[_UUID_END + 1 :])
    return record


class FavoriteStore:
    def __init__(self, client: redis.Redis, kind: str) -> None:
        self.kind = kind
        self._r = client
        self._add = LuaStep(client, lua_source("favorite_add"))
        self._remove = LuaStep(client, lua_source("favorite_remove"))
        self._list = LuaStep(client, lua_source("favorite_list"))

    def _keys(self, user_id: str) -> list[str]:
        return [
            keys.favorites_by_target(user_id, self.kind),
            keys.favorites_index(user_id, self.kind),
        ]

    @store_call
    async def add(
        self, user_id: str, target: str, uuid: str, created_ms: int, extra: dict[str, str]
    ) -> tuple[bool, dict[str, str]]:
        """(created, record): the new record, or the one that was already there."""
        value = pack(created_ms, uuid, extra)
        reply = await self._add(
            keys=self._keys(user_id), args=[target, value, f"{created_ms:013d}:{target}"]
        )
        return reply[0] == "created", unpack(user_id, target, reply[1])

    @store_call
    async def remove(self, user_id: str, target: str) -> dict[str, str] | None:
        reply = await self._remove(keys=self._keys(user_id), args=[target])
        return unpack(user_id, target, reply[1]) if reply[0] == "removed" else None

    @store_call
    async def page(self, user_id: str, *, cursor: str, limit: int) -> list[tuple[str, dict]]:
        """Newest first after `cursor` (an index member): [(member, record), ...]."""
        reply = await self._list(
            keys=self._keys(user_id), args=[f"({cursor}" if cursor else "+", limit]
        )
        pairs = zip(reply[::2], reply[1::2], strict=True)
        # An index entry whose pair is gone is skipped (a crash mid-script cannot leave
        # one: scripts are atomic; this only guards hand edits).
        return [(m, unpack(user_id, m[14:], v)) for m, v in pairs if v]

    @store_call
    async def purge(self, user_id: str) -> None:
        await self._r.delete(*self._keys(user_id))
