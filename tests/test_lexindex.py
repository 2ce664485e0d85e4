"""The bucketed lex index (authsvc/store/lexindex.py) on a real redis-server: order
across buckets, splits, dropped buckets, paging, concurrency, and that the buckets
really are listpacks (ziplists on KeyDB and Redis 6) under the server's default limits."""

from __future__ import annotations

import asyncio
import random

import pytest
from redis.exceptions import ResponseError

from authsvc.store import keys
from authsvc.store.lexindex import BUCKET_SIZE, LexIndexes

from .helpers import compact_encoding

INDEX = "test:things"


def by_bytes(members) -> list[str]:
    return sorted(members, key=str.encode)


async def buckets(store, index: str = INDEX) -> list[tuple[str, list[str]]]:
    """(lower bound, members) of every bucket, in directory order."""
    return [(bound, members) for bound, _, members in await bucket_keys(store, index)]


async def bucket_keys(store, index: str = INDEX) -> list[tuple[str, str, list[str]]]:
    """(lower bound, key, members) of every bucket, in directory order."""
    out = []
    for entry in await store.zrange(keys.lex_directory(index), 0, -1):
        bound, number = entry.split("\0")
        key = keys.lex_bucket(index, number)
        out.append((bound, key, await store.zrange(key, 0, -1)))
    return out


async def assert_well_formed(store, size: int, index: str = INDEX) -> list[str]:
    """Every bucket non-empty, within its size and its bounds; returns all members."""
    found = await buckets(store, index)
    assert found and found[0][0] == "", found[:1]  # the first bucket takes everything below
    for (bound, members), (upper, _) in zip(found, [*found[1:], (None, [])], strict=True):
        assert 0 < len(members) <= size, (bound, len(members))
        assert bound.encode() <= members[0].encode()
        if upper is not None:
            assert members[-1].encode() < upper.encode()
    return [m for _, members in found for m in members]


async def index_keys(store, index: str = INDEX) -> list[str]:
    return sorted([k async for k in store.scan_iter(match=keys.lex_directory(index) + "*")])


async def read_all(lex: LexIndexes, page: int, reverse=False, prefix="") -> list[str]:
    out, after = [], ""
    while True:
        got = await lex.page(INDEX, prefix=prefix, after=after, reverse=reverse, limit=page)
        out += got
        if len(got) < page:
            return out
        after = got[-1]


async def test_order_holds_across_bucket_boundaries(store):
    lex = LexIndexes(store, bucket_size=4)
    members = [f"{random.choice('abcxyz')}{random.randrange(10**6)}" for _ in range(300)]
    members += ["a", "a:1", "a 1", "Z", "é", "éa", "z\xff", "ꙮ"]  # bytewise, not by code point
    random.shuffle(members)
    for m in members:
        await lex.add(INDEX, m)
    expected = by_bytes(set(members))
    assert await assert_well_formed(store, 4) == expected
    assert len(await buckets(store)) > len(expected) // 4
    assert await lex.range(INDEX, limit=10_000) == expected
    assert await lex.range(INDEX, reverse=True, limit=10_000) == expected[::-1]
    # Pages of every size span buckets the same way.
    for page in (1, 3, 4, 7, 50):
        assert await read_all(lex, page) == expected
        assert await read_all(lex, page, reverse=True) == expected[::-1]
    # Explicit bounds, inclusive and exclusive, land inside buckets.
    lo, hi = expected[37], expected[201]
    assert await lex.range(INDEX, low="[" + lo, high="(" + hi, limit=10_000) == expected[37:201]
    assert await lex.range(INDEX, low="(" + lo, high="[" + hi, limit=10_000) == expected[38:202]
    assert (
        await lex.range(INDEX, low="(" + lo, high="[" + hi, reverse=True, limit=5)
        == (expected[197:202][::-1])
    )
    assert await lex.range(INDEX, low="[" + hi, high="[" + lo, limit=10) == []


async def test_many_inserts_split_into_listpack_buckets(store):
    lex = LexIndexes(store)
    members = [f"user_{random.randrange(10**9):09d}@example.com {i}" for i in range(1000)]
    random.shuffle(members)
    for start in range(0, 1000, 10):
        assert await lex.add(INDEX, *members[start : start + 10]) == 10
    assert await lex.add(INDEX, members[0]) == 0  # already there
    assert await assert_well_formed(store, BUCKET_SIZE) == by_bytes(members)
    found = await buckets(store)
    assert 10 <= len(found) <= 20  # split in halves: between half and full
    directory = keys.lex_directory(INDEX)
    encodings = {
        await store.object("encoding", k) for k in await index_keys(store) if k != directory
    }
    encodings.discard("int")  # the bucket counter
    compact = await compact_encoding(store)
    assert encodings == {compact}
    assert await store.object("encoding", directory) == compact


