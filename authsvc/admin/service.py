"""Administration of users: listing through the derived indexes (never a keyspace
scan), reading, changing, disabling and deleting accounts, local ones (by their numeric
id) and external (Keycloak) users (by their `sub`)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence

from ..accounts.lifecycle import LifecycleService
from ..accounts.service import account_view
from ..audit.service import Audit
from ..errors import Code, Conflict, NotFound, ValidationFailed
from ..identity.principal import LOCAL, Principal
from ..platform.clock import Clock, iso, to_ms
from ..platform.normalize import email_lc, username_lc
from ..rbac.guard import SuperuserGuard
from ..store import keys
from ..store.accounts import AccountStore, ClaimTaken, RegistrationAbandoned
from ..store.rbac import RbacStore
from ..store.users import UserStore

Purger = Callable[[str], Awaitable[None]]
KEYCLOAK = "keycloak"


def external_view(user: dict[str, str]) -> dict:
    """An external (Keycloak) user as administration shows it."""
    return {
        "id": user["user_id"],
        "kind": KEYCLOAK,
        "username": user.get("display_name") or None,
        "email": user.get("email") or None,
        "created_at": iso(user.get("created_at")),
        "updated_at": iso(user.get("updated_at") or user.get("created_at")),
        "last_login_at": None,
        "is_active": user.get("is_active") != "0",
    }


def local_view(acc: dict[str, str]) -> dict:
    return {**account_view(acc), "kind": LOCAL}


class AdminService:
    def __init__(
        self,
        *,
        accounts: AccountStore,
        rbac: RbacStore,
        lifecycle: LifecycleService,
        audit: Audit,
        users: UserStore,
        guard: SuperuserGuard,
        purgers: Sequence[Purger] = (),
        clock: Clock = time.time,
    ) -> None:
        self._accounts = accounts
        self._users = users
        self._rbac = rbac
        self.guard = guard
        self._lifecycle = lifecycle
        self._audit = audit
        self._clock = clock
        # What features keep about a user outside the account's own keys: deleting an
        # account runs them all before the account goes.
        self.purgers: tuple[Purger, ...] = tuple(purgers)

    async def list_users(
        self,
        *,
        username_prefix: str | None,
        email_prefix: str | None,
        role: str | None,
        cursor: str,
        limit: int,
        kind: str | None = None,
    ) -> dict:
        """One page of users, newest first, or by one filter. `kind` keeps local
        accounts or Keycloak users only; the username and email prefixes find local
        accounts (Keycloak users are listed by creation and role)."""
        given = [x for x in (username_prefix, email_prefix, role) if x]
        if len(given) > 1:
            raise ValidationFailed(
                "filter by one of username, email or role at a time",
                fields={"_query": ["Use one filter at a time."]},
            )
        if (username_prefix or email_prefix) and kind == KEYCLOAK:
            return {"items": [], "next_cursor": None}
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
            members = await self._created_page(kind, cursor=cursor, limit=limit + 1)
            ids = [keys.listed_user(m) for m in members]
        more = len(members) > limit
        page = [
            uid for uid in ids[:limit] if kind is None or (keys.is_local(uid)) == (kind == LOCAL)
        ]
        return {
            "items": await self._views(page),
            "next_cursor": members[limit - 1] if more else None,
        }

    async def _created_page(self, kind: str | None, *, cursor: str, limit: int) -> list[str]:
        """Members of the creation indexes, newest first: local accounts, Keycloak users,
        or both merged (their members compare alike: "<created_ms:013d>:<id>")."""
        pages = []
        if kind in (None, LOCAL):
            pages += await self._accounts.page_by_created(cursor=cursor, limit=limit)
        if kind in (None, KEYCLOAK):
            pages += await self._users.page_by_created(cursor=cursor, limit=limit)
        return sorted(pages, reverse=True)[:limit]

    async def _views(self, ids: list[str]) -> list[dict]:
        local = [i for i in ids if keys.is_local(i)]
        external = [i for i in ids if not keys.is_local(i)]
        found = {a["id"]: local_view(a) for a in await self._accounts.get_many(local)}
        if external:
            found |= {u["user_id"]: external_view(u) for u in await self._users.get_many(external)}
        return [found[i] for i in ids if i in found]

    async def get_user(self, user_id: str) -> dict:
        if keys.is_local(user_id):
            acc = await self._accounts.get(user_id)
            view = local_view(acc) if acc is not None else None
        else:
            user = await self._users.get(user_id)
            view = external_view(user) if user is not None else None
        if view is None:
            raise NotFound("no such user")
        return {**view, "roles": sorted(await self._rbac.user_roles(user_id))}

    async def update_user(self, user_id: str, changes: dict, *, actor: Principal) -> dict:
        if not keys.is_local(user_id):
            return await self._update_external(user_id, changes, actor=actor)
        if changes.get("is_active") is False:
            # Checked before any field changes, so a refused PATCH changes nothing.
            async with self.guard.removing(user_id, actor=actor.user_id):
                return await self._update_user(user_id, changes, actor=actor)
        return await self._update_user(user_id, changes, actor=actor)

    async def _update_user(self, user_id: str, changes: dict, *, actor: Principal) -> dict:
        acc = await self._accounts.get(user_id)
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

    async def _update_external(self, user_id: str, changes: dict, *, actor: Principal) -> dict:
        """A Keycloak user: only `is_active` is ours to change; the rest is Keycloak's."""
        if await self._users.get(user_id) is None:
            raise NotFound("no such user")
        theirs = sorted(set(changes) - {"is_active"})
        if theirs:
            raise Conflict(
                f"Keycloak manages this user's {', '.join(theirs)}; change it there",
                fields={name: ["Managed by Keycloak."] for name in theirs},
            )
        if "is_active" in changes:
            return await self.set_active(user_id, changes["is_active"], actor=actor)
        return await self.get_user(user_id)

    async def set_active(self, user_id: str, active: bool, *, actor: Principal) -> dict:
        if active:
            await self._set_active(user_id, active, actor=actor)
        else:
            async with self.guard.removing(user_id, actor=actor.user_id):
                await self._set_active(user_id, active, actor=actor)
        return await self.get_user(user_id)

    async def _set_active(self, user_id: str, active: bool, *, actor: Principal) -> None:
        if keys.is_local(user_id):
            await self._lifecycle.set_active(user_id, active, actor=actor.user_id)
            return
        # Every request of an external user checks this flag (web.Api), so their
        # tokens, cached or not, are refused from now on.
        if not await self._users.set_active(user_id, active, now_ms=to_ms(self._clock())):
            raise NotFound("no such user")
        await self._audit.record(
            "account_enabled" if active else "account_disabled",
            user_id=actor.user_id,
            username=actor.username,
            target_user=user_id,
        )

    async def delete_user(self, user_id: str, *, actor: Principal | None) -> None:
        """Delete an account or what is kept about a Keycloak user: by an administrator
        (`actor`), or by its owner (None)."""
        if not keys.is_local(user_id):
            await self.delete_external(user_id, actor=actor)
            return
        if await self._accounts.get(user_id) is None:
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

    async def delete_external(
        self, user_id: str, *, actor: Principal | None, username: str = ""
    ) -> None:
        """Delete what is kept about an external (Keycloak) user: favorites, profile,
        follows (the purgers), roles, API keys, activity and the users record. Their
        identity stays at Keycloak: a later sign-in starts a fresh record (disable them
        to keep them out)."""
        if actor is not None and await self._users.get(user_id) is None:
            raise NotFound("no such user")
        async with self.guard.removing(user_id, actor=actor.user_id if actor else None):
            await self.forget_external(user_id, actor=actor, username=username)

    async def forget_external(
        self, user_id: str, *, actor: Principal | None, username: str = ""
    ) -> None:
        """delete_external's work, for a caller already inside `guard.removing`."""
        for purge in self.purgers:
            await purge(user_id)
        await self._audit.flush()
        for role in await self._rbac.user_roles(user_id):
            await self._rbac.revoke(user_id, role)  # the members index
        await self._users.delete(user_id)
        await self._audit.record(
            "account_deleted",
            user_id=actor.user_id if actor else user_id,
            username=actor.username if actor else username,
            personal=False,
            deleted_user=user_id,
        )
