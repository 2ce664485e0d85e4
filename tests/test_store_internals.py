"""The store plumbing: command packing, bounded steps, buffered audit writes."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest
from redis.exceptions import DataError, ResponseError

from authsvc.audit.service import FLUSH_INTERVAL, Audit
from authsvc.serve.app import create_app
from authsvc.store.connection import LuaStep, _Client, create_client

from .conftest import make_settings
from .helpers import error_of


async def test_hiredis_packer_round_trips_every_type(redis_server):
    client = create_client(redis_server.url, socket_timeout=False)
    try:
        await client.set("k", "ünïcode ✓")
        assert await client.get("k") == "ünïcode ✓"
        await client.zadd("z", {"m": 1.5})
        assert await client.zscore("z", "m") == 1.5
        assert (await client.config_get("appendonly"))["appendonly"] in ("yes", "no")
        with pytest.raises(DataError):  # redis-py's own check still applies
            await client.set("k", True)
    finally:
        await client.delete("k")
        await client.delete("z")
        await client.aclose()


async def test_a_store_that_hangs_is_a_503_within_the_timeout(aiohttp_client):
    with socket.socket() as silent:  # accepts, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        port = silent.getsockname()[1]
        client = create_client(f"redis://127.0.0.1:{port}/0", timeout=0.3, socket_timeout=False)
        http = await aiohttp_client(create_app(make_settings(store_timeout=0.3), client=client))
        t0 = time.monotonic()
        resp = await http.post("/login", json={"username": "a_user", "password": "password"})
        assert resp.status == 503 and (await error_of(resp))["code"] == "store_unavailable"
        assert time.monotonic() - t0 < 2.0
        assert (await http.get("/readyz")).status == 503
        await client.aclose()


async def test_audit_events_are_buffered_then_written_in_order(store):
    audit = Audit(store)
    for i in range(5):
        await audit.record("login_failure", user_id=i, ip="10.0.0.1", token="never-stored")
    assert await store.exists("audit:events") == 0  # still in the buffer
    await asyncio.sleep(FLUSH_INTERVAL * 4)
    events = [e for _, e in await store.xrange("audit:events")]
    assert [e["user_id"] for e in events] == ["0", "1", "2", "3", "4"]
    assert all("token" not in e for e in events)


async def test_audit_write_failures_never_reach_the_caller(caplog):
    client = create_client("redis://127.0.0.1:1/0", timeout=0.2)
    audit = Audit(client)
    await audit.record("login_success", user_id=1)
    await audit.flush()  # logs, does not raise
    assert any("audit write of 1 events failed" in r.getMessage() for r in caplog.records)
    await client.aclose()


async def test_lua_steps_take_the_lean_path_and_survive_what_the_store_does(redis_server):
    """The lean EVALSHA path on a real single-node redis-server: bounded connections
    under a burst, a cancelled call never leaves a reply for the next one, NOSCRIPT after
    a flush, and a killed connection retried on a fresh one."""
    client = create_client(redis_server.url, max_connections=4, socket_timeout=False)
    if not isinstance(client, _Client):  # the cluster run: redis-py's own path
        await client.aclose()
        return
    echo = LuaStep(client, "return ARGV[1]")
    admin = create_client(redis_server.url)
    try:
        # A burst 10x wider than the pool: all answered, never more than 4 connections.
        answers = await asyncio.gather(*(echo(args=[str(i)]) for i in range(40)))
        assert answers == [str(i) for i in range(40)]
        assert client.scripts._open <= 4

        # The store stalls all clients; a call cancelled while waiting for its reply
        # closes its connection, so the late reply cannot answer the next call.
        await admin.execute_command("CLIENT", "PAUSE", 300, "ALL")
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.05):
                await echo(args=["stale"])
        assert await echo(args=["fresh"]) == "fresh"

        await admin.script_flush()  # a restarted store knows no scripts
        assert await echo(args=["reloaded"]) == "reloaded"

        await admin.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
        assert await echo(args=["reconnected"]) == "reconnected"

        # A script error is the caller's, and leaves the connection usable.
        with pytest.raises(ResponseError):
            await LuaStep(client, "return redis.call('NOPE')")()
        assert await echo(args=["still"]) == "still"
    finally:
        await client.aclose()
        await admin.aclose()


async def test_a_burst_wider_than_the_pool_waits_for_connections(redis_server):
    """Single node or cluster (CI runs both): 60 concurrent commands and scripts on a
    client of 4 connections all succeed; none fails for want of a connection."""
    client = create_client(redis_server.url, max_connections=4, socket_timeout=False)
    echo = LuaStep(client, "return ARGV[1]")
    try:
        await client.set("burst", "x")
        got = await asyncio.gather(
            *(echo(keys=["burst"], args=[str(i)]) for i in range(30)),
            *(client.get("burst") for _ in range(30)),
        )
        assert got == [str(i) for i in range(30)] + ["x"] * 30
    finally:
        await client.aclose()
