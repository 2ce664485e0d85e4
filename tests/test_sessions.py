"""Sessions and refresh-token rotation over HTTP on a real redis-server."""

from __future__ import annotations

import asyncio

import jwt

from authsvc.appkeys import AUDIT

from .helpers import data_keys, error_of, new_user, register

LOGIN = "/api/v1/auth/login"
REFRESH = "/api/v1/auth/refresh"


async def _login(http, user, **extra) -> dict:
    resp = await http.post(
        LOGIN,
        json={"username": user["username"], "password": user["password"], **extra},
        headers={"User-Agent": "GameClient/1.0"},
    )
    assert resp.status == 200, await resp.text()
    return await resp.json()


def _auth(tokens: dict) -> dict:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


async def _refresh(http, refresh_token: str):
    return await http.post(REFRESH, json={"refresh_token": refresh_token})


async def test_login_creates_a_session_and_an_opaque_refresh_token(http, store):
    user = await register(http)
    t = await _login(http, user, device_name="Steam Deck")
    aid, secret = t["refresh_token"].split(".")
    assert aid == str(user["id"]) and len(secret) >= 43  # >= 256 bits
    claims = jwt.decode(t["access_token"], options={"verify_signature": False})
    assert claims["sid"] == t["session_id"]
    assert t["refresh_expires_in"] == 30 * 86400
    # Only the token's hash is stored: the token string appears nowhere in the store.
    async for key in store.scan_iter():
        assert secret not in key
        if await store.type(key) == "hash":
            assert not any(secret in v for v in (await store.hgetall(key)).values())
    assert 29 * 86400 < await store.ttl(f"session:{{{aid}}}:{t['session_id']}") <= 30 * 86400
    refresh_keys = [k async for k in store.scan_iter(match=f"refresh:{{{aid}}}:*")]
    assert len(refresh_keys) == 1 and await store.ttl(refresh_keys[0]) > 29 * 86400


async def test_refresh_rotates_and_a_spent_token_after_the_window_is_theft(make_client, store):
    http = await make_client(refresh_reuse_interval=0)
    user = await register(http)
    first = await _login(http, user)
    resp = await _refresh(http, first["refresh_token"])
    assert resp.status == 200
    second = await resp.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert second["session_id"] == first["session_id"]
    assert (await http.get("/characters", headers=_auth(second))).status == 200

    await asyncio.sleep(0.01)
    resp = await _refresh(http, first["refresh_token"])  # replayed: theft
    assert resp.status == 401
    assert (await error_of(resp))["code"] == "refresh_token_reused"
    # The whole session is gone: its successor token and its access tokens too.
    assert (await _refresh(http, second["refresh_token"])).status == 401
    assert (await http.get("/characters", headers=_auth(second))).status == 401
    await http.app[AUDIT].flush()
    events = [e for _, e in await store.xrange("audit:events")]
    assert any(
        e["action"] == "refresh_reuse_detected" and e["session_id"] == first["session_id"]
        for e in events
    )
    assert not [k for k in await data_keys(store) if k.startswith(("session:", "refresh:"))]


async def test_reuse_within_the_window_returns_the_same_pair(http):
    user = await register(http)
    first = await _login(http, user)
    a = await (await _refresh(http, first["refresh_token"])).json()
    b = await (await _refresh(http, first["refresh_token"])).json()
    assert a["refresh_token"] == b["refresh_token"]
    assert a["access_token"] == b["access_token"]
    assert (await _refresh(http, a["refresh_token"])).status == 200


async def test_two_tabs_refreshing_at_once_stay_logged_in(http):
    user = await register(http)
    first = await _login(http, user)
    resps = await asyncio.gather(*(_refresh(http, first["refresh_token"]) for _ in range(20)))
    assert [r.status for r in resps] == [200] * 20
    pairs = {((b := await r.json())["refresh_token"], b["access_token"]) for r in resps}
    assert len(pairs) == 1  # every tab got the same successor pair
    ((successor, access),) = pairs
    assert (
        await http.get("/characters", headers={"Authorization": f"Bearer {access}"})
    ).status == 200
    assert (await _refresh(http, successor)).status == 200


async def test_expired_and_malformed_refresh_tokens(http, store):
    user = await register(http)
    t = await _login(http, user)
    for bad in (
        "x",
        "1.short",
        f"{user['id']}." + "A" * 43,
        "0." + "A" * 43,
        t["refresh_token"] + "x",
        " " + t["refresh_token"],
    ):
        resp = await _refresh(http, bad)
        assert resp.status == 401, bad
        assert (await error_of(resp))["code"] == "invalid_refresh_token"
    for key in [k async for k in store.scan_iter(match=f"refresh:{{{user['id']}}}:*")]:
        await store.pexpire(key, 1)  # the key's own TTL is the expiry
    await asyncio.sleep(0.01)
    assert (await _refresh(http, t["refresh_token"])).status == 401
    resp = await http.post(REFRESH, json={"refresh_token": 5})
    assert resp.status == 422


