"""Roles (one hash of definitions, changed by compare-and-set so concurrent edits cannot
create a cycle or lose each other), the roles users hold (a local account's in its
hash, an external user's in a set), and the members index."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import secrets
import time
from collections.abc import AsyncIterator, Callable

import redis.asyncio as redis

from ..errors import StoreUnavailable
from . import connection, keys
from .connection import OUTAGE_ERRORS, LuaStep, lua_source, store_call
from .lexindex import LexIndexes

log = logging.getLogger("authsvc.store.rbac")


class LeaseBusy(Exception):
    """Another process held the superuser lease for the whole wait."""


class RbacStore:
    def __init__(self, client: redis.Redis) -> None:
        self._r = client
        self._cas = LuaStep(client, lua_source("hash_cas"))
        self._change = LuaStep(client, lua_source("roles_change"))
        self._release = LuaStep(client, lua_source("claim_release"))  # compare-and-delete
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
    async def live_roles(self, user_id: str) -> set[str] | None:
        """The roles of a user who can act now: an external user an administrator has not
        disabled, or a local account that exists, finished registering and is active.
        None for anyone else."""
        if keys.is_local(user_id):
            active, pending, roles = await self._r.hmget(
                keys.account(user_id), "is_active", "pending", keys.ROLES_FIELD
            )
            if active != "1" or pending == "1":
                return None
            return set((roles or "").split())
        # One slot ({sub}): the record's flag and the roles in one round trip.
        pipe = self._r.pipeline(transaction=False)
        pipe.hget(keys.user_record(user_id), "is_active")
        pipe.smembers(keys.user_roles(user_id))
        active, roles = await pipe.execute()
        if active == "0":  # (no record: not seen yet, live as UserStore.is_live says)
            return None
        return set(roles)

    @contextlib.asynccontextmanager
    async def superuser_lease(self, *, wait: float = 5.0) -> AsyncIterator[None]:
        """Hold SUPERUSER_LEASE (SET NX PX with a random token) for the body, waiting up
        to `wait` seconds for it; LeaseBusy if it stays taken.

        The changes it serializes touch accounts in many slots (the holder checked, the
        others counted), so on a cluster no one script can make them atomic: a lease
        can. The body is bounded to half the lease (StoreUnavailable past it), so it
        ends before the lease could expire under it; a crashed holder's lease expires
        by itself; only the holder's token releases it (compare-and-delete)."""
        step = connection.COMMAND_TIMEOUT
        lease_ms = int(max(10.0, 8 * step) * 1000)
        token = secrets.token_hex(16)
        deadline = time.monotonic() + wait
        while not await self._take_lease(token, lease_ms):
            if time.monotonic() > deadline:
                raise LeaseBusy()
            await asyncio.sleep(random.uniform(0.005, 0.025))  # jitter: waiters not in step
        try:
            async with asyncio.timeout(lease_ms / 2000):
                yield
        except TimeoutError as exc:
            raise StoreUnavailable() from exc
        finally:
            try:
                async with asyncio.timeout(step):
                    await self._release(keys=[keys.SUPERUSER_LEASE], args=[token])
            except (*OUTAGE_ERRORS, TimeoutError):
                log.warning("superuser lease not released; it expires in %d ms", lease_ms)

    @store_call
    async def _take_lease(self, token: str, lease_ms: int) -> bool:
        return bool(await self._r.set(keys.SUPERUSER_LEASE, token, nx=True, px=lease_ms))

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
