"""Creating the store client and turning its failures into domain errors."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import ParamSpec, TypeVar

import redis.asyncio as redis
from redis import exceptions as rexc
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from ..errors import StoreUnavailable

P = ParamSpec("P")
T = TypeVar("T")

# Failures that mean "the store is not reachable right now" (503), as opposed to a
# bug in a command (500). BusyLoadingError (restarting from its AOF) is a
# ConnectionError; ReadOnlyError shows up during a failover.
OUTAGE_ERRORS = (rexc.ConnectionError, rexc.TimeoutError, rexc.ReadOnlyError, OSError)


def create_client(url: str, *, timeout: float = 2.0, max_connections: int = 64) -> redis.Redis:
    """A pooled client with bounded timeouts. The pool reconnects on the next command
    after an outage, so the service recovers without a restart."""
    return redis.Redis.from_url(
        url,
        decode_responses=True,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        socket_keepalive=True,
        health_check_interval=30,
        max_connections=max_connections,
        # One quick retry hides a connection the server closed while idle; a real
        # outage still fails within about 2 x timeout.
        retry=Retry(ExponentialBackoff(cap=0.2, base=0.02), 1),
        retry_on_error=[rexc.ConnectionError],
    )


def store_call(fn: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
    """Decorator for store methods: an outage becomes StoreUnavailable (503)."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await fn(*args, **kwargs)
        except OUTAGE_ERRORS as exc:
            raise StoreUnavailable() from exc

    return wrapper


@functools.cache
def lua_source(name: str, *preludes: str) -> str:
    """A script from store/lua, after the named preludes (`_*.lua` files that define
    shared Lua functions or checks: Lua scripts cannot include one another)."""
    lua = resources.files(__package__).joinpath("lua")
    parts = [lua.joinpath(f"{p}.lua").read_text() for p in (*preludes, name)]
    return "\n".join(parts)


def guarded_lua_source(name: str) -> str:
    """A script that acts for an authenticated caller: the `_guard.lua` prelude first."""
    return lua_source(name, "_guard")


async def ping(client: redis.Redis) -> bool:
    with contextlib.suppress(*OUTAGE_ERRORS):
        return bool(await client.ping())
    return False
