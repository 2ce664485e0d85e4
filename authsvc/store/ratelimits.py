"""Counters for rate limits: single keys with their window as TTL, so they hold across
several service processes and expire by themselves (no sweeper)."""

from __future__ import annotations

import asyncio

import redis.asyncio as redis

from . import keys
from .connection import LuaStep, lua_source, store_call

KNOWN_IP_TTL_MS = 30 * 86_400_000


class RateLimitStore:
    def __init__(self, client: redis.Redis) -> None:
        self._r = client
        self._hit = LuaStep(client, lua_source("counter_hit"))

    @store_call
    async def peek(self, counters: list[str]) -> list[tuple[int, int]]:
        """(count, ms left in the window) for each counter; (0, 0) when absent."""
        pipe = self._r.pipeline(transaction=False)
        for key in counters:
            pipe.get(key)
            pipe.pttl(key)
        flat = await pipe.execute()
        return [(int(flat[i] or 0), max(int(flat[i + 1]), 0)) for i in range(0, len(flat), 2)]

    @store_call
    async def hit(self, counters: list[tuple[str, int]]) -> list[int]:
        """Count one hit on each (key, window_ms); returns the new counts."""
        if len(counters) == 1:
            # One script, one round trip: a pipeline would also send SCRIPT EXISTS.
            ((key, window_ms),) = counters
            return [int(await self._hit(keys=[key], args=[window_ms]))]
        if isinstance(self._r, redis.RedisCluster):
            # A cluster pipeline cannot carry scripts; the counters live on several
            # nodes anyway, so send the hits side by side.
            counts = await asyncio.gather(
                *(self._hit(keys=[key], args=[window_ms]) for key, window_ms in counters)
            )
            return [int(n) for n in counts]
        pipe = self._r.pipeline(transaction=False)
        for key, window_ms in counters:
            await self._hit(keys=[key], args=[window_ms], client=pipe)
        return [int(n) for n in await pipe.execute()]

    @store_call
    async def reset(self, counter: str) -> None:
        await self._r.delete(counter)

    @store_call
    async def is_known_ip(self, account_id: str, ip: str) -> bool:
        return bool(await self._r.hexists(keys.known_ips(account_id), ip))

    @store_call
    async def remember_ip(self, account_id: str, ip: str, now_ms: int) -> None:
        pipe = self._r.pipeline(transaction=True)  # one slot: MULTI keeps the TTL with it
        pipe.hset(keys.known_ips(account_id), ip, now_ms)
        pipe.pexpire(keys.known_ips(account_id), KNOWN_IP_TTL_MS)
        await pipe.execute()
