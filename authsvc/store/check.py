"""`authsvc check`: walk the key layout with SCAN and the lex indexes page by page (in
batches, safe on a live store) and report, or with fix=True repair, what a crash or an
old bug can leave behind. Every repair is a compare-and-set or an idempotent index
step, so it never undoes a concurrent legitimate write (the followers', which span two
slots, re-read the truth just before writing)."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TypeVar

import redis.asyncio as redis

from ..platform.normalize import email_lc, username_lc
from . import keys
from .accounts import PENDING_TIMEOUT_MS
from .connection import lua_source
from .lexindex import LexIndexes
from .progress import Tally


@dataclass
class Report(Tally):
    problems: list[str] = field(default_factory=list)
    fixed: int = 0

    def add(self, text: str) -> None:
        self.problems.append(text)

    def summary(self) -> str:
        fixed = f", {self.fixed} fixed" if self.fixed else ""
        return f"{self.scanned} keys scanned, {len(self.problems)} problems{fixed}"


T = TypeVar("T")


async def _chunks(items: AsyncIterable[T], size: int) -> AsyncIterator[list[T]]:
    batch: list[T] = []
    async for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _batches(client: redis.Redis, pattern: str, size: int) -> AsyncIterator[list[str]]:
    return _chunks(client.scan_iter(match=pattern, count=size), size)


async def check(
    client: redis.Redis,
    *,
    fix: bool,
    now_ms: int,
    batch: int = 500,
    progress: Callable[[Tally], None] | None = None,
) -> Report:
    """Walk the store; `progress` is called with the report so far after every batch."""
    report = Report(on_progress=progress)
    release = client.register_script(lua_source("claim_release"))
    abandon = client.register_script(lua_source("account_abandon"))
    delete_if = client.register_script(lua_source("field_delete_if"))
    lex = LexIndexes(client)
    cutoff = now_ms - PENDING_TIMEOUT_MS

    # Claims: each must name a live account whose normalised value matches the claim.
    report.start("claims")
    for glob, prefix, attr, norm in (
        (keys.USERNAME_CLAIM_GLOB, "account:username:", "username", username_lc),
        (keys.EMAIL_CLAIM_GLOB, "account:email:", "email", email_lc),
    ):
        async for claims in _batches(client, glob, batch):
            report.scan(len(claims))
            pipe = client.pipeline(transaction=False)
            for claim in claims:  # not MGET: the claims live in many cluster slots
                pipe.get(claim)
            holders = await pipe.execute()
            pipe = client.pipeline(transaction=False)
            for aid in holders:
                pipe.hmget(keys.account(aid or "-"), "pending", "created_at", attr)
            states = await pipe.execute()
            for claim, aid, (pending, created, value) in zip(claims, holders, states, strict=True):
                if aid is None:
                    continue
                live = created is not None and not (pending == "1" and int(created) < cutoff)
                if live and pending != "1" and norm(value or "") != claim[len(prefix) :]:
                    live = False
                if live:
                    continue
                report.add(f"stale claim {claim} -> account {aid}")
                if fix:
                    report.fixed += int(await release(keys=[claim], args=[aid]))

    # Registrations that never finished.
    report.start("accounts")
    async for accts in _batches(client, keys.ACCOUNT_GLOB, batch):
        report.scan(len(accts))
        pipe = client.pipeline(transaction=False)
        for key in accts:
            pipe.hmget(key, "pending", "created_at", "username", "email", *LINK_FIELDS)
        live: list[tuple[str, int, str, str]] = []
        for key, (pending, created, username, email, *links) in zip(
            accts, await pipe.execute(), strict=True
        ):
            await _check_links(delete_if, report, fix, key, links, now_ms)
            if pending == "1" and created is not None and int(created) < cutoff:
                report.add(f"abandoned registration {key}")
                if fix:
                    ident = keys.account_identities(keys.account_id_of(key))
                    report.fixed += int(await abandon(keys=[key, ident], args=[cutoff]))
            elif pending != "1" and created is not None:
                aid = keys.account_id_of(key)
                await _check_claimed(client, report, fix, aid, username or "", email or "")
                live.append((aid, int(created), username or "", email or ""))
        await _check_listed(client, lex, report, fix, live)

    # The derived indexes: no entry may name a missing account or a role not held.
    report.start("indexes")
    await _check_indexes(client, lex, report, fix, batch)

    report.start("followers")
    await _check_followers(client, report, fix, batch)

    report.start("identities")
    await _check_identities(client, report, fix, batch, now_ms)

    report.start("keycloak users")
    await _check_external_listing(client, lex, report, fix, batch)

    report.start("rate-limit counters")
    await _check_counters(client, report, fix, batch)

    # Character indexes against character hashes, both directions.
    report.start("characters")
    async for idx_keys in _batches(client, keys.CHARACTER_INDEX_GLOB, batch):
        report.scan(len(idx_keys))
        for idx in idx_keys:
            aid = keys.account_id_of(idx)
            ids = await client.zrange(idx, 0, -1)
            if not ids:
                continue
            pipe = client.pipeline(transaction=False)
            for cid in ids:
                pipe.exists(keys.character(aid, cid))
            for cid, exists in zip(ids, await pipe.execute(), strict=True):
                if not exists:
                    report.add(f"index {idx} lists missing character {cid}")
                    if fix:
                        report.fixed += await client.zrem(idx, cid)
    async for chars in _batches(client, keys.CHARACTER_GLOB, batch):
        report.scan(len(chars))
        for ckey in chars:
            aid = keys.account_id_of(ckey)
            cid = ckey.rsplit(":", 1)[1]
            if not await client.exists(keys.account(aid)):
                report.add(f"character {ckey} belongs to no account")
                if fix:
                    report.fixed += await client.delete(ckey)
            elif await client.zscore(keys.account_characters(aid), cid) is None:
                report.add(f"character {ckey} is missing from its index")
                if fix:
                    created = await client.hget(ckey, "created_at") or now_ms
                    report.fixed += await client.zadd(
                        keys.account_characters(aid), {cid: int(created)}, nx=True
                    )
    return report


LINK_FIELDS = (keys.VERIFY_LINK, keys.RESET_LINK)
# A rate-limit counter that lost its TTL would never reset: it gets the longest window
# the settings allow (REQUEST_LIMIT_WINDOW's bound), after which it starts afresh.
COUNTER_FALLBACK_TTL_MS = 86_400_000


async def _check_links(
    delete_if,
    report: Report,
    fix: bool,
    account: str,
    links: list[str | None],
    now_ms: int,
) -> None:
    """A pending link past its expiry is refused on use; this removes the dead field."""
    for name, value in zip(LINK_FIELDS, links, strict=True):
        expires = value.split(".", 1)[0] if value else ""
        if value is not None and (not expires.isdigit() or int(expires) <= now_ms):
            report.add(f"expired {name} on {account}")
            if fix:
                report.fixed += int(await delete_if(keys=[account], args=[name, value]))


async def _check_counters(client: redis.Redis, report: Report, fix: bool, size: int) -> None:
    """Every rate-limit counter is written with its window's TTL in the same step; one
    without (a hand edit, a restore that dropped TTLs) would block its subject forever."""
    expire = client.register_script(lua_source("expire_if_persistent"))
    async for counters in _batches(client, keys.RATE_LIMIT_GLOB, size):
        report.scan(len(counters))
        pipe = client.pipeline(transaction=False)
        for key in counters:
            pipe.pttl(key)
        for key, ttl in zip(counters, await pipe.execute(), strict=True):
            if ttl == -1:
                report.add(f"counter {key} has no TTL")
                if fix:
                    report.fixed += int(await expire(keys=[key], args=[COUNTER_FALLBACK_TTL_MS]))


async def _check_claimed(
    client: redis.Redis, report: Report, fix: bool, aid: str, username: str, email: str
) -> None:
    """A live account must hold its own username and email claims: without them it
    cannot log in, and another registration can take its name. (A registration's
    clean-up once released the claims of an account whose activation had landed.)
    The repair re-takes a free claim (SET NX); one another account holds is reported."""
    claims = tuple(
        claim
        for claim, value in (
            (keys.username_claim(username_lc(username)), username),
            (keys.email_claim(email_lc(email)), email),
        )
        if value  # an account without a username or email (a guest) claims none
    )
    if not claims:
        return
    pipe = client.pipeline(transaction=False)
    for claim in claims:  # two slots: not MGET
        pipe.get(claim)
    for claim, holder in zip(claims, await pipe.execute(), strict=True):
        if holder == aid:
            continue
        if holder is None:
            report.add(f"account {aid} does not hold its claim {claim}")
            if fix:
                report.fixed += int(bool(await client.set(claim, aid, nx=True)))
        else:
            report.add(f"account {aid} lost its claim {claim} to account {holder}")


async def _check_listed(
    client: redis.Redis,
    lex: LexIndexes,
    report: Report,
    fix: bool,
    live: list[tuple[str, int, str, str]],
) -> None:
    """Live accounts (id, created, username, email) must be in the admin listing
    indexes and their roles' member indexes."""
    pipe = client.pipeline(transaction=False)
    for aid, *_ in live:
        pipe.hget(keys.account(aid), keys.ROLES_FIELD)
    wanted: list[tuple[str, tuple[str, str]]] = []  # (account, (index, member))
    for (aid, created, username, email), roles in zip(live, await pipe.execute(), strict=True):
        entries = keys.listing_entries(aid, username_lc(username), email_lc(email), created)
        wanted += [(aid, entry) for entry in entries]
        wanted += [(aid, (keys.role_members(role), aid)) for role in (roles or "").split()]
    there = await lex.contains_each(entry for _, entry in wanted)
    missing = [(aid, entry) for (aid, entry), ok in zip(wanted, there, strict=True) if not ok]
    for aid, (index, _) in missing:
        report.add(f"account {aid} missing from {keys.lex_directory(index)}")
    if fix and missing:
        report.fixed += sum(await lex.add_each(entry for _, entry in missing))


