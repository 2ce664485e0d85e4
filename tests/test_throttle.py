"""Brute-force limits: checked before bcrypt, no lockout weapon, same answers for
unknown accounts, counters in the store with TTLs."""

from __future__ import annotations

from authsvc.identity.passwords import PasswordHasher

from .helpers import error_of, new_user, register
from .test_passwords import CountingCheck


def _from(ip: str) -> dict:
    return {"X-Forwarded-For": ip}


async def _login(http, name: str, password: str, ip: str = "203.0.113.1"):
    return await http.post(
        "/login", json={"username": name, "password": password}, headers=_from(ip)
    )


async def test_sixth_failure_is_429_before_any_bcrypt(make_client, store):
    check = CountingCheck()
    http = await make_client(
        hasher=PasswordHasher(cost=4, threads=2, checkpw=check), trusted_proxies=("127.0.0.1/32",)
    )
    user = await register(http)
    for _ in range(5):
        assert (await _login(http, user["username"], "wrong-guess")).status == 401
    calls = check.calls
    resp = await _login(http, user["username"], "wrong-guess")
    assert resp.status == 429
    assert 0 < int(resp.headers["Retry-After"]) <= 900
    err = await error_of(resp)
    assert err["code"] == "too_many_requests"
    # Even the right password waits now, and no bcrypt ran for either attempt.
    assert (await _login(http, user["username"], user["password"])).status == 429
    assert check.calls == calls
    # An unknown account gets the very same treatment and body.
    for _ in range(5):
        assert (await _login(http, "no_such_user", "wrong-guess")).status == 401
    ghost = await _login(http, "no_such_user", "wrong-guess")
    assert ghost.status == 429 and await error_of(ghost) == err
    async for key in store.scan_iter(match="rl:*"):
        assert await store.pttl(key) > 0, key  # every counter has its window as TTL


async def test_a_flood_from_one_address_does_not_lock_the_owner_out(make_client):
    http = await make_client(trusted_proxies=("127.0.0.1/32",))
    user = await register(http)
    for _ in range(20):
        await _login(http, user["username"], "attacker-guess", ip="198.51.100.66")
    assert (await _login(http, user["username"], "x", ip="198.51.100.66")).status == 429
    resp = await _login(http, user["username"], user["password"], ip="203.0.113.9")
    assert resp.status == 200


async def test_success_clears_the_account_address_counter(make_client):
    http = await make_client(trusted_proxies=("127.0.0.1/32",))
    user = await register(http)
    for _ in range(4):
        await _login(http, user["username"], "typo-typo")
    assert (await _login(http, user["username"], user["password"])).status == 200
    for _ in range(4):
        assert (await _login(http, user["username"], "typo-typo")).status == 401


async def test_distributed_flood_spares_addresses_the_owner_used_before(make_client):
    http = await make_client(trusted_proxies=("127.0.0.1/32",), login_account_max_failures=6)
    user = await register(http)
    assert (await _login(http, user["username"], user["password"], ip="192.0.2.10")).status == 200
    for i in range(6):  # six botnet addresses, one guess each
        await _login(http, user["username"], "guess-guess", ip=f"198.51.100.{i}")
    resp = await _login(http, user["username"], user["password"], ip="198.51.100.99")
    assert resp.status == 429  # a new address meets the per-account bound
    resp = await _login(http, user["username"], user["password"], ip="192.0.2.10")
    assert resp.status == 200  # the owner's known address does not


async def test_credential_stuffing_from_one_address(make_client):
    http = await make_client(trusted_proxies=("127.0.0.1/32",), login_ip_max_failures=3)
    users = [await register(http) for _ in range(4)]
    for u in users[:3]:
        assert (await _login(http, u["username"], "stuffed-pw", ip="198.51.100.7")).status == 401
    resp = await _login(http, users[3]["username"], users[3]["password"], ip="198.51.100.7")
    assert resp.status == 429
    resp = await _login(http, users[3]["username"], users[3]["password"], ip="198.51.100.8")
    assert resp.status == 200


async def test_forwarded_for_is_ignored_unless_the_peer_is_a_trusted_proxy(make_client):
    http = await make_client()  # no TRUSTED_PROXIES: the peer (127.0.0.1) is the client
    user = await register(http)
    for i in range(5):
        await _login(http, user["username"], "wrong-guess", ip=f"10.9.9.{i}")
    resp = await _login(http, user["username"], user["password"], ip="10.9.9.200")
    assert resp.status == 429


async def test_registration_and_mail_requests_are_limited_per_address(make_client):
    http = await make_client(register_ip_limit=2, mail_ip_limit=2)
    for _ in range(2):
        assert (await http.post("/register", json=new_user())).status == 201
    resp = await http.post("/register", json=new_user())
    assert resp.status == 429 and int(resp.headers["Retry-After"]) > 0
    for path in ("/api/v1/auth/forgot-password", "/api/v1/auth/resend-verification"):
        assert (await http.post(path, json={"email": "a@b.io"})).status == 202
    resp = await http.post("/api/v1/auth/forgot-password", json={"email": "a@b.io"})
    assert resp.status == 429


async def test_check_gives_a_counter_without_ttl_one(store):
    """A counter that lost its TTL would lock its subject out for good: `check` reports
    it and --fix gives it the fallback window, leaving counters with a TTL alone."""
    from authsvc.store.check import COUNTER_FALLBACK_TTL_MS, check

    await store.set("rl:login:acct:someone", 9)  # no TTL: a restore dropped it
    await store.set("rl:login:ip:203.0.113.9", 3, px=60_000)
    report = await check(store, fix=False, now_ms=0)
    assert report.problems == ["counter rl:login:acct:someone has no TTL"]
    assert await store.pttl("rl:login:acct:someone") == -1  # report only
    report = await check(store, fix=True, now_ms=0)
    assert report.fixed == 1
    assert 0 < await store.pttl("rl:login:acct:someone") <= COUNTER_FALLBACK_TTL_MS
    assert 0 < await store.pttl("rl:login:ip:203.0.113.9") <= 60_000
    assert (await check(store, fix=False, now_ms=0)).problems == []
