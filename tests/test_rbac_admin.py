"""Roles, permissions, administration, API keys, introspection and the audit trail,
over HTTP on a real redis-server."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from authsvc.appkeys import ACCOUNTS, AUDIT, LIFECYCLE, ROLES
from authsvc.audit.service import Audit, AuditReader, activity_member
from authsvc.http.docs import permission_table
from authsvc.store import keys
from authsvc.store.lexindex import LexIndexes
from authsvc.verify import InvalidToken, verify_token

from .conftest import SECRET
from .helpers import compact_encoding, error_of, login, new_user, register

ROOT = Path(__file__).resolve().parent.parent


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


async def make_admin(http) -> tuple[dict, dict]:
    user = new_user("admin")
    acc = await http.app[ACCOUNTS].register(**user, roles=("admin", "user"), email_verified=True)
    return user | {"id": acc["id"]}, bearer(await login(http, user))


async def user_and_auth(http, prefix="user") -> tuple[dict, dict]:
    user = await register(http, new_user(prefix))
    return user, bearer(await login(http, user))


# -- permissions and roles ------------------------------------------------------------


async def test_default_role_and_a_403_naming_the_permission(http):
    _, auth = await user_and_auth(http)
    assert (await http.get("/characters", headers=auth)).status == 200
    resp = await http.get("/api/v1/admin/users", headers=auth)
    assert resp.status == 403
    err = await error_of(resp)
    assert err["code"] == "forbidden" and "users:read" in err["message"]


async def test_permission_granted_and_denied_along_an_inheritance_chain(http):
    _, admin = await make_admin(http)
    for role in (
        {"name": "reader", "permissions": ["users:read"]},
        {"name": "auditor", "permissions": ["audit:read"], "inherits": ["reader"]},
    ):
        resp = await http.post("/api/v1/admin/roles", json=role, headers=admin)
        assert resp.status == 201, await resp.text()
    roles = {
        r["name"]: r
        for r in (await (await http.get("/api/v1/admin/roles", headers=admin)).json())["roles"]
    }
    assert roles["auditor"]["effective_permissions"] == ["audit:read", "users:read"]
    assert roles["admin"]["builtin"] and roles["manager"]["inherits"] == ["customer"]

    user, auth = await user_and_auth(http)
    resp = await http.post(
        f"/api/v1/admin/users/{user['id']}/roles", json={"role": "auditor"}, headers=admin
    )
    assert resp.status == 200 and "auditor" in (await resp.json())["roles"]
    assert (await http.get("/api/v1/admin/users", headers=auth)).status == 200  # inherited
    assert (await http.get("/api/v1/admin/activity", headers=auth)).status == 200
    resp = await http.post(f"/api/v1/admin/users/{user['id']}/disable", headers=auth)
    assert resp.status == 403  # users:write is nowhere on the chain
    members = await (await http.get("/api/v1/admin/roles/auditor/users", headers=admin)).json()
    assert members["items"] == [str(user["id"])]


async def test_inheritance_cycles_and_builtin_roles_are_refused(http):
    _, admin = await make_admin(http)
    post = lambda body: http.post("/api/v1/admin/roles", json=body, headers=admin)  # noqa: E731
    assert (await post({"name": "r1", "permissions": ["x:read"]})).status == 201
    assert (await post({"name": "r2", "permissions": [], "inherits": ["r1"]})).status == 201
    resp = await post({"name": "r1", "permissions": ["x:read"], "inherits": ["r2"]})
    assert resp.status == 409 and "cycle" in (await error_of(resp))["message"]
    resp = await post({"name": "r3", "permissions": [], "inherits": ["r3"]})
    assert resp.status == 409
    resp = await post({"name": "r1", "permissions": ["x:write"]})  # redefine: 200
    assert resp.status == 200 and (await resp.json())["permissions"] == ["x:write"]
    assert (await post({"name": "admin", "permissions": []})).status == 409
    assert (await post({"name": "Bad Name", "permissions": []})).status == 422
    assert (await post({"name": "r4", "permissions": ["not a perm"]})).status == 422
    # A well-formed name no role has: the roles' current state conflicts (as a cycle does).
    resp = await post({"name": "r5", "permissions": [], "inherits": ["ghost"]})
    assert resp.status == 409 and (await error_of(resp))["fields"]["inherits"]
    assert (await http.delete("/api/v1/admin/roles/r1", headers=admin)).status == 409  # r2
    assert (await http.delete("/api/v1/admin/roles/r2", headers=admin)).status == 204
    assert (await http.delete("/api/v1/admin/roles/r1", headers=admin)).status == 204
    assert (await http.delete("/api/v1/admin/roles/user", headers=admin)).status == 409
    assert (await http.delete("/api/v1/admin/roles/nope", headers=admin)).status == 404


async def test_role_removal_takes_effect_at_once_in_every_process(make_client):
    a = await make_client()
    b = await make_client()  # a second service process on the same store
    _, admin = await make_admin(a)
    user, _ = await user_and_auth(a)
    await a.post(f"/api/v1/admin/users/{user['id']}/roles", json={"role": "manager"}, headers=admin)
    token = bearer(await login(b, user))
    assert (await b.get("/api/v1/admin/users", headers=token)).status == 200  # now cached
    resp = await a.delete(f"/api/v1/admin/users/{user['id']}/roles/manager", headers=admin)
    assert resp.status == 204
    deadline = time.monotonic() + 1.0  # pub/sub delivery: milliseconds
    while (await b.get("/api/v1/admin/users", headers=token)).status != 403:
        assert time.monotonic() < deadline, "process b still honours the removed role"
        await asyncio.sleep(0.02)
    assert (await a.get("/api/v1/admin/users", headers=token)).status == 403


# -- administration -------------------------------------------------------------------


async def test_admin_user_listing_filters_and_pagination(http):
    _, admin = await make_admin(http)
    made = [await register(http, new_user("zlist")) for _ in range(5)]
    page1 = await (await http.get("/api/v1/admin/users?limit=3", headers=admin)).json()
    assert len(page1["items"]) == 3 and page1["next_cursor"]
    page2 = await (
        await http.get(f"/api/v1/admin/users?limit=3&cursor={page1['next_cursor']}", headers=admin)
    ).json()
    listed = [u["id"] for u in page1["items"] + page2["items"]]
    assert listed[:5] == [u["id"] for u in reversed(made)]  # newest first, no repeats
    assert len(set(listed)) == len(listed)
    prefix = made[0]["username"][:7]  # "zlist_N"
    found = await (await http.get(f"/api/v1/admin/users?username={prefix}", headers=admin)).json()
    assert made[0]["id"] in [u["id"] for u in found["items"]]
    by_email = await (
        await http.get(f"/api/v1/admin/users?email={made[1]['email'].upper()}", headers=admin)
    ).json()
    assert [u["id"] for u in by_email["items"]] == [made[1]["id"]]
    by_role = await (await http.get("/api/v1/admin/users?role=admin", headers=admin)).json()
    assert len(by_role["items"]) == 1
    resp = await http.get("/api/v1/admin/users?role=admin&username=x", headers=admin)
    assert resp.status == 422
    resp = await http.get("/api/v1/admin/users?limit=0", headers=admin)
    assert resp.status == 422
    # integers as OpenAPI writes them, not everything Python's int() reads
    for limit in ("+5", "%205", "1_0", "%D9%A5", "5.0"):  # "+5", " 5", "1_0", Arabic 5
        resp = await http.get(f"/api/v1/admin/users?limit={limit}", headers=admin)
        assert resp.status == 422, limit


async def test_admin_patch_moves_claims_and_disable_revokes_sessions(http, store):
    _, admin = await make_admin(http)
    user, auth = await user_and_auth(http)
    uid = user["id"]
    resp = await http.patch(
        f"/api/v1/admin/users/{uid}",
        headers=admin,
        json={"username": "renamed_one", "email_verified": True},
    )
    assert resp.status == 200
    body = await resp.json()
    assert body["username"] == "renamed_one" and body["email_verified"] is True
    assert body["roles"] == ["user"]
    assert await store.get(f"account:username:{user['username'].lower()}") is None
    assert await store.get("account:username:renamed_one") == str(uid)
    # JSON booleans only: marshmallow's Boolean alone would take 1, "yes", "on"...
    for value in (1, 0, "yes", "on", "true", 1.0, None):
        resp = await http.patch(
            f"/api/v1/admin/users/{uid}", headers=admin, json={"is_active": value}
        )
        assert resp.status == 422, value
    assert await login(http, user | {"username": "renamed_one"})
    taken = await register(http)
    resp = await http.patch(
        f"/api/v1/admin/users/{uid}", headers=admin, json={"email": taken["email"]}
    )
    assert resp.status == 409 and (await error_of(resp))["code"] == "email_taken"
    # The old name is free for someone else now.
    assert (
        await http.post("/register", json=new_user() | {"username": user["username"]})
    ).status == 201

    resp = await http.post(f"/api/v1/admin/users/{uid}/disable", headers=admin)
    assert resp.status == 200 and (await resp.json())["is_active"] is False
    assert (await http.get("/characters", headers=auth)).status == 401
    resp = await http.post("/login", json={"username": "renamed_one", "password": user["password"]})
    assert resp.status == 403
    await http.post(f"/api/v1/admin/users/{uid}/enable", headers=admin)
    assert await login(http, user | {"username": "renamed_one"})


async def test_admin_delete_cascades_through_the_account(http, store):
    _, admin = await make_admin(http)
    user, auth = await user_and_auth(http)
    await http.post("/characters", json={"name": "x", "sex": 0, "race": 0}, headers=auth)
    await http.post(
        "/api/v1/users/me/api-keys", json={"name": "k", "scopes": ["profile:read"]}, headers=auth
    )
    tag = f"{{{user['id']}}}"
    assert [k async for k in store.scan_iter(match=f"*{tag}*")]
    resp = await http.delete(f"/api/v1/admin/users/{user['id']}", headers=admin)
    assert resp.status == 204
    await http.app[AUDIT].flush()
    left = [k async for k in store.scan_iter(match=f"*{tag}*")]
    assert left == [], left
    assert await store.get(f"account:username:{user['username'].lower()}") is None
    lex = LexIndexes(store)
    for index in (
        keys.USERS_BY_CREATED,
        keys.USERS_BY_USERNAME,
        keys.USERS_BY_EMAIL,
        keys.role_members("user"),
    ):
        members = await lex.range(index, limit=1000)
        assert members, index  # the admin is still listed
        assert not any(str(user["id"]) in m for m in members), index
    assert (await http.get("/characters", headers=auth)).status == 401
    assert (await http.delete(f"/api/v1/admin/users/{user['id']}", headers=admin)).status == 404


def test_create_admin_cli(redis_server):
    env = {"PATH": "/usr/bin:/bin", "KEYDB_URL": redis_server.url, "BCRYPT_COST": "4"}
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "authsvc",
            "create-admin",
            "--username",
            "root_op",
            "--email",
            "root@example.com",
        ],
        input="operator password\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert "created admin root_op" in run.stdout
    again = subprocess.run(
        [sys.executable, "-m", "authsvc", "create-admin", "--username", "x", "--email", "bad"],
        input="operator password\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert again.returncode == 2 and "email" in again.stderr


# -- API keys -------------------------------------------------------------------------


async def test_api_key_lifecycle_scopes_and_owner_bound(http, store):
    user, auth = await user_and_auth(http)
    resp = await http.post(
        "/api/v1/users/me/api-keys",
        headers=auth,
        json={"name": "ci", "scopes": ["characters:read"]},
    )
    assert resp.status == 201
    created = await resp.json()
    key = created["key"]
    assert re.match(r"^ak\.\d+\.[0-9a-f]{12}\.[A-Za-z0-9_-]{43}$", key)
    listed = await (await http.get("/api/v1/users/me/api-keys", headers=auth)).json()
    assert "key" not in listed["api_keys"][0] and listed["api_keys"][0]["last_used_at"] is None
    async for k in store.scan_iter(match="apikey:*"):
        assert key.split(".")[-1] not in json.dumps(await store.hgetall(k))

    for headers in ({"X-API-Key": key}, {"Authorization": f"ApiKey {key}"}):
        assert (await http.get("/characters", headers=headers)).status == 200
    resp = await http.post(
        "/characters", headers={"X-API-Key": key}, json={"name": "x", "sex": 0, "race": 0}
    )
    assert resp.status == 403  # outside the key's scopes, though the owner may
    listed = await (await http.get("/api/v1/users/me/api-keys", headers=auth)).json()
    assert listed["api_keys"][0]["last_used_at"] is not None

    resp = await http.post(
        "/api/v1/users/me/api-keys", headers=auth, json={"name": "greedy", "scopes": ["users:read"]}
    )
    assert resp.status == 403  # more than the owner holds: not theirs to delegate
    resp = await http.patch(
        f"/api/v1/users/me/api-keys/{created['id']}",
        headers=auth,
        json={"name": "renamed", "scopes": ["characters:read", "characters:write"]},
    )
    assert resp.status == 200 and (await resp.json())["name"] == "renamed"
    assert (
        await http.post(
            "/characters", headers={"X-API-Key": key}, json={"name": "x", "sex": 0, "race": 0}
        )
    ).status == 200

    # Never more than the owner: take the owner's role away, and the key loses it too.
    _, admin = await make_admin(http)
    await http.app[ROLES].grant(str(user["id"]), "guest", actor=_actor())
    await http.delete(f"/api/v1/admin/users/{user['id']}/roles/user", headers=admin)
    assert (
        await http.post(
            "/characters", headers={"X-API-Key": key}, json={"name": "y", "sex": 0, "race": 0}
        )
    ).status == 403
    assert (await http.get("/characters", headers={"X-API-Key": key})).status == 200

    # Managing keys needs apikeys:manage, which the owner no longer holds either.
    resp = await http.delete(f"/api/v1/users/me/api-keys/{created['id']}", headers=auth)
    assert resp.status == 403


def _actor():
    from authsvc.identity.principal import LOCAL, Principal

    return Principal(user_id="0", kind=LOCAL, username="test", exp=2**62)


async def test_api_key_revocation_expiry_rate_limit_and_garbage(make_client, store):
    http = await make_client(apikey_rate_limit=3)
    _, auth = await user_and_auth(http)
    created = await (
        await http.post(
            "/api/v1/users/me/api-keys",
            headers=auth,
            json={"name": "k", "scopes": ["profile:read"]},
        )
    ).json()
    key = {"X-API-Key": created["key"]}
    for _ in range(3):
        assert (await http.get("/api/v1/users/me", headers=key)).status == 200
    resp = await http.get("/api/v1/users/me", headers=key)
    assert resp.status == 429 and int(resp.headers["Retry-After"]) <= 60
    assert (
        await http.delete(f"/api/v1/users/me/api-keys/{created['id']}", headers=auth)
    ).status == 204
    assert (await http.get("/api/v1/users/me", headers=key)).status == 401
    resp = await http.post(
        "/api/v1/users/me/api-keys",
        headers=auth,
        json={"name": "old", "scopes": ["profile:read"], "expires_at": "2001-01-01T00:00:00Z"},
    )
    assert resp.status == 422
    soon = await (
        await http.post(
            "/api/v1/users/me/api-keys",
            headers=auth,
            json={"name": "soon", "scopes": ["profile:read"], "expires_at": "2099-01-01T00:00:00Z"},
        )
    ).json()
    owner = soon["prefix"].split(".")[1]
    await store.hset(f"apikey:{{{owner}}}:{soon['id']}", "expires_at", "1")
    assert (await http.get("/api/v1/users/me", headers={"X-API-Key": soon["key"]})).status == 401
    for garbage in ("ak.1.2.3", "x" * 300, soon["key"][:-1] + "A", ""):
        resp = await http.get("/api/v1/users/me", headers={"X-API-Key": garbage})
        assert resp.status == 401, garbage


# -- introspection --------------------------------------------------------------------


async def _service_key(http) -> dict:
    owner = new_user("svc")
    await http.app[ACCOUNTS].register(**owner, roles=("service", "user"))
    token = await login(http, owner)
    created = await (
        await http.post(
            "/api/v1/users/me/api-keys",
            headers=bearer(token),
            json={"name": "verifier", "scopes": ["tokens:introspect"]},
        )
    ).json()
    return {"X-API-Key": created["key"]}


async def test_introspection_of_valid_expired_revoked_and_garbage(make_client):
    http = await make_client(access_token_ttl=60)
    svc = await _service_key(http)
    user = await register(http)
    resp = await http.post(
        "/api/v1/auth/login", json={"username": user["username"], "password": user["password"]}
    )
    tokens = await resp.json()
    resp = await http.post(
        "/api/v1/tokens/introspect", headers=svc, json={"token": tokens["access_token"]}
    )
    assert resp.status == 200
    info = await resp.json()
    assert info["active"] is True and info["sub"] == str(user["id"])
    assert info["username"] == user["username"] and info["token_type"] == "Bearer"
    assert info["iss"] == "authsvc" and info["exp"] - info["iat"] == 60
    assert "characters:read" in info["scope"].split()
    assert info["sid"] == tokens["session_id"]
    # Form-encoded, as RFC 7662 writes it.
    resp = await http.post(
        "/api/v1/tokens/introspect", headers=svc, data={"token": tokens["access_token"]}
    )
    assert (await resp.json())["active"] is True

    now = int(time.time())
    import jwt as pyjwt

    from authsvc.identity.tokens import key_id

    expired = pyjwt.encode(
        {
            "sub": str(user["id"]),
            "iss": "authsvc",
            "aud": "authsvc",
            "iat": now - 4000,
            "exp": now - 3600,
            "jti": "j",
        },
        SECRET,
        algorithm="HS256",
        headers={"kid": key_id(SECRET)},
    )
    for token in (expired, "garbage", "a.b.c"):
        resp = await http.post("/api/v1/tokens/introspect", headers=svc, json={"token": token})
        assert await resp.json() == {"active": False}
    await http.post("/api/v1/auth/logout", headers=bearer(tokens["access_token"]))
    resp = await http.post(
        "/api/v1/tokens/introspect", headers=svc, json={"token": tokens["access_token"]}
    )
    assert await resp.json() == {"active": False}  # revoked session
    # Only callers holding tokens:introspect may ask.
    resp = await http.post(
        "/api/v1/tokens/introspect", headers=bearer(await login(http, user)), json={"token": "x"}
    )
    assert resp.status == 403
    resp = await http.post("/api/v1/tokens/introspect", headers=svc, json={})
    assert resp.status == 422


def test_local_verify_helper():
    from authsvc.identity.tokens import TokenService

    svc = TokenService(secret=SECRET, issuer="authsvc", audience="authsvc", ttl=60)
    token = svc.issue(subject="42", username="bob", extra={"sid": "s1"}).token
    claims = verify_token(token, secret=SECRET)
    assert claims["sub"] == "42" and claims["sid"] == "s1"
    with pytest.raises(InvalidToken):
        verify_token(token, secret=SECRET, audience="another-service")
    with pytest.raises(InvalidToken):
        verify_token(token, secret="s" * 40)


# -- the audit trail ------------------------------------------------------------------

SECRET_WORDS = ("correct horse battery", "new password 1")


async def test_every_event_kind_is_audited_and_nothing_secret_is(http, store):
    outbox = http.app[LIFECYCLE].mail
    _, admin = await make_admin(http)
    user = await register(http)
    await outbox.drain()
    verify = re.search(r"token=(\S+)", outbox.mailer.messages[-1].body).group(1)
    await http.post("/api/v1/auth/verify-email", json={"token": verify})
    await http.post("/login", json={"username": user["username"], "password": "wrong pw"})
    t = await (
        await http.post(
            "/api/v1/auth/login", json={"username": user["username"], "password": user["password"]}
        )
    ).json()
    auth = bearer(t["access_token"])
    t2 = await (
        await http.post("/api/v1/auth/refresh", json={"refresh_token": t["refresh_token"]})
    ).json()
    auth = bearer(t2["access_token"])
    await http.post(
        "/api/v1/users/me/change-password",
        headers=auth,
        json={"current_password": user["password"], "new_password": "new password 1"},
    )
    key = await (
        await http.post(
            "/api/v1/users/me/api-keys",
            headers=auth,
            json={"name": "k", "scopes": ["profile:read"]},
        )
    ).json()
    await http.delete(f"/api/v1/users/me/api-keys/{key['id']}", headers=auth)
    await http.post(
        f"/api/v1/admin/users/{user['id']}/roles", json={"role": "guest"}, headers=admin
    )
    await http.delete(f"/api/v1/admin/users/{user['id']}/roles/guest", headers=admin)
    await http.post("/api/v1/auth/logout", headers=auth)
    await http.post("/api/v1/auth/forgot-password", json={"email": user["email"]})
    await outbox.drain()
    reset = re.search(r"token=(\S+)", outbox.mailer.messages[-1].body).group(1)
    await http.post(
        "/api/v1/auth/reset-password", json={"token": reset, "new_password": "another password"}
    )
    await http.post(f"/api/v1/admin/users/{user['id']}/disable", headers=admin)
    await http.post(f"/api/v1/admin/users/{user['id']}/enable", headers=admin)
    await http.delete(f"/api/v1/admin/users/{user['id']}", headers=admin)
    await http.app[AUDIT].flush()

    events = [e for _, e in await store.xrange("audit:events")]
    actions = {e["action"] for e in events}
    assert {
        "register",
        "email_verified",
        "login_failure",
        "login_success",
        "refresh",
        "password_changed",
        "api_key_created",
        "api_key_revoked",
        "role_granted",
        "role_removed",
        "logout",
        "password_reset_requested",
        "password_reset",
        "account_disabled",
        "account_enabled",
        "account_deleted",
    } <= actions, actions
    blob = json.dumps(events)
    for secret in (
        *SECRET_WORDS,
        t["refresh_token"],
        t["access_token"],
        key["key"],
        verify,
        reset,
        "another password",
    ):
        assert secret not in blob
    assert all(e.get("ip") == "127.0.0.1" for e in events if e["action"] == "login_success")


async def test_activity_endpoints(http):
    _, admin = await make_admin(http)
    user, auth = await user_and_auth(http)
    for _ in range(3):
        await http.post("/login", json={"username": user["username"], "password": "bad one"})
    await http.app[AUDIT].flush()
    mine = await (await http.get("/api/v1/users/me/activity?limit=2", headers=auth)).json()
    assert [e["action"] for e in mine["items"]] == ["login_failure", "login_failure"]
    rest = await (
        await http.get(
            f"/api/v1/users/me/activity?limit=10&cursor={mine['next_cursor']}", headers=auth
        )
    ).json()
    assert [e["action"] for e in rest["items"]] == ["login_failure", "login_success", "register"]
    assert rest["next_cursor"] is None
    page = await (
        await http.get(
            f"/api/v1/admin/activity?user_id={user['id']}&action=login_failure&limit=2",
            headers=admin,
        )
    ).json()
    assert len(page["items"]) == 2 and page["next_cursor"]
    everything = await (
        await http.get("/api/v1/admin/activity?action=register&limit=50", headers=admin)
    ).json()
    assert {e["user_id"] for e in everything["items"]} >= {str(user["id"])}
    future = await (
        await http.get("/api/v1/admin/activity?since=2099-01-01T00:00:00Z", headers=admin)
    ).json()
    assert future["items"] == []
    stats = await (await http.get("/api/v1/admin/activity/stats", headers=admin)).json()
    assert stats["by_action"]["login_failure"] == 3 and stats["total"] >= 5
    for bad in ("cursor=zzz", "since=yesterday", "limit=1000"):
        resp = await http.get(f"/api/v1/admin/activity?{bad}", headers=admin)
        assert resp.status == 422, bad
    assert (await http.get("/api/v1/admin/activity", headers=auth)).status == 403


async def test_out_of_range_dates_and_cursors_are_answered_not_500(http):
    """Stream ids cannot go below 1970 or past 2^64: dates and cursors outside the
    layout's range are clamped into it (the question still has an honest answer),
    never sent to the store as an id it refuses."""
    _, admin = await make_admin(http)
    user, auth = await user_and_auth(http)
    await http.app[AUDIT].flush()
    everything = await (await http.get("/api/v1/admin/activity?limit=200", headers=admin)).json()
    total = len(everything["items"])
    assert total >= 3

    async def get(path: str, who=admin) -> dict:
        resp = await http.get(path, headers=who)
        assert resp.status == 200, (path, resp.status, await resp.text())
        return await resp.json()

    # The exact inputs of the report.
    page = await get("/api/v1/admin/activity?until=0016-02-03T04:11:09-20:05")
    assert page == {"items": [], "next_cursor": None}
    stats = await get("/api/v1/admin/activity/stats?since=0001-01-01T00:00:00Z")
    assert stats["since"] == "1970-01-01T00:00:00.000Z" and stats["total"] == total
    # Their neighbours: every bound of both routes, before 1970 and far past 2286.
    early, late = "0001-01-01T00:00:00%2B23:59", "9999-12-31T23:59:59-23:59"
    assert (await get(f"/api/v1/admin/activity?since={early}&limit=200"))["items"] == (
        everything["items"]
    )
    assert (await get(f"/api/v1/admin/activity?until={late}&limit=200"))["items"] == (
        everything["items"]
    )
    assert (await get(f"/api/v1/admin/activity?since={late}"))["items"] == []
    assert (await get(f"/api/v1/admin/activity?until={early}&user_id={user['id']}"))["items"] == []
    assert (await get(f"/api/v1/admin/activity?since={early}&user_id={user['id']}"))["items"]
    stats = await get(f"/api/v1/admin/activity/stats?since={early}&until={late}")
    assert stats["total"] == total and stats["until"].startswith("2286-")
    stats = await get(f"/api/v1/admin/activity/stats?until={early}")
    assert stats["total"] == 0 and stats["until"] == "1970-01-01T00:00:00.000Z"
    assert (await get("/api/v1/admin/activity/stats?until=1970-01-01T00:00:00Z"))["total"] == 0
    # Cursors the pattern allows but the store would refuse: 0-0 (nothing is older)
    # and ids past 2^64 (everything is older).
    huge = "99999999999999999999-99999999999999999999"
    for who, base in ((admin, "/api/v1/admin/activity?"), (auth, "/api/v1/users/me/activity?")):
        assert (await get(base + "cursor=0-0", who)) == {"items": [], "next_cursor": None}
        assert (await get(base + "cursor=0-1", who))["items"] == []
        assert (await get(base + f"cursor={huge}&limit=200", who))["items"]
        assert (await get(base + "cursor=18446744073709551615-18446744073709551615", who))["items"]
    assert (await get(f"/api/v1/admin/activity?cursor={huge}&user_id={user['id']}"))["items"]
    assert (await get(f"/api/v1/admin/activity?cursor=0-0&user_id={user['id']}"))["items"] == []


async def test_an_api_key_expiring_past_year_9999_is_clamped_not_500(http):
    _, auth = await user_and_auth(http)
    resp = await http.post(
        "/api/v1/users/me/api-keys",
        headers=auth,
        # Year 9999 at -23:59 is year 10000 in UTC, which no timestamp can show.
        json={"name": "k", "scopes": ["profile:read"], "expires_at": "9999-12-31T23:59:59-23:59"},
    )
    assert resp.status == 201, await resp.text()
    assert (await resp.json())["expires_at"] == "9999-12-31T23:59:59.999Z"
    listed = await (await http.get("/api/v1/users/me/api-keys", headers=auth)).json()
    assert listed["api_keys"][0]["expires_at"] == "9999-12-31T23:59:59.999Z"


async def test_audit_retention_trims_old_events(store):
    # Events from 100 days ago (stream ids are times in ms), then one new event.
    old_ms = int((time.time() - 100 * 86400) * 1000)
    for i in range(300):
        entry = await store.xadd("audit:events", {"action": "login_failure"}, id=f"{old_ms + i}-0")
        await store.zadd("user:{7}:activity", {activity_member(entry): 0})
    audit = Audit(store, retention_days=90)
    await audit.record("login_success", user_id=7)
    await audit.flush()
    assert [e["action"] for _, e in await store.xrange("audit:events")] == ["login_success"]
    ((new_id, _),) = await store.xrange("audit:events")
    assert await store.zrange("user:{7}:activity", 0, -1) == [activity_member(new_id)]
    page = await AuditReader(store).page(user_id="7")
    assert [e["action"] for e in page["items"]] == ["login_success"]


async def test_user_activity_is_a_small_index_over_the_trail(store):
    """A user's activity is an index of stream ids (a listpack zset, a few dozen bytes a
    event), read back in stream order, with exact cursors across many events of one
    millisecond and time bounds."""
    audit = Audit(store)
    for i in range(12):  # a burst: several share a millisecond, some other users'
        await audit.record("login_failure", user_id=7, attempt=i)
        await audit.record("login_failure", user_id=8, attempt=i)
    await audit.flush()
    assert await store.object("encoding", "user:{7}:activity") == await compact_encoding(store)
    assert await store.memory_usage("user:{7}:activity", samples=0) < 600
    reader = AuditReader(store)
    seen, cursor = [], None
    while True:
        page = await reader.page(user_id="7", cursor=cursor, limit=5)
        seen += [int(e["attempt"]) for e in page["items"]]
        assert all(e["user_id"] == "7" for e in page["items"])
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == list(range(11, -1, -1))  # newest first, each once
    failures = await reader.page(user_id="7", action="login_failure", limit=3)
    assert [int(e["attempt"]) for e in failures["items"]] == [11, 10, 9]
    assert failures["next_cursor"] == failures["items"][-1]["id"]
    # Time bounds are on the stream ids, which are the store's clock.
    ((newest, _),) = await store.xrevrange("audit:events", count=1)
    newest_ms = int(newest.split("-")[0])
    after = await reader.page(user_id="7", since_ms=newest_ms + 1)
    assert after == {"items": [], "next_cursor": None}
    until = await reader.page(user_id="7", until_ms=newest_ms, limit=50)
    assert len(until["items"]) == 12


def test_the_permission_table_is_generated_from_the_code():
    readme = (ROOT / "docs" / "permissions.md").read_text()
    start, end = "<!-- permissions:start -->\n", "<!-- permissions:end -->"
    section = readme[readme.index(start) + len(start) : readme.index(end)].strip()
    assert section == permission_table(), "run: authsvc permissions (and paste it in)"
