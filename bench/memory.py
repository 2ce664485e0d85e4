"""The store's memory per account, loaded through the domain layer.

Accounts are made the way the HTTP routes make them — `LifecycleService.register`
(account, claims, roles, admin indexes, the pending email-verification token, audit),
`CharacterService.create`, `FavoriteService.add` (catalog backend `none`) — on a
redis-server of their own. `INFO memory` is read after a warm-up (scripts loaded, the
built-in roles seeded) and again after the load; the difference per account is the
headline. The breakdown groups every key by the pattern in `authsvc/store/keys.py`
it was written with, and prices each family with `MEMORY USAGE ... SAMPLES 0` on a
sample of its keys (every key of a small family; the audit streams whole).
"""

from __future__ import annotations

import asyncio
import random
import re
import secrets
import tempfile
import time
import uuid
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import bcrypt
import redis.asyncio as aredis

from authsvc.appkeys import AUDIT, CHARACTERS, FAVORITES, LIFECYCLE, RBAC
from authsvc.config import Settings
from authsvc.identity.passwords import PasswordHasher
from authsvc.identity.principal import LOCAL, Principal
from authsvc.platform.mail import Message
from authsvc.serve.app import create_app
from authsvc.store import keys
from authsvc.store.connection import create_client
from tests.redis_proc import RedisProcess

WARM_UP = 200  # accounts made before the baseline is read (scripts, roles, first pages)
SAMPLE = 2000  # keys priced per family

# Placeholders the key functions are called with, turned into regex groups.
_ID, _PART = "\x00", "\x01"


def _pattern(key: str) -> re.Pattern:
    text = re.escape(key).replace(_ID, r"[^}]+").replace(_PART, r"[^:]+")
    return re.compile(text + r"\Z")


def families() -> list[tuple[str, re.Pattern]]:
    """(family, pattern): built by calling keys.py, so the breakdown follows the layout.
    First match wins."""
    kinds = [("videos", "videos"), ("actors", "actors"), ("tracks", "tracks")]
    out = [
        ("account:{id}", keys.account(_ID)),
        ("account:username:<name> (claim)", keys.username_claim(_PART)),
        ("account:email:<email> (claim)", keys.email_claim(_PART)),
        ("account:{id}:characters", keys.account_characters(_ID)),
        ("character:{id}:<cid>", keys.character(_ID, _PART)),
        ("account:{id}:sessions", keys.account_sessions(_ID)),
        ("account:{id}:known_ips", keys.known_ips(_ID)),
        ("user:{id}:roles", keys.user_roles(_ID)),
        ("user:{id}:activity (ids of audit:events)", keys.user_activity(_ID)),
        ("user:{id}:apikeys", keys.user_api_keys(_ID)),
        ("user:{id}:profile", keys.profile(_ID)),
        ("user:{id}:preferences", keys.preferences(_ID)),
        ("user:{id}:following", keys.following(_ID)),
        ("user:{id}:followers", keys.followers(_ID)),
        ("user:{sub}", keys.user_record(_ID)),
        ("audit:events (stream)", keys.AUDIT_STREAM),
        ("rbac:roles", keys.ROLES),
    ]
    # Lex indexes: directory, bucket counter, then buckets (whose numbers match `_PART`).
    for name, index in (
        ("users:created", keys.USERS_BY_CREATED),
        ("users:username", keys.USERS_BY_USERNAME),
        ("users:email", keys.USERS_BY_EMAIL),
        ("rbac:members:<role>", keys.role_members(_PART)),
    ):
        out += [
            (f"idx:{{{name}}} (directory)", keys.lex_directory(index)),
            (f"idx:{{{name}}}:seq", keys.lex_counter(index)),
            (f"idx:{{{name}}}:<n> (buckets)", keys.lex_bucket(index, _PART)),
        ]
    for kind, name in kinds:
        out += [
            (f"fav:{{id}}:{name}:by_target", keys.favorites_by_target(_ID, kind)),
            (f"fav:{{id}}:{name}:index", keys.favorites_index(_ID, kind)),
        ]
    out += [
        ("session:{id}:<sid>:refresh", keys.session_refresh_tokens(_ID, _PART)),
        ("session:{id}:<sid>", keys.session(_ID, _PART)),
        ("refresh:{id}:<sha256>", keys.refresh_token(_ID, _PART)),
    ]
    patterns = [(name, _pattern(key)) for name, key in out]
    return [*patterns, ("rl:* (rate limits)", re.compile(r"rl:.*\Z"))]


