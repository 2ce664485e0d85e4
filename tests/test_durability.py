"""Durability and faults (issue 6): a store killed with SIGKILL in the middle of a burst
of registrations and restarted from its append-only file; the network to the store
stalling and slowing down; a Keycloak whose JWKS endpoint hangs.

Each test asserts what a client sees (status, error body, how long it waited) and what
the store holds afterwards: every registration answered 201 is complete and can log
in, and `authsvc check` (authsvc/store/check.py) finds nothing left to repair."""

from __future__ import annotations

import asyncio
import hashlib
import time

import pytest

from authsvc.app import create_app
from authsvc.app_keys import STORE
from authsvc.normalize import email_lc, username_lc
from authsvc.store import keys
from authsvc.store.accounts import PENDING_TIMEOUT_MS
from authsvc.store.check import check
from authsvc.store.connection import create_client, lua_source

from .conftest import make_settings
from .helpers import error_of, login, new_user, register, user_with_token
from .redis_proc import RedisProcess, StoreProxy

STORE_TIMEOUT = 0.5


async def assert_consistent(client, registered: list[dict]) -> None:
    """Every account answered 201 is live with both claims naming it; then `check`,
    run as if 61 s had passed (so any registration cut off mid-way counts as dead),
    repairs what the faults left, and a second pass finds nothing at all."""
    for user in registered:
        acc = await client.hgetall(keys.account(user["id"]))
        assert acc.get("username") == user["username"] and "pending" not in acc, user
        assert await client.get(keys.username_claim(username_lc(user["username"]))) == str(
            user["id"]
        )
        assert await client.get(keys.email_claim(email_lc(user["email"]))) == str(user["id"])
    later = int(time.time() * 1000) + PENDING_TIMEOUT_MS + 1000
    await check(client, fix=True, now_ms=later)
    report = await check(client, fix=False, now_ms=later)
    assert report.problems == [] and report.scanned > 0
    # And the other direction, which `check` does not walk: no live account lost a
    # claim (it could not log in, and another account could take its name).
    async for akey in client.scan_iter(match=keys.ACCOUNT_GLOB, count=500):
        acc = await client.hgetall(akey)
        assert acc.get("pending") != "1", akey  # check --fix removed the dead ones
        aid = acc["id"]
        assert await client.get(keys.username_claim(username_lc(acc["username"]))) == aid, acc
        assert await client.get(keys.email_claim(email_lc(acc["email"]))) == aid, acc


async def timed(coro, bound: float):
    """(response, seconds); a request still unanswered after `bound` fails the test."""
    t0 = time.monotonic()
    try:
        resp = await asyncio.wait_for(coro, bound)
    except TimeoutError:
        raise AssertionError(f"no answer within {bound} s") from None
    return resp, time.monotonic() - t0


async def test_a_burst_wider_than_the_connection_pool_waits_for_connections(
    aiohttp_client, redis_server, store
):
    """More concurrent requests than store connections: they queue for a connection
    (within STORE_TIMEOUT) instead of failing at once with a 503 from a healthy store."""
    client = create_client(redis_server.url, max_connections=3, socket_timeout=False)
    try:
        http = await aiohttp_client(create_app(make_settings(), client=client))
        _, auth = await user_with_token(http)
        answers = await asyncio.gather(*(http.get("/characters", headers=auth) for _ in range(40)))
        assert [resp.status for resp in answers] == [200] * 40
    finally:
        await client.aclose()