async def _pages(lex: LexIndexes, index: str, size: int) -> AsyncIterator[list[str]]:
    """The index's members, a bounded read at a time (the cursor survives removals)."""
    after = ""
    while page := await lex.page(index, after=after, limit=size):
        yield page
        after = page[-1]


async def _check_indexes(
    client: redis.Redis, lex: LexIndexes, report: Report, fix: bool, size: int
) -> None:
    for index in (keys.USERS_BY_CREATED, keys.USERS_BY_USERNAME, keys.USERS_BY_EMAIL):
        async for members in _pages(lex, index, size):
            pipe = client.pipeline(transaction=False)
            for member in members:
                aid = keys.listed_account(index, member)
                pipe.hmget(keys.account(aid), "created_at", "username", "email")
            stale = []
            for member, (created, username, email) in zip(
                members, await pipe.execute(), strict=True
            ):
                aid = keys.listed_account(index, member)
                if created:
                    lc = (username_lc(username or ""), email_lc(email or ""))
                    if (index, member) in keys.listing_entries(aid, *lc, int(created)):
                        continue
                stale.append(member)
                where = keys.lex_directory(index)
                report.add(f"{where} lists {member!r}, which names no such account")
            if fix and stale:
                report.fixed += await lex.remove(index, *stale)
            report.scan()
    async for directory in client.scan_iter(match=keys.ROLE_MEMBERS_GLOB, count=size):
        role = keys.role_of_members_directory(directory)
        index = keys.role_members(role)
        async for uids in _pages(lex, index, size):
            pipe = client.pipeline(transaction=False)
            for uid in uids:
                if keys.is_local(uid):
                    pipe.hget(keys.account(uid), keys.ROLES_FIELD)
                else:
                    pipe.sismember(keys.user_roles(uid), role)
            held = [
                role in (h or "").split() if keys.is_local(uid) else bool(h)
                for uid, h in zip(uids, await pipe.execute(), strict=True)
            ]
            stale = [uid for uid, ok in zip(uids, held, strict=True) if not ok]
            for uid in stale:
                report.add(f"{directory} lists {uid}, who does not hold the role")
            if fix and stale:
                report.fixed += await lex.remove(index, *stale)
            report.scan()


