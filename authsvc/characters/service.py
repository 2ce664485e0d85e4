"""Character rules: create within the per-account cap, list, read, rename, delete.
Every operation is one store round trip that also checks the caller is still live."""

from __future__ import annotations

import time

from ..errors import DomainError, InvalidToken, LimitReached, NotFound
from ..platform.clock import Clock, iso, to_ms
from ..platform.ids import MAX_ID, new_id
from ..store.characters import (
    CharacterLimit,
    CharacterNotFound,
    CharacterStore,
    IdCollision,
    Unauthenticated,
)


def character_view(c: dict[str, str]) -> dict:
    return {
        "id": int(c["id"]),
        "account_id": int(c["account_id"]),
        "name": c["name"],
        "description": c.get("description", ""),
        "sex": int(c["sex"]),
        "race": int(c["race"]),
        "created_at": iso(c["created_at"]),
    }


class CharacterService:
    def __init__(self, *, store: CharacterStore, cap: int, clock: Clock = time.time) -> None:
        self._store = store
        self._cap = cap
        self._clock = clock

    async def create(
        self, account_id: int, *, name: str, description: str, sex: int, race: int, sid: str = ""
    ) -> dict:
        for _ in range(3):
            c = {
                "id": str(new_id()),
                "account_id": str(account_id),
                "name": name,
                "description": description,
                "sex": str(sex),
                "race": str(race),
                "created_at": str(to_ms(self._clock())),
            }
            try:
                await self._store.create(account_id, c, cap=self._cap, sid=sid)
            except IdCollision:
                continue
            except CharacterLimit:
                raise LimitReached(f"an account may have at most {self._cap} characters") from None
            except Unauthenticated:
                raise _gone() from None
            return character_view(c)
        raise DomainError("could not allocate a character id")

    async def list(self, account_id: int, *, sid: str = "") -> list[dict]:
        try:
            return [character_view(c) for c in await self._store.list(account_id, sid=sid)]
        except Unauthenticated:
            raise _gone() from None

    async def get(self, account_id: int, character_id: int, *, sid: str = "") -> dict:
        _check_id(character_id)
        try:
            return character_view(await self._store.get(account_id, character_id, sid=sid))
        except Unauthenticated:
            raise _gone() from None
        except CharacterNotFound:
            raise _missing() from None

    async def update(
        self,
        account_id: int,
        character_id: int,
        *,
        name: str | None = None,
        description: str | None = None,
        sid: str = "",
    ) -> dict:
        _check_id(character_id)
        changes = {k: v for k, v in (("name", name), ("description", description)) if v is not None}
        try:
            c = await self._store.update(account_id, character_id, changes, sid=sid)
        except Unauthenticated:
            raise _gone() from None
        except CharacterNotFound:
            raise _missing() from None
        return character_view(c)

    async def delete(self, account_id: int, character_id: int, *, sid: str = "") -> None:
        _check_id(character_id)
        try:
            await self._store.delete(account_id, character_id, sid=sid)
        except Unauthenticated:
            raise _gone() from None
        except CharacterNotFound:
            raise _missing() from None


def _check_id(character_id: int) -> None:
    if not 0 < character_id <= MAX_ID:
        raise _missing()


def _missing() -> NotFound:
    # Not yours and not there are one answer: ids of other players' characters are
    # never confirmed.
    return NotFound("character not found")


def _gone() -> InvalidToken:
    return InvalidToken("the account behind this token is gone or disabled")
