"""Durability and faults (issue 6): a store killed with SIGKILL in the middle of a burst
of registrations and restarted from its append-only file; the network to the store
stalling, or losing the reply to each registration step; a burst wider than the
connection pool; a Keycloak whose JWKS endpoint hangs.

Each test asserts what a client sees (status, error body, how long it waited) and what
the store holds afterwards: every registration answered 201 is complete and can log
in, and `authsvc check` (authsvc/store/check.py) finds nothing left to repair."""

from __future__ import annotations

import asyncio
import hashlib
import time

import aiohttp
import pytest

from authsvc.appkeys import STORE
from authsvc.platform.normalize import email_lc, username_lc
from authsvc.serve.app import create_app
from authsvc.store import keys
from authsvc.store.accounts import PENDING_TIMEOUT_MS
from authsvc.store.check import check
from authsvc.store.connection import create_client, lua_source

from .conftest import SECRET, make_settings
from .helpers import error_of, login, new_user, register, serve, user_with_token
from .keycloak_issuer import CLIENT, Issuer
from .redis_proc import RedisProcess, StoreProxy

STORE_TIMEOUT = 0.5


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    """A single-node redis-server of this module's own, whatever store the rest of the
    suite runs on (the fault proxies speak to one node)."""
    server = RedisProcess(tmp_path_factory.mktemp("node")).start()
    yield server
    server.stop()


@pytest.fixture
async def node_store(node):
    client = create_client(node.url)
    await client.flushdb()
    yield client
    await client.aclose()


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
    # And independently of `check`: no live account lost a claim (it could not log
    # in, and another account could take its name).
    async for akey in client.scan_iter(match=keys.ACCOUNT_GLOB, count=500):
        acc = await client.hgetall(akey)
        assert acc.get("pending") != "1", akey  # check --fix removed the dead ones
        aid = acc["id"]
        assert await client.get(keys.username_claim(username_lc(acc["username"]))) == aid, acc
        assert await client.get(keys.email_claim(email_lc(acc["email"]))) == aid, acc


async def server_config(url: str) -> dict[str, str]:
    client = create_client(url)
    try:
        conf = await client.config_get("append*")
        return {k: conf[k] for k in ("appendonly", "appendfsync")}
    finally:
        await client.aclose()


async def timed(coro, bound: float):
    """(response, seconds); a request still unanswered after `bound` fails the test."""
    t0 = time.monotonic()
    try:
        resp = await asyncio.wait_for(coro, bound)
    except TimeoutError:
        raise AssertionError(f"no answer within {bound} s") from None
    return resp, time.monotonic() - t0


