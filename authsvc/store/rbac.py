"""Roles (one hash of definitions, changed by compare-and-set so concurrent edits cannot
create a cycle or lose each other), the roles users hold (a local account's in its
hash, an external user's in a set), and the members index."""

from __future__ import annotations

import json
from collections.abc import Callable

import redis.asyncio as redis

from . import keys
from .connection import LuaStep, lua_source, store_call
from .lexindex import LexIndexes


class RbacStore:
    def __init__(self, client: redis.Redis) -> None:
        self._r = client
        self._cas = LuaStep(client, lua_source("hash_cas"))
        self._change = LuaStep(client, lua_source("roles_change"))
        self._lex = LexIndexes(client)

    @store_call
    async def roles(self) -> dict[str, dict]:
        raw = await self._r.hgetall(keys.ROLES)
        return {name: json.loads(value) for name, value in raw.items()}

    @store_call
    async def seed(self, defaults: dict[str, dict]) -> None:
        pipe = self._r.pipeline(transaction=False)
        for name, definition in defaults.items():
            pipe.hsetnx(keys.ROLES, name, json.dumps({**definition, "builtin": True}))
        await pipe.execute()

    @store_call
    async def change_roles(self, change: Callable[[dict[str, dict]], dict[str, dict | None]]):
        """Optimistic update of the definitions: `change(current)` returns the roles to
        write (None deletes one); it runs again if another writer got in between."""
        while True:
            raw = await self._r.hgetall(keys.ROLES)
            updates = change({n: json.loads(v) for n, v in raw.items()})
            args: list[str | int] = [len(raw)]
            for pair in raw.items():
                args.extend(pair)
            for name, definition in updates.items():
                args += [name, "" if definition is None else json.dumps(definition)]
            if await self._cas(keys=[keys.ROLES], args=args):
                return updates

    @store_call
    async def user_roles(self, user_id: str) -> set[str]:
        if keys.is_local(user_id):
            return set((await self._r.hget(keys.account(user_id), keys.ROLES_FIELD) or "").split())
        return set(await self._r.smembers(keys.user_roles(user_id)))

    @store_call
    async def grant(self, user_id: str, role: str) -> bool:
        return await self._change_role(user_id, role, grant=True)

    @store_call
    async def revoke(self, user_id: str, role: str) -> bool:
        return await self._change_role(user_id, role, grant=False)

    async def _change_role(self, user_id: str, role: str, *, grant: bool) -> bool:
        # The user's roles are the truth; the members index follows (a crash between the
        # two is repaired by `authsvc check --fix`).
        if keys.is_local(user_id):
            op = "grant" if grant else "revoke"
            changed = await self._change(keys=[keys.account(user_id)], args=[op, role]) == 1
        else:
            change = self._r.sadd if grant else self._r.srem
            changed = bool(await change(keys.user_roles(user_id), role))
        index = self._lex.add if grant else self._lex.remove
        await index(keys.role_members(role), user_id)
        return changed

    @store_call
    async def members(self, role: str, *, after: str, limit: int) -> list[str]:
        return await self._lex.page(keys.role_members(role), after=after, limit=limit)

    @store_call
    async def publish_change(self, what: str) -> None:
        await self._r.publish(keys.RBAC_CHANNEL, what)