async def _check_followers(client: redis.Redis, report: Report, fix: bool, size: int) -> None:
    """`user:{b}:followers` must mirror every `user:{a}:following`, score (ms) included.
    The two are in different slots, so follow/unfollow write the truth first and the
    followers set second; a crash or a lost reply between them leaves what this repairs.
    Each repair re-reads the truth just before its write, which narrows a race with a
    follow or unfollow in flight to those two round trips; what such a race leaves, the
    next run repairs."""
    async for following_keys in _batches(client, keys.FOLLOWING_GLOB, size):
        report.scan(len(following_keys))
        for following in following_keys:
            fan = keys.account_id_of(following)
            async for rows in _chunks(client.zscan_iter(following, count=size), size):
                pipe = client.pipeline(transaction=False)
                for target, _ in rows:
                    pipe.zscore(keys.followers(target), fan)
                for (target, since), mirrored in zip(rows, await pipe.execute(), strict=True):
                    if mirrored == since:
                        continue
                    fans = keys.followers(target)
                    if mirrored is None:
                        report.add(f"{fans} lacks {fan}, who follows since {since:.0f}")
                    else:
                        report.add(f"{fans} has {fan} since {mirrored:.0f}, not {since:.0f}")
                    if fix and await client.zscore(following, target) == since:
                        await client.zadd(fans, {fan: since})
                        report.fixed += 1

    async for followers_keys in _batches(client, keys.FOLLOWERS_GLOB, size):
        report.scan(len(followers_keys))
        for fans in followers_keys:
            target = keys.account_id_of(fans)
            async for rows in _chunks(client.zscan_iter(fans, count=size), size):
                pipe = client.pipeline(transaction=False)
                for fan, _ in rows:
                    pipe.zscore(keys.following(fan), target)
                for (fan, _), since in zip(rows, await pipe.execute(), strict=True):
                    if since is not None:
                        continue  # a different score was reported (and fixed) above
                    report.add(f"{fans} lists {fan}, who does not follow {target}")
                    if fix and await client.zscore(keys.following(fan), target) is None:
                        report.fixed += await client.zrem(fans, fan)


