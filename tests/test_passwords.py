"""bcrypt stays off the event loop, and a miss costs what a wrong password costs."""

from __future__ import annotations

import asyncio
import threading
import time

import bcrypt

from authsvc.identity.passwords import PasswordHasher

from .conftest import SECRET
from .helpers import error_of, login, new_user, register


class CountingCheck:
    def __init__(self, delay: float = 0.0) -> None:
        self.calls = 0
        self.threads: set[str] = set()
        self.delay = delay
        self._lock = threading.Lock()

    def __call__(self, password: bytes, hashed: bytes) -> bool:
        with self._lock:
            self.calls += 1
            self.threads.add(threading.current_thread().name)
        if self.delay:
            time.sleep(self.delay)  # a deliberately slow hash check
        return bcrypt.checkpw(password, hashed)


async def test_healthz_answers_while_a_slow_login_is_in_flight(make_client):
    check = CountingCheck(delay=1.5)
    http = await make_client(hasher=PasswordHasher(cost=4, threads=2, checkpw=check))
    user = await register(http)
    started = time.monotonic()
    pending = asyncio.ensure_future(
        http.post("/login", json={"username": user["username"], "password": user["password"]})
    )
    await asyncio.sleep(0.2)
    assert not pending.done()
    for _ in range(5):
        t0 = time.monotonic()
        resp = await http.get("/healthz")
        assert resp.status == 200
        assert time.monotonic() - t0 < 0.25, "the event loop was blocked by bcrypt"
    assert not pending.done()
    assert (await pending).status == 200
    assert time.monotonic() - started >= 1.5
    assert check.threads and all(name.startswith("bcrypt") for name in check.threads)


async def test_unknown_account_still_runs_one_bcrypt_check(make_client):
    check = CountingCheck()
    http = await make_client(hasher=PasswordHasher(cost=4, threads=2, checkpw=check))
    user = await register(http)
    wrong = await http.post(
        "/login", json={"username": user["username"], "password": "wrong password"}
    )
    calls_wrong = check.calls
    unknown = await http.post(
        "/login", json={"username": "nobody_here", "password": "wrong password"}
    )
    unknown_email = await http.post(
        "/login", json={"username": "no@body.io", "password": "x" * 100}
    )
    assert check.calls == calls_wrong + 2  # exactly one check each
    bodies = [await error_of(r) for r in (wrong, unknown, unknown_email)]
    assert [r.status for r in (wrong, unknown, unknown_email)] == [401, 401, 401]
    assert bodies[0] == bodies[1] == bodies[2]


async def test_miss_and_wrong_password_do_the_same_bcrypt_work(make_client):
    """A miss checks against a dummy hash of the configured cost, as a wrong password
    checks against the account's: the same work, so the same time. Asserted on the work
    itself (the cost of every hash checked), not with a stopwatch on a shared machine."""
    costs: list[tuple[str, bytes]] = []

    def check(password: bytes, hashed: bytes) -> bool:
        costs.append((threading.current_thread().name, hashed[:7]))
        return bcrypt.checkpw(password, hashed)

    http = await make_client(
        hasher=PasswordHasher(cost=6, threads=2, checkpw=check), login_max_failures=100
    )
    user = await register(http)
    for name in (user["username"], "ghost_1", user["email"], "ghost@example.com"):
        resp = await http.post("/login", json={"username": name, "password": "nope-nope"})
        assert resp.status == 401
    assert [c for _, c in costs] == [b"$2b$06$"] * 4
    assert all(thread.startswith("bcrypt") for thread, _ in costs)


async def test_inactive_account_cannot_log_in(http, store):
    user = await register(http)
    await store.hset(f"account:{{{user['id']}}}", "is_active", "0")
    resp = await http.post(
        "/login", json={"username": user["username"], "password": user["password"]}
    )
    assert resp.status == 403 and (await error_of(resp))["code"] == "account_disabled"
    # With the wrong password, a disabled account looks like any other miss.
    resp = await http.post("/login", json={"username": user["username"], "password": "nope"})
    assert resp.status == 401 and (await error_of(resp))["code"] == "invalid_credentials"


async def test_hash_is_upgraded_when_the_cost_changes(make_client, store):
    http4 = await make_client(bcrypt_cost=4)
    user = await register(http4)
    key = f"account:{{{user['id']}}}"
    assert (await store.hget(key, "password")).startswith("$2b$04$")
    http5 = await make_client(bcrypt_cost=5)
    await login(http5, user)
    assert (await store.hget(key, "password")).startswith("$2b$05$")
    await login(http5, user)


async def test_default_cost_is_the_identity_designs():
    from authsvc.config import Settings

    assert Settings(jwt_secret=SECRET).bcrypt_cost == 12
    assert Settings.from_env({"API_JWT_SECRET": SECRET, "BCRYPT_COST": "11"}).bcrypt_cost == 11


async def test_registration_hash_uses_configured_cost(http, store):
    user = new_user()
    body = await (await http.post("/register", json=user)).json()
    stored = await store.hget(f"account:{{{body['id']}}}", "password")
    assert stored.startswith("$2b$04$") and bcrypt.checkpw(
        user["password"].encode(), stored.encode()
    )


async def test_an_account_without_a_password_never_matches():
    """A guest or provider-made account stores no hash (""): checked against the dummy
    hash like an unknown account, and never a match, the dummy's own password included."""
    check = CountingCheck()
    hasher = PasswordHasher(cost=4, threads=1, checkpw=check)
    for stored in ("", None):
        assert await hasher.verify("authsvc-dummy-password", stored) is False
        assert await hasher.verify("anything at all", stored) is False
    assert check.calls == 4  # one bcrypt check each: the same work as a wrong password
