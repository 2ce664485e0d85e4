"""Creating the store client and turning its failures into domain errors."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import ParamSpec, TypeVar

import hiredis
import redis.asyncio as redis
from redis import exceptions as rexc
from redis.asyncio.connection import Connection, SSLConnection, UnixDomainSocketConnection
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from ..errors import StoreUnavailable
from ..metrics import STORE_ERRORS, STORE_SECONDS

P = ParamSpec("P")
T = TypeVar("T")

# Failures that mean "the store is not reachable right now" (503), as opposed to a
# bug in a command (500). BusyLoadingError (restarting from its AOF) is a
# ConnectionError; ReadOnlyError shows up during a failover.
OUTAGE_ERRORS = (rexc.ConnectionError, rexc.TimeoutError, rexc.ReadOnlyError, OSError)


class _HiredisPacker:
    """Packs commands with hiredis's C packer instead of redis-py's pure-Python one,
    which costs ~40 us for a 15-argument EVALSHA: a third of a refresh's Python time.
    Unusual argument types fall back to redis-py's packer (and its errors)."""

    def pack_command(self, *args):
        if isinstance(args[0], str) and " " in args[0]:  # 'CONFIG GET' -> two words
            args = (*args[0].split(), *args[1:])
        try:
            return [hiredis.pack_command(args)]
        except TypeError:
            return super().pack_command(*args)


class _TcpConnection(_HiredisPacker, Connection):
    pass


class _SslConnection(_HiredisPacker, SSLConnection):
    pass


class _UnixConnection(_HiredisPacker, UnixDomainSocketConnection):
    pass


def create_client(
    url: str,
    *,
    timeout: float = 2.0,
    max_connections: int = 64,
    socket_timeout: bool = True,
) -> redis.Redis:
    """A pooled client with bounded timeouts. The pool reconnects on the next command
    after an outage, so the service recovers without a restart.

    socket_timeout=False leaves reads unbounded at the socket: the service's store
    methods bound every step with `asyncio.timeout` instead (`store_call`), which costs
    a timer rather than the Task redis-py's per-read `wait_for` creates.

    A `redis+cluster://` (or `rediss+cluster://`) URL names any node of a Redis Cluster
    (KeyDB in cluster mode too): the client learns the slot map from it and routes each
    command, script and pipeline by the hash tags in the key layout."""
    scheme, rest = url.split("://", 1)
    options = {
        "decode_responses": True,
        "socket_timeout": timeout if socket_timeout else None,
        "socket_connect_timeout": timeout,
        "socket_keepalive": True,
        "health_check_interval": 30,
        "max_connections": max_connections,
        # One quick retry hides a connection the server closed while idle; a real
        # outage still fails within about 2 x timeout.
        "retry": Retry(ExponentialBackoff(cap=0.2, base=0.02), 1),
    }
    if scheme.endswith("+cluster"):
        scheme = scheme.removesuffix("+cluster")
        return redis.RedisCluster.from_url(
            f"{scheme}://{rest}",
            connection_class=_SslConnection if scheme == "rediss" else _TcpConnection,
            **options,
        )
    connection_class = {"rediss": _SslConnection, "unix": _UnixConnection}.get(
        scheme, _TcpConnection
    )
    # More concurrent steps than connections wait for a free one (within the step's
    # bound) rather than failing at once: redis-py's default pool raises
    # MaxConnectionsError, a 503 from a healthy store under a burst.
    pool = redis.BlockingConnectionPool.from_url(
        url,
        connection_class=connection_class,
        retry_on_error=[rexc.ConnectionError],
        timeout=timeout,
        **options,
    )
    return redis.Redis.from_pool(pool)


COMMAND_TIMEOUT = 2.0  # seconds; create_app sets it from STORE_TIMEOUT


def store_call(fn: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
    """Decorator for store methods: the whole step is bounded by COMMAND_TIMEOUT, and
    an outage or a timeout becomes StoreUnavailable (503)."""

    seconds = STORE_SECONDS.labels(fn.__qualname__)

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        start = time.perf_counter()
        try:
            async with asyncio.timeout(COMMAND_TIMEOUT):
                result = await fn(*args, **kwargs)
        except TimeoutError as exc:
            STORE_ERRORS.labels("timeout").inc()
            raise StoreUnavailable() from exc
        except OUTAGE_ERRORS as exc:
            STORE_ERRORS.labels("unavailable").inc()
            raise StoreUnavailable() from exc
        seconds.observe(time.perf_counter() - start)
        return result

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


async def ping(client: redis.Redis, wait: float = 2.0) -> bool:
    with contextlib.suppress(*OUTAGE_ERRORS, TimeoutError):
        async with asyncio.timeout(wait):
            return bool(await client.ping())
    return False