async def _check_identities(
    client: redis.Redis, report: Report, fix: bool, size: int, now_ms: int
) -> None:
    """Identity claims (OIDC identities, devices) against the accounts' identities
    hashes, both ways. A claim is stale when its account is gone, a dead registration,
    or no longer holds the identity (unlinked, or a crash between the two steps of a
    link); the fix releases it (compare-and-delete). An identities hash whose account is
    gone is dropped, its claims released. A live account's identity whose claim is free
    takes it again (SET NX); one held by another account is reported."""
    held = client.register_script(lua_source("identity_held"))
    release = client.register_script(lua_source("claim_release"))
    drop = client.register_script(lua_source("identities_drop_orphan"))
    cutoff = now_ms - PENDING_TIMEOUT_MS
    async for claims in _batches(client, keys.IDENTITY_CLAIM_GLOB, size):
        report.scanned += len(claims)
        pipe = client.pipeline(transaction=False)
        for claim in claims:
            pipe.get(claim)
        for claim, holder in zip(claims, await pipe.execute(), strict=True):
            if holder is None:
                continue
            _, kind, digest = claim.split(":", 2)
            field = keys.identity_field(kind, digest)
            ident_keys = [keys.account(holder), keys.account_identities(holder)]
            if await held(keys=ident_keys, args=[field, cutoff]):
                continue
            report.add(f"stale claim {claim} -> account {holder}")
            if fix:
                report.fixed += int(await release(keys=[claim], args=[holder]))
    async for hashes in _batches(client, keys.IDENTITIES_GLOB, size):
        report.scanned += len(hashes)
        for ident_hash in hashes:
            aid = keys.account_id_of(ident_hash)
            entries = [n for n in await client.hkeys(ident_hash) if n.count(":") == 1]
            claims = [keys.identity_claim(*name.split(":", 1)) for name in entries]
            if not await client.exists(keys.account(aid)):
                report.add(f"{ident_hash} belongs to no account")
                if fix:
                    for claim in claims:
                        await release(keys=[claim], args=[aid])
                    report.fixed += int(await drop(keys=[keys.account(aid), ident_hash]))
                continue
            pending, _ = await client.hmget(keys.account(aid), "pending", "created_at")
            if pending == "1":
                continue  # a registration in flight (or dead: the check above drops it)
            pipe = client.pipeline(transaction=False)
            for claim in claims:
                pipe.get(claim)
            for claim, holder in zip(claims, await pipe.execute(), strict=True):
                if holder == aid:
                    continue
                if holder is None:
                    report.add(f"account {aid} does not hold its claim {claim}")
                    if fix:
                        report.fixed += int(bool(await client.set(claim, aid, nx=True)))
                else:
                    report.add(f"account {aid} lost its claim {claim} to account {holder}")


async def _check_external_listing(
    client: redis.Redis, lex: LexIndexes, report: Report, fix: bool, size: int
) -> None:
    """Every external (Keycloak) users record is in the admin listing index, and every
    entry there names a record of that creation time."""
    index = keys.USERS_EXTERNAL_BY_CREATED
    async for records in _batches(client, keys.USER_RECORD_GLOB, size):
        report.scanned += len(records)
        pipe = client.pipeline(transaction=False)
        for key in records:
            pipe.hget(key, "created_at")
        wanted = [
            (index, keys.external_listing_entry(keys.account_id_of(key), int(created)))
            for key, created in zip(records, await pipe.execute(), strict=True)
            if created
        ]
        there = await lex.contains_each(wanted)
        missing = [entry for entry, ok in zip(wanted, there, strict=True) if not ok]
        for _, member in missing:
            report.add(f"user {keys.listed_user(member)} missing from {keys.lex_directory(index)}")
        if fix and missing:
            report.fixed += sum(await lex.add_each(missing))
    async for members in _pages(lex, index, size):
        pipe = client.pipeline(transaction=False)
        for member in members:
            pipe.hget(keys.user_record(keys.listed_user(member)), "created_at")
        stale = [
            member
            for member, created in zip(members, await pipe.execute(), strict=True)
            if not created
            or keys.external_listing_entry(keys.listed_user(member), int(created)) != member
        ]
        for member in stale:
            report.add(f"{keys.lex_directory(index)} lists {member!r}, which names no such user")
        if fix and stale:
            report.fixed += await lex.remove(index, *stale)