async def test_sixth_login_evicts_the_oldest_session(http):
    user = await register(http)
    logins = [await _login(http, user) for _ in range(6)]
    oldest = logins[0]
    assert (await http.get("/characters", headers=_auth(oldest))).status == 401
    assert (await _refresh(http, oldest["refresh_token"])).status == 401
    resp = await http.get("/api/v1/sessions", headers=_auth(logins[-1]))
    ids = [s["id"] for s in (await resp.json())["sessions"]]
    assert ids == [t["session_id"] for t in logins[1:]]
    for t in logins[1:]:
        assert (await http.get("/characters", headers=_auth(t))).status == 200


async def test_logout_ends_the_session(http):
    user = await register(http)
    t = await _login(http, user)
    other = await _login(http, user)
    resp = await http.post("/api/v1/auth/logout", headers=_auth(t))
    assert resp.status == 204
    assert (await http.get("/characters", headers=_auth(t))).status == 401
    assert (await http.get("/api/v1/users/me", headers=_auth(t))).status == 401
    assert (await _refresh(http, t["refresh_token"])).status == 401
    assert (await http.get("/characters", headers=_auth(other))).status == 200


async def test_list_and_revoke_sessions(http):
    user = await register(http)
    a = await _login(http, user, device_name="PC")
    b = await _login(http, user, device_name="Phone")
    c = await _login(http, user)
    resp = await http.get("/api/v1/sessions", headers=_auth(b))
    sessions = (await resp.json())["sessions"]
    assert [s["device_name"] for s in sessions] == ["PC", "Phone", None]
    assert [s["current"] for s in sessions] == [False, True, False]
    assert all(s["user_agent"] == "GameClient/1.0" and s["ip"] == "127.0.0.1" for s in sessions)

    assert (
        await http.delete(f"/api/v1/sessions/{a['session_id']}", headers=_auth(b))
    ).status == 204
    assert (await http.get("/characters", headers=_auth(a))).status == 401
    resp = await http.delete(f"/api/v1/sessions/{a['session_id']}", headers=_auth(b))
    assert resp.status == 404

    resp = await http.delete("/api/v1/sessions", headers=_auth(b))
    assert resp.status == 200 and (await resp.json()) == {"revoked": 1}
    assert (await http.get("/characters", headers=_auth(c))).status == 401
    assert (await http.get("/characters", headers=_auth(b))).status == 200
    resp = await http.delete("/api/v1/sessions?all=true", headers=_auth(b))
    assert (await resp.json()) == {"revoked": 1}
    assert (await http.get("/characters", headers=_auth(b))).status == 401
    resp = await http.delete("/api/v1/sessions?all=maybe", headers=_auth(c))
    assert resp.status in (401, 422)


async def test_revoke_all_takes_true_or_false_only(http):
    user = await register(http, new_user())
    tokens = await _login(http, user)
    for value in ("1", "yes", "on", "True", "maybe", ""):
        resp = await http.delete(f"/api/v1/sessions?all={value}", headers=_auth(tokens))
        assert resp.status == 422, value
    assert (await http.get("/api/v1/sessions", headers=_auth(tokens))).status == 200
    resp = await http.delete("/api/v1/sessions?all=false", headers=_auth(tokens))
    assert resp.status == 200 and (await resp.json()) == {"revoked": 0}


async def test_sessions_of_another_account_cannot_be_revoked(http):
    alice = await _login(http, await register(http))
    mallory = await _login(http, await register(http, new_user("mal")))
    resp = await http.delete(f"/api/v1/sessions/{alice['session_id']}", headers=_auth(mallory))
    assert resp.status == 404
    assert (await http.get("/characters", headers=_auth(alice))).status == 200


async def test_a_revoked_session_is_refused_on_every_route(http):
    user = await register(http)
    t = await _login(http, user)
    routes = (
        "/api/v1/users/me/api-keys",
        "/api/v1/users/me/activity",
        "/api/v1/sessions",
        "/api/v1/users/me",
        "/characters",
    )
    for path in routes:
        assert (await http.get(path, headers=_auth(t))).status == 200, path
    await http.post("/api/v1/auth/logout", headers=_auth(t))
    for path in routes:
        assert (await http.get(path, headers=_auth(t))).status == 401, path
