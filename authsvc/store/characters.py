"""Characters: a hash per character plus the owner's index, changed together by
Lua scripts that first check the caller's account is live (the `_guard.lua` prelude)."""

from __future__ import annotations

from collections.abc import Sequence

import redis.asyncio as redis

from . import keys
from .connection import GuardedStep, store_call


class Unauthenticated(Exception):
    """The caller's account is gone, pending or disabled."""


class CharacterNotFound(Exception):
    pass


class CharacterLimit(Exception):
    pass


class IdCollision(Exception):
    pass


def _status(reply: Sequence) -> str:
    status = reply[0]
    if status == "unauthenticated":
        raise Unauthenticated()
    if status == "not_found":
        raise CharacterNotFound()
    if status == "limit":
        raise CharacterLimit()
    if status == "collision":
        raise IdCollision()
    return status


def _pairs(flat: Sequence[str]) -> dict[str, str]:
    it = iter(flat)
    return dict(zip(it, it, strict=True))


class CharacterStore:
    def __init__(self, client: redis.Redis) -> None:
        self._create = GuardedStep(client, "character_create")
        self._list = GuardedStep(client, "character_list")
        self._get = GuardedStep(client, "character_get")
        self._update = GuardedStep(client, "character_update")
        self._delete = GuardedStep(client, "character_delete")

    @store_call
    async def create(
        self, account_id: int, character: dict[str, str], *, cap: int, sid: str = ""
    ) -> None:
        cid = character["id"]
        flat = [x for kv in character.items() for x in kv]
        reply = await self._create(
            account_id,
            sid,
            keys=[
                keys.account(account_id),
                keys.account_characters(account_id),
                keys.character(account_id, cid),
            ],
            args=[cap, cid, character["created_at"], *flat],
        )
        _status(reply)

    @store_call
    async def list(self, account_id: int, *, sid: str = "") -> list[dict[str, str]]:
        reply = await self._list(
            account_id,
            sid,
            keys=[keys.account(account_id), keys.account_characters(account_id)],
            args=[keys.character_prefix(account_id)],
        )
        _status(reply)
        # An index entry without its hash is skipped (`authsvc check` reports it).
        return [_pairs(flat) for flat in reply[1:] if flat]

    @store_call
    async def get(self, account_id: int, character_id: int, *, sid: str = "") -> dict[str, str]:
        reply = await self._get(
            account_id,
            sid,
            keys=[keys.account(account_id), keys.character(account_id, character_id)],
        )
        _status(reply)
        return _pairs(reply[1])

    @store_call
    async def update(
        self, account_id: int, character_id: int, changes: dict[str, str], *, sid: str = ""
    ) -> dict[str, str]:
        flat = [x for kv in changes.items() for x in kv]
        reply = await self._update(
            account_id,
            sid,
            keys=[keys.account(account_id), keys.character(account_id, character_id)],
            args=[*flat],
        )
        _status(reply)
        return _pairs(reply[1])

    @store_call
    async def delete(self, account_id: int, character_id: int, *, sid: str = "") -> None:
        reply = await self._delete(
            account_id,
            sid,
            keys=[
                keys.account(account_id),
                keys.account_characters(account_id),
                keys.character(account_id, character_id),
            ],
            args=[character_id],
        )
        _status(reply)
