"""Uniqueness through SET NX claims: conflicts, concurrency, and crash leftovers."""

from __future__ import annotations

import asyncio
import time

from authsvc.platform.normalize import email_lc
from authsvc.store import keys
from authsvc.store.accounts import PENDING_TIMEOUT_MS, AccountStore, NewAccount
from authsvc.store.check import check
from authsvc.store.lexindex import LexIndexes

from .helpers import ONE_ACCOUNT, data_keys, error_of, login, new_user, register


async def test_taken_username_and_email_answer_409_naming_the_field(http):
    user = await register(http)
    other = new_user()
    resp = await http.post("/register", json=other | {"username": user["username"].upper()})
    assert resp.status == 409
    err = await error_of(resp)
    assert err["code"] == "username_taken" and list(err["fields"]) == ["username"]
    resp = await http.post("/register", json=other | {"email": user["email"].title()})
    assert resp.status == 409
    err = await error_of(resp)
    assert err["code"] == "email_taken" and list(err["fields"]) == ["email"]
    # The failed attempts left nothing: the other username is still free.
    assert (await http.post("/register", json=other)).status == 201


async def test_email_is_stored_as_given_and_claimed_lowercased(http, store):
    user = new_user() | {"email": "Mixed.Case@Example.COM"}
    body = await (await http.post("/register", json=user)).json()
    assert body["email"] == "Mixed.Case@Example.COM"
    assert await store.get("account:email:mixed.case@example.com") == str(body["id"])


async def _race(http, users):
    resps = await asyncio.gather(*(http.post("/register", json=u) for u in users))
    return sorted(r.status for r in resps)


async def test_50_concurrent_registrations_of_one_username(make_client, store):
    http = await make_client(bcrypt_cost=4)
    users = [new_user() | {"username": "contested"} for _ in range(50)]
    assert await _race(http, users) == [201] + [409] * 49
    # Exactly the winner's three keys: account, username claim, email claim.
    assert await data_keys(store) == ONE_ACCOUNT
    winner = await store.get("account:username:contested")
    assert await store.exists(keys.account(winner))
    acc = await store.hgetall(keys.account(winner))
    assert await store.get(keys.email_claim(email_lc(acc["email"]))) == winner


async def test_50_concurrent_registrations_of_one_email(make_client, store):
    http = await make_client(bcrypt_cost=4)
    variants = ("same@example.com", "SAME@Example.com", "Same@EXAMPLE.com")
    users = [new_user() | {"email": variants[i % 3]} for i in range(50)]
    assert await _race(http, users) == [201] + [409] * 49
    assert await data_keys(store) == ONE_ACCOUNT
    aid = await store.get("account:email:same@example.com")
    acc = await store.hgetall(keys.account(aid))
    assert await store.get(f"account:username:{acc['username'].lower()}") == aid


async def test_claim_pointing_at_no_account_counts_as_free(http, store):
    user = new_user()
    await store.set(f"account:username:{user['username'].lower()}", "999")
    await store.set(f"account:email:{user['email']}", "998")
    resp = await http.post("/register", json=user)
    assert resp.status == 201
    aid = str((await resp.json())["id"])
    assert await store.get(f"account:username:{user['username'].lower()}") == aid
    await login(http, user)


async def _crashed_registration(store, user, *, age_ms: int, claims=("username",)):
    """The state a process leaves when it dies after claiming, before activating."""
    now = int(time.time() * 1000)
    aid = "4242"
    await store.hset(
        keys.account(aid),
        mapping={
            "id": aid,
            "username": user["username"],
            "email": user["email"],
            "password": "x",
            "created_at": now - age_ms,
            "is_active": "1",
            "pending": "1",
        },
    )
    if "username" in claims:
        await store.set(keys.username_claim(user["username"].lower()), aid)
    if "email" in claims:
        await store.set(keys.email_claim(user["email"].lower()), aid)
    return aid


async def test_claim_of_a_young_pending_registration_is_taken(http, store):
    user = new_user()
    await _crashed_registration(store, user, age_ms=1000)
    resp = await http.post("/register", json=user)
    assert resp.status == 409  # it may still be in flight


async def test_claim_of_a_dead_pending_registration_is_taken_over(http, store):
    user = new_user()
    dead = await _crashed_registration(
        store, user, age_ms=PENDING_TIMEOUT_MS + 1000, claims=("username", "email")
    )
    resp = await http.post("/register", json=user)
    assert resp.status == 201
    assert not await store.exists(keys.account(dead))
    assert await data_keys(store) == ONE_ACCOUNT


async def test_pending_accounts_cannot_log_in(http, store):
    user = new_user()
    await register(http, user)
    aid = await store.get(keys.username_claim(user["username"].lower()))
    await store.hset(keys.account(aid), "pending", "1")
    resp = await http.post(
        "/login", json={"username": user["username"], "password": user["password"]}
    )
    assert resp.status == 401


