"""Administration of users: listing through the derived indexes (never a keyspace
scan), reading, changing, disabling and deleting accounts."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from ..accounts.lifecycle import LifecycleService
from ..accounts.service import account_view
from ..audit import Audit
from ..auth import Principal
from ..clock import Clock, to_ms
from ..errors import Code, Conflict, NotFound, ValidationFailed
from ..normalize import email_lc, username_lc
from ..rbac.guard import SuperuserGuard
from ..store import keys
from ..store.accounts import AccountStore, ClaimTaken, RegistrationAbandoned
from ..store.rbac import RbacStore

Purger = Callable[[str], Awaitable[None]]


class AdminService:
    def __init__(
        self,
        *,
        accounts: AccountStore,
        rbac: RbacStore,
        lifecycle: LifecycleService,
        audit: Audit,
        guard: SuperuserGuard,
        clock: Clock = time.time,
    ) -> None:
        self._accounts = accounts
        self._rbac = rbac
        self.guard = guard
        self._lifecycle = lifecycle
        self._audit = audit
        self._clock = clock
        # Features that keep data about a user outside the account's own keys register
        # a purge here; deleting an account runs them all before the account goes.
        self.purgers: list[Purger] = []

    async def list_users(
        self,
        *,
        username_prefix: str | None,
        email_prefix: str | None,
        role: str | None,
        cursor: str,
        limit: int,
    ) -> dict:
        given = [x for x in (username_prefix, email_prefix, role) if x]
        if len(given) > 1:
            raise ValidationFailed(
                "filter by one of username, email or role at a time",
                fields={"_query": ["Use one filter at a time."]},
            )
        if username_prefix:
            members = await self._accounts.page_by_prefix(
                keys.USERS_BY_USERNAME, username_lc(username_prefix), cursor=cursor, limit=limit + 1
            )
            ids = [m.rsplit(":", 1)[1] for m in members]
        elif email_prefix:
            members = await self._accounts.page_by_prefix(
                keys.USERS_BY_EMAIL, email_lc(email_prefix), cursor=cursor, limit=limit + 1
            )
            ids = [m.rsplit(" ", 1)[1] for m in members]
        elif role:
            members = await self._rbac.members(role, after=cursor, limit=limit + 1)
            ids = members
        else:
            members = await self._accounts.page_by_created(cursor=cursor, limit=limit + 1)
            ids = [m.split(":", 1)[1] for m in members]
        more = len(members) > limit
        accounts = await self._accounts.get_many(ids[:limit])
        return {
            "items": [account_view(a) for a in accounts],
            "next_cursor": members[limit - 1] if more else None,
        }

    async def get_user(self, user_id: str) -> dict:
        acc = await self._accounts.get(user_id) if user_id.isdigit() else None
        if acc is None:
            raise NotFound("no such user")
        return {**account_view(acc), "roles": sorted(await self._rbac.user_roles(user_id))}

    async def update_user(self, user_id: str, changes: dict, *, actor: Principal) -> dict:
        if changes.get("is_active") is False:
            # Checked before any field changes, so a refused PATCH changes nothing.
            async with self.guard.removing(user_id, actor=actor.user_id):
                return await self._update_user(user_id, changes, actor=actor)
        return await self._update_user(user_id, changes, actor=actor)

    async def _update_user(self, user_id: str, changes: dict, *, actor: Principal) -> dict:
        acc = await self._accounts.get(user_id) if user_id.isdigit() else None
        if acc is None:
            raise NotFound("no such user")
        now_ms = to_ms(self._clock())
        for field in ("username", "email"):
            new = changes.get(field)
            if new is None or new == acc[field]:
                continue
            try:
                await self._accounts.change_identity(user_id, field, acc[field], new, now_ms=now_ms)
            except ClaimTaken:
                code = Code.USERNAME_TAKEN if field == "username" else Code.EMAIL_TAKEN
                raise Conflict(
                    f"that {field} is already registered",
                    code=code,
                    fields={field: [f"This {field} is already taken."]},
                ) from None
            except RegistrationAbandoned:
                raise Conflict(f"the {field} changed meanwhile; retry") from None
        if "email_verified" in changes:
            await self._accounts.update_fields(
                user_id,
                {
                    "email_verified": "1" if changes["email_verified"] else "0",
                    "updated_at": str(now_ms),
                },
            )
        if "is_active" in changes:
            await self._lifecycle.set_active(user_id, changes["is_active"], actor=actor.user_id)
        await self._audit.record(
            "admin_user_updated",
            user_id=actor.user_id,
            username=actor.username,
            target_user=user_id,
            fields=",".join(sorted(changes)),
        )
        return await self.get_user(user_id)

    async def set_active(self, user_id: str, active: bool, *, actor: Principal) -> dict:
        if active:
            await self._lifecycle.set_active(user_id, active, actor=actor.user_id)
        else:
            async with self.guard.removing(user_id, actor=actor.user_id):
                await self._lifecycle.set_active(user_id, active, actor=actor.user_id)
        return await self.get_user(user_id)

    async def delete_user(self, user_id: str, *, actor: Principal | None) -> None:
        """Delete an account: by an administrator (`actor`), or by its owner (None)."""
        if not user_id.isdigit() or await self._accounts.get(user_id) is None:
            raise NotFound("no such user")
        async with self.guard.removing(user_id, actor=actor.user_id if actor else None):
            await self._delete_user(user_id, actor=actor)

    async def _delete_user(self, user_id: str, *, actor: Principal | None) -> None:
        for purge in self.purgers:
            await purge(user_id)
        # Buffered events about the user would recreate their activity stream later.
        await self._audit.flush()
        deleted = await self._accounts.delete(user_id)
        if deleted is None:
            raise NotFound("no such user")
        for role in deleted["roles"]:
            await self._rbac.revoke(user_id, role)  # the members index
        await self._audit.record(
            "account_deleted",
            user_id=actor.user_id if actor else user_id,
            username=actor.username if actor else deleted["username"],
            # Kept out of the deleted user's own stream, which the deletion removed.
            personal=False,
            deleted_user=user_id,
        )
