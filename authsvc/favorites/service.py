"""Favorites: add (idempotent, catalog-checked), remove, list newest first with a
stable cursor, and the administrative listing. One service per declared kind."""

from __future__ import annotations

import re
import time
import uuid as uuidlib

from ..audit.service import Audit
from ..errors import Code, DomainError, NotFound, ValidationFailed
from ..identity.principal import Principal
from ..platform.catalog import Catalog
from ..platform.clock import Clock, iso, to_ms
from ..store.favorites import FavoriteStore
from .kinds import FavoriteKind

CURSOR = r"[0-9]{13}:[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}"  # an index member
CURSOR_RE = re.compile(f"^{CURSOR}\\Z")


class FavoriteService:
    def __init__(
        self,
        *,
        kind: FavoriteKind,
        store: FavoriteStore,
        catalog: Catalog,
        audit: Audit,
        user_exists,
        clock: Clock = time.time,
    ) -> None:
        self.kind = kind
        self._store = store
        self._catalog = catalog
        self._audit = audit
        self._user_exists = user_exists  # async (user_id) -> bool
        self._clock = clock

    def view(self, rec: dict[str, str]) -> dict:
        k = self.kind
        out = {
            k.uuid_field: rec["uuid"],
            "user_id": rec["user_id"],
            k.target_field: rec["target"],
            "created_at": iso(rec["created_ms"]),
        }
        for name, fld in k.extra.items():
            raw = rec.get(name)
            if raw in (None, ""):
                out[name] = None
            else:
                out[name] = int(raw) if fld.__class__.__name__ == "Integer" else raw
        return out

    async def add(self, principal: Principal, target: str, extra: dict) -> tuple[bool, dict]:
        k = self.kind
        if k.catalog_kind and not await self._catalog.exists(k.catalog_kind, target):
            raise DomainError(
                f"no {k.catalog_kind} '{target}' in the catalog",
                code=Code.UNKNOWN_ITEM,
                fields={k.target_field: [f"Unknown {k.catalog_kind}."]},
            )
        now_ms = to_ms(self._clock())
        fav_uuid = str(uuidlib.uuid4())
        fields = {name: str(v) for name, v in extra.items() if v is not None}
        created, stored = await self._store.add(principal.user_id, target, fav_uuid, now_ms, fields)
        if created:
            await self._audit.record(
                "favorite_added",
                user_id=principal.user_id,
                username=principal.username,
                kind=k.name,
                favorite_uuid=fav_uuid,
                **{k.target_field: target},
            )
        return created, self.view(stored)

    async def remove(self, principal: Principal, target: str) -> None:
        removed = await self._store.remove(principal.user_id, target)
        if removed is None:
            raise NotFound(f"no favorite {self.kind.target_field} '{target}'")
        await self._audit.record(
            "favorite_removed",
            user_id=principal.user_id,
            username=principal.username,
            kind=self.kind.name,
            favorite_uuid=removed["uuid"],
            **{self.kind.target_field: target},
        )

    async def page_of(self, user_id: str, *, cursor: str, limit: int) -> dict:
        """Another user's favorites (an administrator's view): a user that does not exist,
        or no longer does, is a 404, not an empty page."""
        if not await self._user_exists(user_id):
            raise NotFound("no such user")
        return await self.page(user_id, cursor=cursor, limit=limit)

    async def page(self, user_id: str, *, cursor: str, limit: int) -> dict:
        if cursor and not CURSOR_RE.match(cursor):
            raise ValidationFailed(fields={"cursor": ["Not a cursor from this API."]})
        rows = await self._store.page(user_id, cursor=cursor, limit=limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        return {
            "items": [self.view(rec) for _, rec in rows],
            "next_cursor": rows[-1][0] if more else None,
        }

    async def purge(self, user_id: str) -> None:
        await self._store.purge(user_id)