async def test_removals_drop_emptied_buckets_and_the_last_leaves_no_key(store):
    lex = LexIndexes(store, bucket_size=4)
    members = [f"m{i:03d}" for i in range(60)]
    for m in random.sample(members, len(members)):
        await lex.add(INDEX, m)
    before = len(await buckets(store))
    gone = members[:25] + members[40:50]  # the first buckets and some in the middle
    assert await lex.remove(INDEX, *gone) == len(gone)
    assert await lex.remove(INDEX, *gone) == 0
    left = [m for m in members if m not in gone]
    assert await lex.range(INDEX, limit=100) == left
    assert len(await buckets(store)) < before
    # Below every remaining bound: a new first bucket takes it.
    await lex.add(INDEX, "a")
    assert await assert_well_formed(store, 4) == ["a", *left]
    for m in random.sample(["a", *left], len(left) + 1):
        assert await lex.remove(INDEX, m) == 1
    assert await index_keys(store) == []
    assert await lex.range(INDEX, limit=10) == []
    assert await lex.remove(INDEX, "never") == 0


async def test_prefix_and_cursor_pages_forward_and_reverse(store):
    lex = LexIndexes(store, bucket_size=4)
    members = {f"{p}{i}" for p in ("al", "alb", "b", "bo", "bob", "c") for i in range(9)}
    members |= {"é1", "éĀ", "é\U0001f600", "f"}  # after "é" byte-wise: above any "\xff"
    for m in members:
        await lex.add(INDEX, m)
    expected = by_bytes(members)
    for prefix in ("", "al", "alb", "b", "bob", "bob3", "é", "d", "zz"):
        want = [m for m in expected if m.startswith(prefix)]
        for page in (1, 2, 5):
            assert await read_all(lex, page, prefix=prefix) == want, (prefix, page)
            assert await read_all(lex, page, reverse=True, prefix=prefix) == want[::-1]
    # A cursor outside the prefix: from the prefix's edge, or nothing.
    assert await lex.page(INDEX, prefix="bo", after="a", limit=2) == ["bo0", "bo1"]
    assert await lex.page(INDEX, prefix="bo", after="c", limit=2) == []
    assert await lex.page(INDEX, prefix="bo", after="c", reverse=True, limit=2) == [
        "bob8",
        "bob7",
    ]
    assert await lex.page(INDEX, prefix="bo", after="a", reverse=True, limit=2) == []
    # A prefix or a cursor holding NUL means what it says (no member holds one).
    assert await lex.page(INDEX, prefix="b\0", limit=5) == []
    assert await lex.page(INDEX, after="bob8\0x", limit=1) == ["c0"]
    assert await lex.page(INDEX, after="bob8\0x", reverse=True, limit=1) == ["bob8"]


async def test_concurrent_inserts_lose_nothing(store):
    lex = LexIndexes(store, bucket_size=4)
    members = [f"{random.randrange(10**6):06d}-{i}" for i in range(800)]

    async def writer(share: list[str]) -> None:
        for m in share:
            await lex.add(INDEX, m)

    await asyncio.gather(*(writer(members[k::40]) for k in range(40)))
    assert await assert_well_formed(store, 4) == by_bytes(members)
    await asyncio.gather(*(lex.remove(INDEX, *members[k:400:40]) for k in range(40)))
    assert await lex.range(INDEX, limit=1000) == by_bytes(members[400:])


async def test_long_members_stay_whole_in_a_skiplist_bucket(store):
    lex = LexIndexes(store)
    long = "x" * 70 + "@" + "y" * 200 + ".example.com 42"
    await lex.add(INDEX, *(f"a{i:02d}" for i in range(54)), long, *(f"z{i:02d}" for i in range(45)))
    assert await lex.page(INDEX, prefix="x" * 70, limit=5) == [long]
    ((_, bucket, members),) = await bucket_keys(store)
    assert len(members) == BUCKET_SIZE and long in members
    assert await store.object("encoding", bucket) == "skiplist"  # over 64 bytes
    # The split rewrites both halves: the one without the long member is compact.
    await lex.add(INDEX, "b")
    (_, low, low_members), (_, high, high_members) = await bucket_keys(store)
    assert long in high_members and "b" in high_members
    assert await store.object("encoding", low) == await compact_encoding(store)
    assert await store.object("encoding", high) == "skiplist"
    assert await lex.range(INDEX, limit=200) == [*low_members, *high_members]
    assert max(await lex.range(INDEX, limit=200), key=len) == long


async def test_bad_arguments_are_refused(store):
    with pytest.raises(ValueError):
        LexIndexes(store, bucket_size=129)  # buckets would outgrow the listpack limit
    lex = LexIndexes(store)
    with pytest.raises(ValueError):
        await lex.add(INDEX, "a\0b")
    # The script refuses one too, before writing any member of the call.
    with pytest.raises(ResponseError, match="NUL"):
        script, k, a = lex._add_call(INDEX, ["ok"])
        await script(keys=k, args=[*a, "a\0b"])
    with pytest.raises(ValueError):
        await lex.range(INDEX, low="a", limit=1)
    with pytest.raises(ValueError):
        await lex.range(INDEX, limit=0)
    assert await index_keys(store) == []