async def test_a_store_killed_mid_burst_loses_no_acknowledged_registration(tmp_path):
    """A real `authsvc serve` on a redis-server with `appendonly yes`, `appendfsync
    always`: 200 registrations (and 40 that collide with them) from 24 clients; the
    store is killed with SIGKILL in the middle, requests answer 503 while it is down,
    it is restarted from its data dir on its port, and the same service process goes
    on registering. Every 201 survived the kill, complete; nothing is left to repair."""
    server = RedisProcess(
        tmp_path / "store", extra=["--appendonly", "yes", "--appendfsync", "always"]
    ).start()
    env = {
        "API_JWT_SECRET": SECRET,
        "KEYDB_URL": server.url,
        "STORE_TIMEOUT": "1",
        "BCRYPT_COST": "4",
        "HASH_THREADS": "2",
        "REGISTER_IP_LIMIT": "1000000",
        "LOGIN_IP_MAX_FAILURES": "1000000",
        "LOG_LEVEL": "WARNING",
    }
    bound = 2 * float(env["STORE_TIMEOUT"]) + 0.5  # one step, plus a bounded clean-up
    queue: list[dict] = []
    for i in range(200):
        user = new_user("burst")
        queue.append(user)
        if i % 10 == 3:  # the same username (other case), another email
            queue.append(new_user("dup") | {"username": user["username"].upper()})
        if i % 10 == 7:  # the same email (other case), another username
            queue.append(new_user("dup") | {"email": user["email"].upper()})
    contested = {username_lc(u["username"]) for u in queue if u["username"].isupper()}
    contested |= {email_lc(u["email"]) for u in queue if u["email"].isupper()}

    def is_dup(user: dict) -> bool:  # one of a colliding pair (either may win the race)
        return bool({username_lc(user["username"]), email_lc(user["email"])} & contested)

    results: list[dict] = []  # per request: user, status, body, took, after (kill/restart)
    killed = restarted = False
    enough_ok, enough_down, stop = asyncio.Event(), asyncio.Event(), asyncio.Event()
    try:
        conf = await server_config(server.url)
        assert conf == {"appendonly": "yes", "appendfsync": "always"}
        async with (
            serve(env, tmp_path / "serve.log") as service,
            aiohttp.ClientSession(service.base) as http,
        ):

            async def client() -> None:
                while queue and not stop.is_set():
                    user = queue.pop(0)
                    after = "restart" if restarted else "kill" if killed else None
                    resp, took = await timed(http.post("/register", json=user), 10)
                    results.append(
                        {
                            "user": user,
                            "status": resp.status,
                            "body": await resp.json(),
                            "retry_after": resp.headers.get("Retry-After"),
                            "took": took,
                            "after": after,
                        }
                    )
                    if sum(r["status"] == 201 for r in results) >= 60:
                        enough_ok.set()
                    if sum(r["after"] == "kill" for r in results) >= 40:
                        enough_down.set()

            # Up, then killed in the middle of the burst.
            clients = [asyncio.ensure_future(client()) for _ in range(24)]
            await asyncio.wait_for(enough_ok.wait(), 30)
            await asyncio.to_thread(server.kill)  # SIGKILL
            killed = True
            await asyncio.wait_for(enough_down.wait(), 30)
            stop.set()
            await asyncio.gather(*clients)

            # Down: every store route answers 503 with the error body, in time.
            owner = next(r["user"] for r in results if r["status"] == 201)
            for method, path, body in (
                ("POST", "/register", new_user()),
                ("POST", "/login", {"username": owner["username"], "password": owner["password"]}),
                ("GET", "/readyz", None),
            ):
                resp, took = await timed(http.request(method, path, json=body), 10)
                assert resp.status == 503 and took < bound, (path, took)
                assert (await error_of(resp))["code"] == "store_unavailable"
                assert resp.headers["Retry-After"]

            # Restarted from the same data dir on the same port; the service process is
            # the same one, and goes on without a restart of its own.
            await asyncio.to_thread(server.start)
            restarted = True
            stop.clear()
            clients = [asyncio.ensure_future(client()) for _ in range(24)]
            await asyncio.gather(*clients)
            assert service.returncode is None  # the same process throughout
            log = (tmp_path / "serve.log").read_text()

            for r in results:
                assert r["took"] < bound, r
                assert r["status"] in (201, 409, 503), r
                if r["status"] == 409:
                    assert is_dup(r["user"]), r  # only colliding pairs
                    assert r["body"]["error"]["code"] in ("username_taken", "email_taken")
                if r["status"] == 503:
                    assert r["body"]["error"]["code"] == "store_unavailable" and r["retry_after"]
                    assert r["after"] != "restart", r  # recovered: no 503 after the restart
                if r["after"] == "kill":
                    assert r["status"] == 503, r
            cut_off = [r for r in results if r["after"] is None and r["status"] == 503]
            assert cut_off, "the kill must land while registrations are in flight"
            assert sum(r["after"] == "restart" and r["status"] == 201 for r in results) > 50
            # Of two registrations of one name, at most one got it.
            for field, norm in (("username", username_lc), ("email", email_lc)):
                winners = [norm(r["user"][field]) for r in results if r["status"] == 201]
                assert len(winners) == len(set(winners)), field
            assert "unhandled error" not in log, log[-5000:]

            # Every 201 is in the store, complete, and can log in; check finds nothing
            # left to repair once the cut-off registrations count as dead.
            registered = [
                r["user"] | {"id": r["body"]["id"]} for r in results if r["status"] == 201
            ]
            store = create_client(server.url)
            try:
                await assert_consistent(store, registered)
            finally:
                await store.aclose()

            async def logs_in(user: dict) -> int:
                body = {"username": user["username"], "password": user["password"]}
                async with http.post("/login", json=body) as resp:
                    return resp.status

            statuses = await asyncio.gather(*(logs_in(u) for u in registered))
            assert set(statuses) == {200}
            # A registration cut off by the kill either happened completely or not at
            # all: its user can register now, or has the account and logs in.
            for r in cut_off:
                async with http.post("/register", json=r["user"]) as resp:
                    if resp.status != 201:
                        assert (await error_of(resp))["code"] in ("username_taken", "email_taken")
                        # Taken by its own completed registration, or by the other
                        # one of a colliding pair.
                        assert await logs_in(r["user"]) == 200 or is_dup(r["user"]), r
    finally:
        server.stop()