class _NoMail:
    """The verification mail is queued as in production, then dropped."""

    async def deliver(self, message: Message) -> None:
        return None


def load_in_processes(
    url: str, *, start: int, count: int, processes: int, concurrency: int, cost: int
) -> float:
    """Load with `processes` loaders side by side (one Python process keeps one core
    busy); the wall-clock seconds it took."""
    t0 = time.monotonic()
    share = -(-count // processes)
    with ProcessPoolExecutor(processes, mp_context=get_context("spawn")) as pool:
        jobs = [
            pool.submit(
                _load_sync, url, start + k * share, min(share, count - k * share), concurrency, cost
            )
            for k in range(processes)
            if count - k * share > 0
        ]
        for job in jobs:
            job.result()
    return time.monotonic() - t0


def _load_sync(url: str, start: int, count: int, concurrency: int, cost: int) -> None:
    asyncio.run(load(url, start=start, count=count, concurrency=concurrency, cost=cost))


async def load(url: str, *, start: int, count: int, concurrency: int, cost: int) -> None:
    """`count` accounts, each with one character and one favorite video, through the
    service classes; `concurrency` of them in flight at a time."""
    settings = Settings(
        jwt_secret=secrets.token_hex(32),
        keydb_url=url,
        bcrypt_cost=cost,
        hash_threads=2,
        catalog_backend="none",
        register_ip_limit=1_000_000,  # every registration here comes from one "address"
    )
    client = create_client(url, timeout=30, max_connections=concurrency + 8)
    hasher = PasswordHasher(cost=cost, threads=2)
    app = create_app(settings, client=client, hasher=hasher, mailer=_NoMail())
    await app[RBAC].definitions()  # seeds the built-in roles, as serve does
    videos = app[FAVORITES]["videos"]

    async def one(i: int) -> None:
        username = f"player_{i:07d}"
        account = await app[LIFECYCLE].register(
            username=username,
            email=f"{username}@example.com",
            password="benchmark password",
            ip="203.0.113.7",
        )
        await app[CHARACTERS].create(
            account["id"], name="Aria", description="a ranger from the north woods", sex=1, race=2
        )
        who = Principal(user_id=str(account["id"]), kind=LOCAL, username=username, exp=2**62)
        created, _ = await videos.add(who, str(uuid.UUID(int=random.getrandbits(128))), {})
        assert created

    async def worker(offset: int) -> None:
        for i in range(start + offset, start + count, concurrency):
            await one(i)

    try:
        await asyncio.gather(*(worker(k) for k in range(concurrency)))
        await app[AUDIT].flush()
        await app[LIFECYCLE].mail.close()
    finally:
        hasher.close()
        await client.aclose()


def _text(value: bytes | str | None) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def _info(client: aredis.Redis) -> dict:
    info = await client.info("memory")
    return {k: info[k] for k in ("used_memory", "used_memory_dataset", "used_memory_overhead")}


async def breakdown(client: aredis.Redis, accounts: int) -> tuple[list[dict], int, int]:
    """Per family: keys, bytes (sampled mean x keys), bytes per account. Also the total
    attributed and the number of keys scanned."""
    patterns = families()
    found: dict[str, list[str]] = defaultdict(list)
    scanned = 0
    async for key in client.scan_iter(count=5000):
        scanned += 1
        name = key.decode()
        family = next((f for f, p in patterns if p.match(name)), "(other) " + name)
        found[family].append(name)
    rows = []
    attributed = 0
    for family, names in found.items():
        sample = random.sample(names, min(SAMPLE, len(names)))
        async with client.pipeline(transaction=False) as pipe:
            for name in sample:
                pipe.memory_usage(name, samples=0)
            pipe.type(sample[0])
            pipe.object("encoding", sample[0])
            *sizes, kind, encoding = await pipe.execute()
        sizes = [s or 0 for s in sizes]
        total = round(sum(sizes) / len(sizes) * len(names))
        attributed += total
        rows.append(
            {
                "family": family,
                "keys": len(names),
                "type": f"{_text(kind)}/{_text(encoding)}",
                "bytes": total,
                "per_key": total / len(names),
                "per_account": total / accounts,
            }
        )
    rows.sort(key=lambda r: -r["bytes"])
    return rows, attributed, scanned


async def floor(client: aredis.Redis, accounts: int) -> float:
    """Bytes per account of the smallest layout that still keeps what the issue asks
    for: the two `SET NX` claim keys and ONE listpack hash holding the account (a real
    bcrypt string), its character and its favorite, with no indexes, roles, sessions or
    audit trail. Written with raw commands into an empty database: the floor any key
    layout on this server pays, to set beside the measured number."""
    await client.flushdb()
    before = (await client.info("memory"))["used_memory"]
    password = bcrypt.hashpw(b"benchmark password", bcrypt.gensalt(4)).decode()
    pipe = client.pipeline(transaction=False)
    for i in range(accounts):
        aid, cid = random.getrandbits(53), random.getrandbits(53)
        name = f"floor_{i:07d}"
        ms = int(time.time() * 1000)
        pipe.set(keys.username_claim(name), aid)
        pipe.set(keys.email_claim(f"{name}@example.com"), aid)
        pipe.hset(
            keys.account(aid),
            mapping={
                "username": name,
                "email": f"{name}@example.com",
                "password": password,
                "created_at": ms,
                f"c:{cid}": f"1|2|{ms}|Aria",
                f"c:{cid}:d": "a ranger from the north woods",
                f"f:{uuid.uuid4()}": str(uuid.uuid4()),
            },
        )
        if i % 1000 == 999:
            await pipe.execute()
    await pipe.execute()
    used = (await client.info("memory"))["used_memory"] - before
    await client.flushdb()
    return used / accounts


async def measure(*, accounts: int, processes: int, concurrency: int, cost: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        # No persistence, no pinning: memory, not speed, is measured here.
        store = RedisProcess(Path(tmp), extra=["--save", "", "--appendonly", "no"]).start()
        client = aredis.Redis.from_url(store.url)
        try:
            await load(
                store.url, start=0, count=WARM_UP, concurrency=min(concurrency, 20), cost=cost
            )
            before = await _info(client)
            keys_before = await client.dbsize()
            seconds = await asyncio.to_thread(
                load_in_processes,
                store.url,
                start=WARM_UP,
                count=accounts,
                processes=processes,
                concurrency=concurrency,
                cost=cost,
            )
            after = await _info(client)
            keys_after = await client.dbsize()
            # The breakdown covers the warm-up accounts too: price per account over all.
            rows, attributed, scanned = await breakdown(client, accounts + WARM_UP)
            version = (await client.info("server"))["redis_version"]
            floor_bytes = await floor(client, accounts)
        finally:
            await client.aclose()
            store.stop()
    delta = {k: after[k] - before[k] for k in after}
    return {
        "accounts": accounts,
        "load_seconds": round(seconds, 1),
        "accounts_per_s": round(accounts / seconds),
        "processes": processes,
        "bcrypt_cost": cost,
        "concurrency": concurrency,
        "redis_version": version,
        "floor_bytes_per_account": floor_bytes,
        "used_memory_before": before["used_memory"],
        "used_memory_after": after["used_memory"],
        "bytes_per_account": delta["used_memory"] / accounts,
        "dataset_bytes_per_account": delta["used_memory_dataset"] / accounts,
        "keys_per_account": (keys_after - keys_before) / accounts,
        "families": rows,
        "attributed_per_account": attributed / (accounts + WARM_UP),
        "keys_scanned": scanned,
    }
