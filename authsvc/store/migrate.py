"""`authsvc migrate`: move a store written by an earlier authsvc to the current layout.

Each step walks its keys with SCAN in batches and converts one aggregate per Lua
script, so it is safe on a live store, and running it again changes nothing:

- activity: `user:{id}:activity` streams become the index of `audit:events` ids (a
  stream's first node costs 4 KB, most of an account's memory);
- favorites: one hash per favorite folds into the kind's `by_target` hash, and the
  index is rebuilt on target ids;
- links: `account:{id}:verify` / `:reset` keys become the account's `verify_link` /
  `reset_link` fields, keeping the token's digest and the time it had left;
- roles: a local account's `user:{id}:roles` set becomes its hash's `roles` field;
- indexes: the admin listing and role-member zsets (`idx:users:*`, `rbac:members:*`)
  are copied into the bucketed lex indexes, then dropped.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import redis.asyncio as redis

from . import keys
from .connection import lua_source
from .lexindex import LexIndexes
from .progress import Tally

OLD_ACTIVITY_GLOB = "user:{*}:activity"
OLD_FAVORITES_GLOB = "fav:{*}:*:by_target"
OLD_ROLES_GLOB = "user:{*}:roles"
OLD_INDEXES = {
    "idx:users:created": keys.USERS_BY_CREATED,
    "idx:users:username": keys.USERS_BY_USERNAME,
    "idx:users:email": keys.USERS_BY_EMAIL,
}
OLD_MEMBERS_GLOB = "rbac:members:*"
OLD_LINK_GLOBS = (("account:{*}:verify", keys.VERIFY_LINK), ("account:{*}:reset", keys.RESET_LINK))
_OLD_FAVORITE_RECORD = re.compile(r"fav:\{[^}]+\}:[^:]+:[0-9a-f-]{36}\Z")


@dataclass
class MigrationReport(Tally):
    moved: dict[str, int] = field(default_factory=dict)

    def count(self, step: str, n: int) -> None:
        if n:
            self.moved[step] = self.moved.get(step, 0) + n

    def summary(self) -> str:
        return f"{self.scanned} keys scanned, {sum(self.moved.values())} moved"


async def earlier_layout(client: redis.Redis) -> bool:
    """Whether the store still holds the earlier layout (cheap: a store with any account
    from then has its global listing zsets)."""
    pipe = client.pipeline(transaction=False)
    for old in OLD_INDEXES:  # one EXISTS each: on a cluster they live in other slots
        pipe.exists(old)
    return any(await pipe.execute())


def link_value(hex_digest: str, expires_ms: int) -> str:
    """The old key's hex SHA-256 as the field's "<expires_ms>.<base64url>" (what
    accounts.lifecycle._digest makes of the same token)."""
    digest = base64.urlsafe_b64encode(bytes.fromhex(hex_digest)).decode()[:43]
    return f"{expires_ms}.{digest}"


async def migrate(
    client: redis.Redis,
    *,
    now_ms: int,
    batch: int = 500,
    progress: Callable[[Tally], None] | None = None,
) -> MigrationReport:
    """Run every step; `progress` is called with the report so far after every key."""
    report = MigrationReport(on_progress=progress)
    activity = client.register_script(lua_source("migrate_activity"))
    favorites = client.register_script(lua_source("migrate_favorites"))
    link = client.register_script(lua_source("migrate_link"))
    roles = client.register_script(lua_source("migrate_roles"))
    lex = LexIndexes(client)

    report.start("activity")
    async for key in client.scan_iter(match=OLD_ACTIVITY_GLOB, count=batch):
        report.scan(1)
        moved = await activity(keys=[key])
        if moved >= 0:
            report.count("activity streams", 1)
            report.count("activity entries", moved)

    report.start("favorites")
    async for key in client.scan_iter(match=OLD_FAVORITES_GLOB, count=batch):
        report.scan(1)
        prefix = key.removesuffix("by_target")
        report.count("favorites", await favorites(keys=[key, prefix + "index"], args=[prefix]))
    async for key in client.scan_iter(match="fav:{*}:*", count=batch):
        # A record no pair named (an old crash): nothing reads it, nothing will.
        if _OLD_FAVORITE_RECORD.match(key) and await client.type(key) == "hash":
            report.count("orphaned favorite records", await client.delete(key))
        report.scan()

    report.start("links")
    for glob, field_name in OLD_LINK_GLOBS:
        async for key in client.scan_iter(match=glob, count=batch):
            report.scan(1)
            async with client.pipeline(transaction=False) as pipe:
                pipe.hget(key, "hash")
                pipe.pttl(key)
                hex_digest, ttl = await pipe.execute()
            if hex_digest is None or ttl is None or ttl < 0:
                continue  # gone meanwhile, or not the old shape
            account = key.rsplit(":", 1)[0]
            value = link_value(hex_digest, now_ms + ttl)
            report.count(
                f"{field_name}s", await link(keys=[account, key], args=[field_name, value])
            )

    report.start("roles")
    async for key in client.scan_iter(match=OLD_ROLES_GLOB, count=batch):
        uid = keys.account_id_of(key) or ""
        if keys.is_local(uid):  # an external user's roles stay a set
            report.scan(1)
            moved = await roles(keys=[keys.account(uid), key])
            if moved >= 0:
                report.count("role sets", 1)

    report.start("indexes")
    old_indexes = dict(OLD_INDEXES)
    async for key in client.scan_iter(match=OLD_MEMBERS_GLOB, count=batch):
        old_indexes[key] = keys.role_members(key.removeprefix("rbac:members:"))
    for old, index in old_indexes.items():
        if await client.type(old) != "zset":
            continue
        report.scan(1)
        members = [m async for m, _ in client.zscan_iter(old, count=batch)]
        for i in range(0, len(members), batch):
            report.count("index entries", await lex.add(index, *members[i : i + batch]))
            report.scan()
        await client.delete(old)
    return report