async def test_check_finds_a_live_account_that_lost_its_claims(http, store):
    """What the registration clean-up used to leave when an activation's reply was
    lost: a live account without its claims. `check` reports it, re-takes a free
    claim, and reports (cannot undo) one another account has taken meanwhile."""
    victim = await register(http)
    name_claim = keys.username_claim(username_lc(victim["username"]))
    mail_claim = keys.email_claim(email_lc(victim["email"]))
    await store.delete(name_claim)
    await store.delete(mail_claim)
    by_email = {"username": victim["email"], "password": victim["password"]}
    assert (await http.post("/login", json=by_email)).status == 401
    taker = await register(http, new_user() | {"username": victim["username"]})
    now = int(time.time() * 1000)
    report = await check(store, fix=True, now_ms=now)
    assert sorted(report.problems) == [
        f"account {victim['id']} does not hold its claim {mail_claim}",
        f"account {victim['id']} lost its claim {name_claim} to account {taker['id']}",
    ]
    assert report.fixed == 1
    assert (await http.post("/login", json=by_email)).status == 200
    assert await store.get(name_claim) == str(taker["id"])  # never taken back


async def test_a_burst_wider_than_the_connection_pool_waits_for_connections(
    aiohttp_client, node, node_store
):
    """More concurrent requests than store connections: they queue for a connection
    (within STORE_TIMEOUT) instead of failing at once with a 503 from a healthy store."""
    client = create_client(node.url, max_connections=3, socket_timeout=False)
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
    aiohttp_client, node, node_store, step, reset
):
    """The store acts on a step, but the reply never comes back: the connection is reset
    (redis-py retries once, so the step runs twice) or the reply is held until the
    step's bound runs out. The client gets an answer within the bound, and the store
    holds either the complete account or, once `check` has repaired the leftovers,
    nothing: never a live account whose claims were released."""
    proxy = await StoreProxy(node.port).start()
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
        await assert_consistent(node_store, registered)
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


OIDC_HTTP_TIMEOUT = 0.5


async def test_a_hanging_jwks_endpoint_costs_one_bounded_wait_and_cached_keys_still_verify(
    aiohttp_server, make_client
):
    """Keycloak's JWKS endpoint accepts requests and never answers. Known keys keep
    verifying fresh tokens; a token with an unknown kid is refused once the refetch
    gives up (OIDC_HTTP_TIMEOUT), and concurrent requests share that one wait rather
    than queueing a hanging fetch each."""
    kc = Issuer()
    kc.base = str((await aiohttp_server(kc.app())).make_url("")).rstrip("/")
    http = await make_client(
        keycloak_issuer=kc.issuer,
        keycloak_client_id=CLIENT,
        oidc_http_timeout=OIDC_HTTP_TIMEOUT,
        jwks_cache_ttl=1,
        jwks_min_refresh_interval=0,  # every unknown kid may refetch (a rotation)
    )

    async def me(token: str):
        return await timed(
            http.get("/api/v1/users/me", headers={"Authorization": f"Bearer {token}"}), 10
        )

    try:
        resp, _ = await me(kc.token())
        assert resp.status == 200 and kc.jwks_hits == 1  # the keys are cached now
        kc.jwks_hang = True

        # Within JWKS_CACHE_TTL a known kid needs no fetch: fresh tokens verify at once.
        resp, took = await me(kc.token())
        assert resp.status == 200 and took < 0.3 and kc.jwks_hits == 1

        # An unknown kid refetches; the fetch hangs and gives up; the token is refused.
        resp, took = await me(kc.token(kid="rotated-while-hung"))
        assert resp.status == 401 and took < OIDC_HTTP_TIMEOUT + 0.4, took
        assert 'error="invalid_token"' in resp.headers["WWW-Authenticate"]

        # Twenty at once, half of them unknown kids, the other half fresh tokens of the
        # known key: all answered within about one fetch timeout, not one each.
        t0, hits = time.monotonic(), kc.jwks_hits
        answers = await asyncio.gather(
            *(me(kc.token(kid=f"unknown{i}") if i % 2 else kc.token()) for i in range(20))
        )
        elapsed = time.monotonic() - t0
        assert [resp.status for resp, _ in answers] == [200, 401] * 10
        assert elapsed < 2 * OIDC_HTTP_TIMEOUT + 0.5, elapsed
        assert kc.jwks_hits - hits <= 2  # one shared fetch (two if one was just ending)

        # The cache goes stale while the endpoint still hangs: its refresh gives up once,
        # and the cached keys stay in use.
        await asyncio.sleep(1.1)
        t0 = time.monotonic()
        answers = await asyncio.gather(*(me(kc.token()) for _ in range(10)))
        assert [resp.status for resp, _ in answers] == [200] * 10
        assert time.monotonic() - t0 < 2 * OIDC_HTTP_TIMEOUT + 0.5

        # Keycloak answers again: a rotated key is picked up at the next unknown kid.
        kc.release()
        kc.rotate()
        resp, took = await me(kc.token())
        assert resp.status == 200, await resp.text()
    finally:
        kc.release()
