"""Creating the store client and turning its failures into domain errors."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from importlib import resources
from typing import Any, ParamSpec, TypeVar

import hiredis
import redis.asyncio as redis
from redis import exceptions as rexc
from redis.asyncio.connection import (
    AbstractConnection,
    Connection,
    SSLConnection,
    UnixDomainSocketConnection,
)
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from ..errors import StoreUnavailable
from ..platform.metrics import STORE_ERRORS, STORE_SECONDS
from . import keys as _keys

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
        cluster = _ClusterClient.from_url(
            f"{scheme}://{rest}",
            connection_class=_SslConnection if scheme == "rediss" else _TcpConnection,
            **options,
        )
        cluster.in_flight = max_connections
        return cluster
    connection_class = {"rediss": _SslConnection, "unix": _UnixConnection}.get(
        scheme, _TcpConnection
    )
    if scheme == "unix":
        del options["socket_keepalive"]  # a TCP option: redis-py's unix connection refuses it
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
    return _Client.from_pool(pool)


class _ClusterClient(redis.RedisCluster):
    """redis-py's cluster client fails a command with MaxConnectionsError (a 503 from a
    healthy store) when all of a node's connections are busy. Here at most
    `max_connections` commands are in flight per client, so no node runs out, and a
    burst waits for a turn within the caller's step bound, as on a single node.
    (Pipelines take their connections beside this bound; the service sends few.)"""

    in_flight = 64  # create_client sets it to max_connections
    _turns: asyncio.Semaphore | None = None

    async def execute_command(self, *args, **kwargs):
        if self._turns is None:  # made in the loop that uses it
            self._turns = asyncio.Semaphore(self.in_flight)
        async with self._turns:
            return await super().execute_command(*args, **kwargs)


class _Client(redis.Redis):
    """A single-node client whose Lua steps can take the lean path (`ScriptRunner`)."""

    scripts: ScriptRunner

    @classmethod
    def from_pool(cls, connection_pool):  # type: ignore[override]
        client = super().from_pool(connection_pool)
        client.scripts = ScriptRunner(
            connection_pool, max_connections=connection_pool.max_connections
        )
        return client

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await self.scripts.close()
        await super().aclose(close_connection_pool)


class ScriptRunner:
    """EVALSHA over connections of its own, without redis-py's per-command machinery
    (pool lock and condition, retry wrapper, observability hooks): ~12 us a call
    instead of ~37 us on the benchmark machine, about a fifth of an authenticated read's
    whole cost. The connections are redis-py's own (same URL, auth, TLS, parser), so
    only the bookkeeping is new:

    - at most `max_connections`; more concurrent calls wait for a free one (bounded by
      the caller's step timeout, as with the main pool);
    - a connection whose exchange did not finish (an error, a timeout, a cancelled
      request) is closed, never reused: it may still owe a reply;
    - a broken connection (the store restarted, a reset) is closed and the step is sent
      once more on a fresh one, as redis-py's own retry does: every script is written to
      be safe to run twice (a registration step, a rotation inside its reuse window);
    - NOSCRIPT (the store restarted or flushed its scripts) loads the script and
      runs it again, as redis-py does."""

    def __init__(self, pool: redis.ConnectionPool, *, max_connections: int) -> None:
        self._pool = pool
        self._max = max_connections
        self._free: deque[AbstractConnection] = deque()
        self._open = 0
        self._waiters: deque[asyncio.Future] = deque()

    async def _acquire(self) -> AbstractConnection:
        if self._free:
            return self._free.pop()
        if self._open < self._max:
            self._open += 1
            return self._pool.make_connection()
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            conn = await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._hand_on(waiter.result())  # handed over as we were cancelled
            raise
        if conn is None:  # a slot freed by a closed connection: open a new one
            return self._pool.make_connection()
        return conn

    def _hand_on(self, conn: AbstractConnection | None) -> None:
        """Give a connection (or, None, the right to open one) to the first live
        waiter, else keep it."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        if conn is None:
            self._open -= 1
        else:
            self._free.append(conn)

    async def _discard(self, conn: AbstractConnection) -> None:
        self._hand_on(None)
        await conn.disconnect(nowait=True)

    async def evalsha(self, script, keys: Sequence, args: Sequence):
        try:
            packed = [hiredis.pack_command(("EVALSHA", script.sha, len(keys), *keys, *args))]
        except TypeError:  # an unusual argument: redis-py's packer and its errors
            return await script(keys=keys, args=args)
        reconnected = loaded = False  # each once: a fresh connection, a script load
        conn = await self._acquire()
        while True:
            try:
                await conn.send_packed_command(packed, check_health=False)
                reply = await conn.read_response()
            except rexc.NoScriptError:
                if loaded:
                    self._hand_on(conn)
                    raise
                loaded = True
                try:
                    script.sha = await script.registered_client.script_load(script.script)
                except BaseException:
                    self._hand_on(conn)
                    raise
                packed = [hiredis.pack_command(("EVALSHA", script.sha, len(keys), *keys, *args))]
                continue
            except rexc.ResponseError:
                self._hand_on(conn)  # the exchange finished: the script itself failed
                raise
            except (rexc.ConnectionError, OSError):
                if reconnected:
                    await self._discard(conn)
                    raise
                # The same slot, a new socket: redis-py's connection reconnects on send.
                await conn.disconnect(nowait=True)
                reconnected = True
                continue
            except BaseException:
                await self._discard(conn)
                raise
            self._hand_on(conn)
            return reply

    async def close(self) -> None:
        while self._free:
            await self._free.pop().disconnect()
        self._open = 0


class LuaStep:
    """A registered script, called like redis-py's (`await step(keys=..., args=...)`),
    that takes the lean path on a single-node client. Given a pipeline (`client=pipe`)
    or on a cluster or fake client, it is redis-py's script."""

    def __init__(self, client: redis.Redis, source: str) -> None:
        self._script = client.register_script(source)
        self._runner = client.scripts if isinstance(client, _Client) else None

    async def __call__(self, keys: Sequence = (), args: Sequence = (), client=None):
        if self._runner is None or client is not None:
            return await self._script(keys=keys, args=args, client=client)
        return await self._runner.evalsha(self._script, keys, args)


COMMAND_TIMEOUT = 2.0  # seconds; create_app sets it from STORE_TIMEOUT


def store_call(fn: Callable[P, Awaitable[T]]) -> Callable[P, Coroutine[Any, Any, T]]:
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


class GuardedStep:
    """A script that acts for an authenticated caller, after the `_guard.lua` prelude
    (the caller's account must be live and its session, if any, not revoked, checked in
    the same round trip). The script's own keys come first, the account hash as KEYS[1];
    the caller's session hash is appended as the last key (the account hash again for a
    token that carries no session), and the sid goes first in ARGV: the guard finds both
    there, so no script derives a key name."""

    def __init__(self, client: redis.Redis, name: str, *preludes: str) -> None:
        self._step = LuaStep(client, lua_source(name, "_guard", *preludes))

    async def __call__(
        self, account_id: int | str, sid: str, *, keys: Sequence = (), args: Sequence = ()
    ):
        session = _keys.session(account_id, sid) if sid else _keys.account(account_id)
        return await self._step(keys=[*keys, session], args=[sid, *args])


async def ping(client: redis.Redis, wait: float = 2.0) -> bool:
    with contextlib.suppress(*OUTAGE_ERRORS, TimeoutError):
        async with asyncio.timeout(wait):
            return bool(await client.ping())
    return False
