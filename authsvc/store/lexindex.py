"""Lex indexes: ordered sets of strings (sorted bytewise, as ZRANGEBYLEX sorts) that cost
~40 bytes a member rather than the ~130 of one big zset.

A zset of more than 128 members, or with one over 64 bytes, is a skiplist (~130 B a
member); a smaller one is a listpack (about the member's length + 4). So an index is
kept as bucket zsets of at most `BUCKET_SIZE` members, found through a directory zset
of their lower bounds (`keys.lex_directory`): a B-tree of depth two. A bucket that
overflows is split in two and an emptied one is dropped, all inside the one Lua script
that adds or removes; reading a range is one script too, and may span several buckets.
Every key of an index shares its hash tag, so each step is atomic, also on a cluster.

A member over 64 bytes (a long email) is kept whole: its bucket is a skiplist until the
member leaves it. Members cannot hold NUL, which the directory uses as its separator."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import redis.asyncio as redis
from redis.commands.core import AsyncScript

from . import keys
from .connection import LuaStep, lua_source

BUCKET_SIZE = 100
LISTPACK_ENTRIES = 128  # zset-max-listpack-entries' default (KeyDB's ziplist too)
CLUSTER_FANOUT = 16  # scripts in flight at once on a cluster client (its pool is bounded)

Call = tuple[AsyncScript, list[str], list[str | bytes | int]]


def _no_nul(members: Iterable[str]) -> list[str]:
    members = list(members)
    if any("\0" in m for m in members):
        raise ValueError("lex index members cannot hold NUL")
    return members


def _bound(bound: str | bytes, open_end: str) -> bytes:
    b = bound.encode() if isinstance(bound, str) else bound
    if b != open_end.encode() and b[:1] not in (b"[", b"("):
        raise ValueError(f"not a lex bound: {bound!r} (use {open_end!r}, '[x' or '(x')")
    return b


def _above_prefix(prefix: bytes) -> bytes | None:
    """The least string above every string that starts with `prefix`; None if none is."""
    p = prefix.rstrip(b"\xff")
    return p[:-1] + bytes([p[-1] + 1]) if p else None


class LexIndexes:
    """The lex indexes on one client. Each method names the index (a `keys` index name
    such as `keys.USERS_BY_CREATED`) it works on; none of them creates a client."""

    def __init__(self, client: redis.Redis, *, bucket_size: int = BUCKET_SIZE) -> None:
        if not 2 <= bucket_size <= LISTPACK_ENTRIES:
            raise ValueError(f"bucket_size must be 2..{LISTPACK_ENTRIES}, not {bucket_size}")
        self._r = client
        self._size = bucket_size
        self._add = LuaStep(client, lua_source("lexindex_add", "_lexindex"))
        self._remove = LuaStep(client, lua_source("lexindex_remove", "_lexindex"))
        self._range = LuaStep(client, lua_source("lexindex_range", "_lexindex"))

    def _add_call(self, index: str, members: Iterable[str]) -> Call:
        return (
            self._add,
            [keys.lex_directory(index), keys.lex_counter(index)],
            [keys.lex_bucket_prefix(index), self._size, *_no_nul(members)],
        )

    def _remove_call(self, index: str, members: Iterable[str]) -> Call:
        return (
            self._remove,
            [keys.lex_directory(index), keys.lex_counter(index)],
            [keys.lex_bucket_prefix(index), *members],
        )

    def _range_call(
        self,
        index: str,
        low: str | bytes,
        high: str | bytes,
        reverse: bool,
        limit: int,
    ) -> Call:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        return (
            self._range,
            [keys.lex_directory(index)],
            [
                keys.lex_bucket_prefix(index),
                _bound(low, "-"),
                _bound(high, "+"),
                int(reverse),
                limit,
            ],
        )

    async def add(self, index: str, *members: str) -> int:
        """Add members (present ones are left alone); how many were new."""
        script, k, a = self._add_call(index, members)
        return await script(keys=k, args=a)

    async def remove(self, index: str, *members: str) -> int:
        """Remove members; how many were there."""
        script, k, a = self._remove_call(index, members)
        return await script(keys=k, args=a)

    async def range(
        self,
        index: str,
        *,
        low: str | bytes = "-",
        high: str | bytes = "+",
        reverse: bool = False,
        limit: int,
    ) -> list[str]:
        """Up to `limit` members between two ZRANGEBYLEX bounds ('-', '+', '[x', '(x'),
        ascending, or descending with `reverse`."""
        script, k, a = self._range_call(index, low, high, reverse, limit)
        return await script(keys=k, args=a)

    async def page(
        self,
        index: str,
        *,
        prefix: str = "",
        after: str = "",
        reverse: bool = False,
        limit: int,
    ) -> list[str]:
        """Up to `limit` members starting with `prefix`, in order (descending with
        `reverse`), strictly after `after` (a cursor: the last member of the previous
        page) when it is given."""
        p = prefix.encode()
        above = _above_prefix(p)
        low = b"[" + p if p else b"-"
        high = b"(" + above if above is not None else b"+"
        if after:
            a = after.encode()
            if reverse and (above is None or a < above):
                high = b"(" + a
            elif not reverse and a >= p:
                low = b"(" + a
        return await self.range(index, low=low, high=high, reverse=reverse, limit=limit)

    async def add_each(self, entries: Iterable[tuple[str, str]]) -> list[int]:
        """Add each (index, member), side by side (the indexes may live on several nodes)."""
        return await self._side_by_side([self._add_call(i, [m]) for i, m in entries])

    async def remove_each(self, entries: Iterable[tuple[str, str]]) -> list[int]:
        return await self._side_by_side([self._remove_call(i, [m]) for i, m in entries])

    async def contains_each(self, entries: Iterable[tuple[str, str]]) -> list[bool]:
        """Whether each (index, member) is there, side by side."""
        entries = list(entries)
        calls = [self._range_call(i, "[" + m, "[" + m, False, 1) for i, m in entries]
        found = await self._side_by_side(calls)
        return [got == [m] for (_, m), got in zip(entries, found, strict=True)]

    async def _side_by_side(self, calls: list[Call]) -> list:
        if isinstance(self._r, redis.RedisCluster):
            # A cluster pipeline cannot carry scripts: a few at a time, concurrently.
            out: list = []
            for i in range(0, len(calls), CLUSTER_FANOUT):
                batch = calls[i : i + CLUSTER_FANOUT]
                out += await asyncio.gather(*(s(keys=k, args=a) for s, k, a in batch))
            return out
        if not calls:
            return []
        pipe = self._r.pipeline(transaction=False)
        for script, k, a in calls:
            await script(keys=k, args=a, client=pipe)
        return await pipe.execute()