async def test_abandoned_registration_releases_its_claims(store):
    """A registration that stalls past the timeout loses to a competitor and cleans up."""
    accounts = AccountStore(store, pending_timeout_ms=0)
    stalled = NewAccount(
        id=1,
        username="slow",
        email="slow@x.io",
        username_lc="slow",
        email_lc="slow@x.io",
        password_hash="h",
        created_at_ms=0,
    )

    real_activate = accounts._activate

    async def competitor_then_activate(**kw):
        # While we were stalled, a competitor declared us dead and took the username.
        fresh = NewAccount(
            id=2,
            username="slow",
            email="fast@x.io",
            username_lc="slow",
            email_lc="fast@x.io",
            password_hash="h",
            created_at_ms=10,
        )
        assert await AccountStore(store, pending_timeout_ms=0).create(fresh, now_ms=10)
        return await real_activate(**kw)

    accounts._activate = competitor_then_activate
    try:
        await accounts.create(stalled, now_ms=5)
        raise AssertionError("the stalled registration must fail")
    except Exception as exc:  # RegistrationAbandoned
        assert type(exc).__name__ == "RegistrationAbandoned"
    assert await store.get("account:username:slow") == "2"
    assert await store.get("account:email:slow@x.io") is None  # released
    assert not await store.exists(keys.account(1))
    assert await data_keys(store) == [
        "account:email:*",
        "account:username:*",
        "account:{*}",
        *(
            f"idx:{{users:{i}}}{part}"
            for i in ("created", "email", "username")
            for part in ("", ":1", ":seq")
        ),
    ]


async def test_check_reports_and_fixes_leftovers(http, store):
    user = await register(http)
    orphan = new_user()
    await store.set(keys.username_claim(orphan["username"].lower()), "777")  # no account
    dead = await _crashed_registration(
        store, new_user(), age_ms=PENDING_TIMEOUT_MS + 5000, claims=("email",)
    )
    aid = user["id"]
    await store.zadd(keys.account_characters(aid), {"55": 1})  # index without hash
    await store.hset(keys.character(aid, 66), mapping={"id": "66", "created_at": "5"})
    await store.hset(keys.character(31337, 1), mapping={"id": "1"})  # no account

    now = int(time.time() * 1000)
    report = await check(store, fix=False, now_ms=now, batch=2)
    text = "\n".join(report.problems)
    assert len(report.problems) == 6, text
    assert "stale claim account:username:" in text and "abandoned registration" in text
    assert await store.exists(keys.username_claim(orphan["username"].lower()))  # report only

    report = await check(store, fix=True, now_ms=now, batch=2)
    assert report.fixed == 6
    assert not await store.exists(keys.account(dead))
    assert await store.zrange(keys.account_characters(aid), 0, -1) == ["66"]
    assert (await check(store, fix=False, now_ms=now)).problems == []
    await login(http, user)  # the live account was never touched


async def test_check_repairs_the_derived_indexes(http, store):
    user = await register(http)
    aid = str(user["id"])
    lex = LexIndexes(store)
    name_entry = f"{user['username'].lower()}:{aid}"
    await lex.remove(keys.USERS_BY_USERNAME, name_entry)  # a crash lost these
    await lex.remove(keys.role_members("user"), aid)
    await lex.add(keys.USERS_BY_EMAIL, "ghost@example.com 999")  # names no account
    await lex.add(keys.role_members("admin"), aid)  # a role the user does not hold
    now = int(time.time() * 1000)
    report = await check(store, fix=True, now_ms=now)
    text = "\n".join(report.problems)
    assert "missing from idx:{users:username}" in text and "idx:{rbac:members:user}" in text
    assert "ghost@example.com" in text and "does not hold the role" in text
    assert report.fixed == 4
    assert (await check(store, fix=False, now_ms=now)).problems == []
    assert await lex.range(keys.role_members("user"), limit=10) == [aid]
    assert await lex.range(keys.role_members("admin"), limit=10) == []
    assert await lex.range(keys.USERS_BY_USERNAME, limit=10) == [name_entry]
    assert await lex.range(keys.USERS_BY_EMAIL, limit=10) == [f"{user['email'].lower()} {aid}"]


async def test_check_walks_the_indexes_a_page_at_a_time(http, store):
    for _ in range(5):
        await register(http)
    lex = LexIndexes(store)
    created = await lex.range(keys.USERS_BY_CREATED, limit=10)
    names = await lex.range(keys.USERS_BY_USERNAME, limit=10)
    # Entries naming no account between the real ones, and real ones lost.
    ghosts = [f"{int(m[:13]) + 1:013d}:9{i}" for i, m in enumerate(created)]
    await lex.add(keys.USERS_BY_CREATED, *ghosts)
    await lex.remove(keys.USERS_BY_USERNAME, *names[1::2])
    now = int(time.time() * 1000)
    report = await check(store, fix=True, now_ms=now, batch=2)
    assert report.fixed == len(ghosts) + len(names[1::2]), report.problems
    assert (await check(store, fix=False, now_ms=now, batch=2)).problems == []
    assert await lex.range(keys.USERS_BY_CREATED, limit=20) == created
    assert await lex.range(keys.USERS_BY_USERNAME, limit=20) == names
