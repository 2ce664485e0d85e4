"""Who may do what: the permission check every route declares, and role administration.

Effective permissions are computed from the user's roles in the store (plus, for
Keycloak users, DEFAULT_ROLE and those of their token's roles that KEYCLOAK_ROLE_MAPPING
names, as the local roles it maps them to; unmapped token roles give nothing), expanded
through inheritance, and cached per user for RBAC_CACHE_TTL seconds. Every role change
publishes on `authsvc:rbac`; each process drops the affected cache entries when the
message arrives, so a removed role stops working at once in every process — the
cache TTL only bounds the case where a process missed the message (it also drops its
whole cache when its subscription reconnects)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Mapping

import redis.asyncio as redis

from ..audit.service import Audit
from ..errors import Code, Conflict, Forbidden, NotFound, ValidationFailed
from ..identity.principal import LOCAL, Principal
from ..platform.clock import Clock
from ..store import keys
from ..store.rbac import RbacStore
from .guard import SuperuserGuard
from .permissions import BUILTIN_ROLES, expand, find_cycle, grants

log = logging.getLogger("authsvc.rbac")

ROLE_NAME = re.compile(r"^[a-z][a-z0-9_.-]{0,63}\Z")
PERMISSION = re.compile(r"^(\*|[a-z][a-z0-9_.-]*:(\*|[a-z][a-z0-9_.-]*))\Z")


class Authorizer:
    def __init__(
        self,
        store: RbacStore,
        *,
        cache_ttl: float = 2.0,
        role_mapping: Mapping[str, str] | None = None,
        default_role: str = "user",
        max_entries: int = 100_000,
        clock: Clock = time.monotonic,
    ) -> None:
        self._store = store
        self._ttl = cache_ttl
        self._mapping = dict(role_mapping or {})
        self._default_role = default_role
        self._max = max_entries
        self._clock = clock
        self._defs: dict[str, dict] | None = None
        self._defs_at = 0.0
        self._users: dict[tuple[str, str], tuple[float, frozenset[str]]] = {}

    async def definitions(self) -> dict[str, dict]:
        now = self._clock()
        if self._defs is None or now - self._defs_at > self._ttl:
            defs = await self._store.roles()
            if not BUILTIN_ROLES.keys() <= defs.keys():
                await self._store.seed(BUILTIN_ROLES)
                defs = await self._store.roles()
            self._defs, self._defs_at = defs, now
        return self._defs

    def mapped(self, token_roles: tuple[str, ...]) -> set[str]:
        """An external issuer's roles as local role names, through the mapping only.
        Default deny: a token role the mapping does not name gives nothing, whatever it
        is called (an identity provider's `admin` is not our `admin`)."""
        mapping = self._mapping
        return {mapping[r] for r in token_roles if r in mapping}

    async def roles_of(self, principal: Principal) -> set[str]:
        roles = await self._store.user_roles(principal.user_id)
        if principal.kind != LOCAL:
            # An external user signed in: the default role, plus their token's roles.
            roles |= {self._default_role, *self.mapped(principal.roles)}
        return roles

    async def permissions(self, principal: Principal) -> frozenset[str]:
        key = (principal.kind, principal.user_id)
        now = self._clock()
        hit = self._users.get(key)
        if hit is not None and now - hit[0] <= self._ttl:
            return hit[1]
        perms = expand(await self.roles_of(principal), await self.definitions())
        if len(self._users) >= self._max:
            del self._users[next(iter(self._users))]
        self._users[key] = (now, perms)
        return perms

    async def allowed(self, principal: Principal, permission: str) -> bool:
        if principal.scopes is not None and not grants(principal.scopes, permission):
            return False  # an API key acts with its scopes only...
        return grants(await self.permissions(principal), permission)  # ...never more

    async def require(self, principal: Principal, permission: str) -> None:
        # The hot path (a cached user, no API key) without further awaits.
        hit = self._users.get((principal.kind, principal.user_id))
        if (
            hit is not None
            and principal.scopes is None
            and self._clock() - hit[0] <= self._ttl
            and grants(hit[1], permission)
        ):
            return
        if not await self.allowed(principal, permission):
            raise Forbidden(f"this needs the permission '{permission}'", code=Code.FORBIDDEN)

    def invalidate(self, what: str) -> None:
        """'roles': definitions changed, drop everything; '<user_id>': that user."""
        if what == "roles":
            self._defs = None
            self._users.clear()
        else:
            for kind_key in [k for k in self._users if k[1] == what]:
                del self._users[kind_key]

    async def listen(self, client: redis.Redis, stop: asyncio.Event) -> None:
        """Follow role changes published by any process, until `stop` is set. (It polls
        with a short timeout rather than blocking: redis-py's blocking pub/sub read does
        not always give way to cancellation.)"""
        while not stop.is_set():
            pubsub = None
            try:
                if isinstance(client, redis.RedisCluster):
                    await client.initialize()  # its pub/sub needs the slot map first
                pubsub = client.pubsub(ignore_subscribe_messages=True)
                await pubsub.subscribe(keys.RBAC_CHANNEL)
                self.invalidate("roles")  # whatever was missed while unsubscribed
                while not stop.is_set():
                    message = await pubsub.get_message(timeout=0.5)
                    if message and message.get("type") == "message":
                        self.invalidate(str(message["data"]))
            except Exception as exc:  # the store went away: resubscribe when it is back
                log.warning("rbac change feed lost (%r); resubscribing", exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 1.0)
            finally:
                if pubsub is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(pubsub.aclose(), 1.0)


class RoleService:
    def __init__(
        self,
        *,
        store: RbacStore,
        authorizer: Authorizer,
        audit: Audit,
        user_exists,
        guard: SuperuserGuard,
    ) -> None:
        self._store = store
        self._authz = authorizer
        self._audit = audit
        self._guard = guard
        self._user_exists = user_exists  # async (user_id) -> bool

    async def list(self) -> list[dict]:
        defs = await self._authz.definitions()
        return [
            {
                "name": name,
                "description": d.get("description", ""),
                "permissions": sorted(d.get("permissions", [])),
                "inherits": sorted(d.get("inherits", [])),
                "builtin": bool(d.get("builtin")),
                "effective_permissions": sorted(expand([name], defs)),
            }
            for name, d in sorted(defs.items())
        ]

    async def create(
        self,
        *,
        name: str,
        permissions: list[str],
        inherits: list[str],
        description: str,
        actor: Principal,
    ) -> dict:
        bad = [p for p in permissions if not PERMISSION.match(p)]
        if not ROLE_NAME.match(name) or bad:
            fields = {}
            if not ROLE_NAME.match(name):
                fields["name"] = ["Lowercase letters, digits, '_', '-', '.'; up to 64."]
            if bad:
                fields["permissions"] = [f"Not a permission (resource:action): {', '.join(bad)}"]
            raise ValidationFailed(fields=fields)
        await self._authz.definitions()  # seeds the defaults if this is the first call

        def change(current: dict[str, dict]) -> dict[str, dict | None]:
            if current.get(name, {}).get("builtin"):
                raise Conflict(
                    f"'{name}' is a built-in role and cannot be redefined",
                    fields={"name": ["Built-in."]},
                )
            missing = [p for p in inherits if p not in current and p != name]
            if missing:
                # Well-formed names the current roles lack: a conflict with the store's
                # state (as a cycle is), not a malformed request.
                raise Conflict(
                    f"no such role to inherit from: {', '.join(missing)}",
                    fields={"inherits": [f"No such role: {', '.join(missing)}"]},
                )
            role = {
                "permissions": sorted(set(permissions)),
                "inherits": sorted(set(inherits)),
                "description": description,
                "builtin": False,
            }
            cycle = find_cycle({**current, name: role})
            if cycle:
                raise Conflict(
                    "inheritance would form a cycle: " + " -> ".join(cycle),
                    fields={"inherits": ["Forms a cycle."]},
                )
            return {name: role}

        async with self._guard.redefining():
            current = await self._store.roles()
            existed = name in current
            await self._guard.check_definitions(current, change(current))
            await self._store.change_roles(change)
        await self._changed("roles")
        await self._audit.record(
            "role_updated" if existed else "role_created",
            user_id=actor.user_id,
            username=actor.username,
            role=name,
        )
        role = next(r for r in await self.list() if r["name"] == name)
        return {**role, "created": not existed}

    async def delete(self, name: str, *, actor: Principal) -> None:
        if await self._store.members(name, after="", limit=1):
            raise Conflict(f"role '{name}' is still granted to users; remove it from them first")

        def change(current: dict[str, dict]) -> dict[str, dict | None]:
            if name not in current:
                raise NotFound(f"no role '{name}'")
            if current[name].get("builtin"):
                raise Conflict(f"'{name}' is a built-in role and cannot be deleted")
            heirs = sorted(n for n, d in current.items() if name in d.get("inherits", ()))
            if heirs:
                raise Conflict(f"roles inherit from '{name}': {', '.join(heirs)}")
            return {name: None}

        await self._store.change_roles(change)
        await self._changed("roles")
        await self._audit.record(
            "role_deleted", user_id=actor.user_id, username=actor.username, role=name
        )

    async def members(self, name: str, *, cursor: str, limit: int) -> dict:
        if name not in await self._authz.definitions():
            raise NotFound(f"no role '{name}'")
        page = await self._store.members(name, after=cursor, limit=limit + 1)
        more = len(page) > limit
        page = page[:limit]
        return {"items": page, "next_cursor": page[-1] if more else None}

    async def grant(self, user_id: str, role: str, *, actor: Principal) -> list[str]:
        if role not in await self._authz.definitions():
            raise NotFound(f"no role '{role}'")
        if not await self._user_exists(user_id):
            raise NotFound("no such user")
        await self._store.grant(user_id, role)
        await self._changed(user_id)
        await self._audit.record(
            "role_granted",
            user_id=actor.user_id,
            username=actor.username,
            target_user=user_id,
            role=role,
        )
        return sorted(await self._store.user_roles(user_id))

    async def revoke(self, user_id: str, role: str, *, actor: Principal) -> None:
        async with self._guard.removing(user_id, actor=actor.user_id, role=role):
            if not await self._store.revoke(user_id, role):
                raise NotFound(f"user does not hold '{role}'")
        await self._changed(user_id)
        await self._audit.record(
            "role_removed",
            user_id=actor.user_id,
            username=actor.username,
            target_user=user_id,
            role=role,
        )

    async def _changed(self, what: str) -> None:
        self._authz.invalidate(what)  # this process at once; the others by the message
        await self._store.publish_change(what)
