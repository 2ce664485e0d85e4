"""Profiles, preferences, follows and the data rights (export, deletion) of a user,
local account or Keycloak user alike."""

from __future__ import annotations

import re
import time

from ..accounts.service import AccountService
from ..admin.service import AdminService
from ..apikeys.service import ApiKeyService
from ..audit.service import Audit, AuditReader
from ..characters.service import CharacterService
from ..errors import Code, DomainError, NotFound, ValidationFailed
from ..favorites.service import FavoriteService
from ..identity.principal import LOCAL, Principal
from ..platform.clock import Clock, iso, to_ms
from ..store import keys
from ..store.profiles import PreferencesTooLarge, ProfileStore
from ..store.rbac import RbacStore

PROFILE_FIELDS = ("display_name", "bio", "avatar_url", "location", "website", "privacy")
PREFERENCES_MAX_BYTES = 16 * 1024
CURSOR = r"[0-9]{1,16}:[0-9A-Za-z-]{1,64}"  # "<since ms>:<user id>"
CURSOR_RE = re.compile(f"^{CURSOR}\\Z")


class ProfileService:
    def __init__(
        self,
        *,
        store: ProfileStore,
        accounts: AccountService,
        admin: AdminService,
        characters: CharacterService,
        favorites: dict[str, FavoriteService],
        api_keys: ApiKeyService,
        rbac: RbacStore,
        audit: Audit,
        audit_reader: AuditReader,
        user_exists,
        clock: Clock = time.time,
    ) -> None:
        self._store = store
        self._accounts = accounts
        self._admin = admin
        self._characters = characters
        self._favorites = favorites
        self._api_keys = api_keys
        self._rbac = rbac
        self._audit = audit
        self._reader = audit_reader
        self._user_exists = user_exists
        self._clock = clock

    def _profile_view(self, raw: dict[str, str]) -> dict:
        view = {name: raw.get(name) for name in PROFILE_FIELDS}
        view["privacy"] = view["privacy"] or "public"
        return view

    async def me(self, principal: Principal) -> dict:
        if principal.kind == LOCAL:
            base = await self._accounts.me(principal.account_id, sid=principal.sid)
        else:
            base = await self._accounts.external_me(principal)
        return {**base, "profile": self._profile_view(await self._store.profile(principal.user_id))}

    async def update_profile(self, principal: Principal, changes: dict) -> dict:
        await self._store.update_profile(principal.user_id, changes, to_ms(self._clock()))
        await self._audit.record(
            "profile_updated",
            user_id=principal.user_id,
            username=principal.username,
            fields=",".join(sorted(changes)),
        )
        return await self.me(principal)

    async def preferences(self, principal: Principal) -> dict:
        return await self._store.preferences(principal.user_id)

    async def merge_preferences(self, principal: Principal, patch: dict) -> dict:
        try:
            return await self._store.merge_preferences(
                principal.user_id, patch, max_bytes=PREFERENCES_MAX_BYTES
            )
        except PreferencesTooLarge:
            raise ValidationFailed(
                f"preferences are limited to {PREFERENCES_MAX_BYTES} bytes of JSON",
                fields={"_body": ["Too large once merged."]},
            ) from None

    # -- follows -------------------------------------------------------------------------

    async def follow(self, principal: Principal, target: str) -> bool:
        if target == principal.user_id:
            # Well-formed, so not a 422: the caller may follow others, not themself.
            raise DomainError(
                "you cannot follow yourself",
                code=Code.FORBIDDEN,
                fields={"user_id": ["Not yourself."]},
            )
        if not await self._user_exists(target):
            raise NotFound("no such user")
        added = await self._store.follow(principal.user_id, target, to_ms(self._clock()))
        if added:
            await self._audit.record(
                "followed",
                user_id=principal.user_id,
                username=principal.username,
                target_user=target,
            )
        return added

    async def unfollow(self, principal: Principal, target: str) -> bool:
        removed = await self._store.unfollow(principal.user_id, target)
        if removed:
            await self._audit.record(
                "unfollowed",
                user_id=principal.user_id,
                username=principal.username,
                target_user=target,
            )
        return removed

    async def follows(
        self, principal: Principal, *, direction: str, cursor: str, limit: int
    ) -> dict:
        if cursor and not CURSOR_RE.match(cursor):
            raise ValidationFailed(fields={"cursor": ["Not a cursor from this API."]})
        key = (keys.following if direction == "following" else keys.followers)(principal.user_id)
        rows = await self._store.page(key, cursor=cursor, limit=limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        return {
            "items": [{"user_id": uid, "since": iso(ms)} for uid, ms in rows],
            "next_cursor": f"{rows[-1][1]}:{rows[-1][0]}" if more else None,
        }

    # -- data rights ---------------------------------------------------------------------

    async def export(self, principal: Principal) -> dict:
        """Everything stored about the caller, as one document."""
        uid = principal.user_id
        doc: dict = {"exported_at": iso(to_ms(self._clock())), "user": await self.me(principal)}
        doc["preferences"] = await self._store.preferences(uid)
        doc["roles"] = sorted(await self._rbac.user_roles(uid))
        if principal.kind == LOCAL:
            doc["characters"] = await self._characters.list(principal.account_id, sid=principal.sid)
        doc["favorites"] = {}
        for name, service in self._favorites.items():
            items, cursor = [], ""
            while True:
                page = await service.page(uid, cursor=cursor, limit=100)
                items += page["items"]
                if not page["next_cursor"]:
                    break
                cursor = page["next_cursor"]
            doc["favorites"][name] = items
        doc["following"] = await self._store.all_ids(keys.following(uid))
        doc["followers"] = await self._store.all_ids(keys.followers(uid))
        doc["api_keys"] = await self._api_keys.list(principal)
        activity, cursor = [], None
        for _ in range(20):  # the newest 2000 events
            page = await self._reader.page(user_id=uid, cursor=cursor, limit=100)
            activity += page["items"]
            cursor = page["next_cursor"]
            if not cursor:
                break
        doc["activity"] = activity
        return doc

    async def delete_me(self, principal: Principal) -> None:
        if principal.kind == LOCAL:
            await self._admin.delete_user(principal.user_id, actor=None)
            return
        async with self._admin.guard.removing(principal.user_id, actor=None):
            for key in await self._api_keys.list(principal):
                await self._api_keys.revoke(principal, key["id"])
            await self._admin.forget_external(
                principal.user_id, actor=None, username=principal.username
            )