async def test_a_stalled_network_to_the_store_is_503_within_the_bound_and_recovers(
    aiohttp_client, tmp_path
):
    server = RedisProcess(tmp_path / "store").start()
    proxy = await StoreProxy(server.port).start()
    try:
        # The app builds its own client from KEYDB_URL, as `authsvc serve` does.
        app = create_app(make_settings(keydb_url=proxy.url, store_timeout=STORE_TIMEOUT))
        http = await aiohttp_client(app)
        owner, auth = await user_with_token(http)
        registered = [owner]
        enough = asyncio.Event()

        async def register(user: dict):
            resp, took = await timed(http.post("/register", json=user), 10)
            body = await resp.json()
            if resp.status == 201:
                registered.append(user | {"id": body["id"]})
                if len(registered) > 40:
                    enough.set()
            return resp.status, body, took

        # Registrations keep coming from 16 clients; the network stalls in the middle.
        results: list[tuple[int, dict, float]] = []
        stop = asyncio.Event()

        async def client_loop() -> None:
            while not stop.is_set():
                results.append(await register(new_user("stall")))

        clients = [asyncio.ensure_future(client_loop()) for _ in range(16)]
        await asyncio.wait_for(enough.wait(), 10)
        proxy.stall()
        stalled_at, before = time.monotonic(), len(results)
        await asyncio.sleep(STORE_TIMEOUT * 1.5)
        stop.set()
        await asyncio.gather(*clients)
        # Every request answered: 201 before the stall, 503 after; none waited past one
        # step's bound plus the bounded clean-up of a registration cut off mid-way.
        assert {status for status, _, _ in results} <= {201, 503}, results
        assert all(status == 503 for status, _, _ in results[before + 16 :])
        assert len(results) >= before + 16  # every client's request hit the stall
        for status, body, took in results:
            assert took < 2 * STORE_TIMEOUT + 0.5, (status, took)
            if status == 503:
                assert body["error"]["code"] == "store_unavailable"
        assert time.monotonic() - stalled_at < 2 * STORE_TIMEOUT + 1.5

        # While it stays stalled, every store route answers 503 within the bound.
        for method, path, body in (
            ("GET", "/characters", None),
            ("POST", "/login", {"username": owner["username"], "password": owner["password"]}),
            ("POST", "/register", new_user()),
            ("GET", "/readyz", None),
        ):
            resp, took = await timed(http.request(method, path, json=body, headers=auth), 10)
            assert resp.status == 503, (path, await resp.text())
            assert (await error_of(resp))["code"] == "store_unavailable"
            assert resp.headers["Retry-After"]
            assert took < STORE_TIMEOUT + 0.4, (path, took)
        assert (await http.get("/healthz")).status == 200

        # The network heals: the same process serves again, on fresh connections.
        proxy.resume()
        resp, took = await timed(http.get("/characters", headers=auth), 5)
        assert resp.status == 200 and took < STORE_TIMEOUT + 0.4
        assert (await http.get("/readyz")).status == 200
        for _ in range(5):
            status, body, _ = await register(new_user("healed"))
            assert status == 201, body
        await login(http, registered[-1])
        await assert_consistent(http.app[STORE], registered)
    finally:
        proxy.resume()
        await http.close()
        await proxy.close()
        server.stop()


def _sha(script: str) -> bytes:
    return hashlib.sha1(lua_source(script).encode()).hexdigest().encode()


# The registration's store steps (authsvc/store/accounts.py), each named by bytes only
# its command carries.
REGISTRATION_STEPS = {
    "create_pending": lambda user: _sha("account_create_pending"),
    "claim_username": lambda user: f"account:username:{username_lc(user['username'])}".encode(),
    "claim_email": lambda user: f"account:email:{email_lc(user['email'])}".encode(),
    "activate": lambda user: _sha("account_activate"),
    "index": lambda user: keys.USERS_BY_CREATED.encode(),
}


@pytest.mark.parametrize("reset", [True, False], ids=["reset", "timeout"])
@pytest.mark.parametrize("step", list(REGISTRATION_STEPS))
async def test_a_registration_whose_reply_is_lost_at_any_step_is_all_or_nothing(
    aiohttp_client, redis_server, store, step, reset
):
    """The store acts on a step, but the reply never comes back: the connection is reset
    (redis-py retries once, so the step runs twice) or the reply is held until the
    step's bound runs out. The client gets an answer within the bound, and the store
    holds either the complete account or, once `check` has repaired the leftovers,
    nothing: never a live account whose claims were released."""
    proxy = await StoreProxy(redis_server.port).start()
    try:
        app = create_app(make_settings(keydb_url=proxy.url, store_timeout=STORE_TIMEOUT))
        http = await aiohttp_client(app)
        registered = [await register(http)]  # the scripts are loaded now
        user = new_user("cut")
        proxy.lose_reply(REGISTRATION_STEPS[step](user), reset=reset)
        resp, took = await timed(http.post("/register", json=user), 10)
        assert proxy.lost == 1
        assert took < 2 * STORE_TIMEOUT + 0.5
        body = await resp.json()
        # A reset is retried on a new connection, so the registration goes through.
        assert resp.status == (201 if reset else 503), body
        if resp.status == 201:
            registered.append(user | {"id": body["id"]})
        else:
            assert body["error"]["code"] == "store_unavailable"
        await assert_consistent(store, registered)
        # All or nothing: the user either has the account or can register it now.
        again = await http.post("/register", json=user)
        if again.status == 201:
            assert resp.status != 201
        else:
            assert (await error_of(again))["code"] == "username_taken"
            await login(http, user)
    finally:
        await http.close()  # the app flushes its audit buffer through the proxy
        await proxy.close()
