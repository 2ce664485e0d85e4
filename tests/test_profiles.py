"""Profiles, preferences, follows, export and deletion over HTTP on a real redis-server."""

from __future__ import annotations

import asyncio
import time

from authsvc.appkeys import AUDIT
from authsvc.store import keys
from authsvc.store.check import check
from authsvc.store.profiles import ProfileStore

from .helpers import error_of, login, new_user, register
from .keycloak_issuer import CLIENT, Issuer


async def auth_of(http, prefix="p") -> tuple[dict, dict]:
    user = await register(http, new_user(prefix))
    return user, {"Authorization": f"Bearer {await login(http, user)}"}


async def test_profile_get_and_patch(http):
    user, auth = await auth_of(http)
    me = await (await http.get("/api/v1/users/me", headers=auth)).json()
    assert me["id"] == user["id"] and me["profile"]["privacy"] == "public"
    resp = await http.patch(
        "/api/v1/users/me",
        headers=auth,
        json={
            "display_name": "Aria",
            "bio": "ranger",
            "avatar_url": "https://cdn.example/a.png",
            "website": "https://aria.example",
            "location": "Oslo",
            "privacy": "followers",
        },
    )
    assert resp.status == 200
    profile = (await resp.json())["profile"]
    assert profile["display_name"] == "Aria" and profile["privacy"] == "followers"
    resp = await http.patch("/api/v1/users/me", headers=auth, json={"bio": None})
    assert (await resp.json())["profile"]["bio"] is None
    for bad in (
        {"privacy": "secret"},
        {"avatar_url": "javascript:alert(1)"},
        {"website": "ftp://x"},
        {"display_name": "x" * 101},
        {"email": "a@b.io"},
    ):
        resp = await http.patch("/api/v1/users/me", headers=auth, json=bad)
        assert resp.status == 422, bad


async def test_preferences_merge_and_size_limit(http):
    _, auth = await auth_of(http)
    assert await (await http.get("/api/v1/users/me/preferences", headers=auth)).json() == {}
    await http.patch(
        "/api/v1/users/me/preferences",
        headers=auth,
        json={"theme": "dark", "volume": 0.7, "keys": {"jump": "space"}},
    )
    resp = await http.patch(
        "/api/v1/users/me/preferences", headers=auth, json={"volume": None, "lang": "nb"}
    )
    assert await resp.json() == {"theme": "dark", "keys": {"jump": "space"}, "lang": "nb"}
    resp = await http.patch(
        "/api/v1/users/me/preferences", headers=auth, json={"blob": "x" * 17000}
    )
    assert resp.status in (413, 422)
    resp = await http.patch(
        "/api/v1/users/me/preferences", headers=auth, json={f"k{i}": "x" * 900 for i in range(20)}
    )
    assert resp.status == 422 and (await error_of(resp))["code"] == "validation_failed"
    resp = await http.patch(
        "/api/v1/users/me/preferences",
        headers=auth,
        data="[1,2]",
    )
    assert resp.status in (400, 415)
    prefs = await (await http.get("/api/v1/users/me/preferences", headers=auth)).json()
    assert prefs["lang"] == "nb"  # nothing lost by the refused patches


async def test_follows(http):
    alice, a_auth = await auth_of(http, "alice")
    bob, b_auth = await auth_of(http, "bob")
    carol, _ = await auth_of(http, "carol")
    for target in (bob, carol):
        resp = await http.post(f"/api/v1/social/follow/{target['id']}", headers=a_auth)
        assert resp.status == 200 and (await resp.json())["changed"] is True
    again = await http.post(f"/api/v1/social/follow/{bob['id']}", headers=a_auth)
    assert (await again.json())["changed"] is False  # idempotent
    assert (
        await http.post(f"/api/v1/social/follow/{alice['id']}", headers=a_auth)
    ).status == 403  # not oneself
    assert (await http.post("/api/v1/social/follow/424242", headers=a_auth)).status == 404
    page = await (await http.get("/api/v1/social/following?limit=1", headers=a_auth)).json()
    assert [i["user_id"] for i in page["items"]] == [str(carol["id"])]
    page2 = await (
        await http.get(
            f"/api/v1/social/following?limit=1&cursor={page['next_cursor']}", headers=a_auth
        )
    ).json()
    assert [i["user_id"] for i in page2["items"]] == [str(bob["id"])]
    fans = await (await http.get("/api/v1/social/followers", headers=b_auth)).json()
    assert [i["user_id"] for i in fans["items"]] == [str(alice["id"])]
    await http.delete(f"/api/v1/social/follow/{bob['id']}", headers=a_auth)
    fans = await (await http.get("/api/v1/social/followers", headers=b_auth)).json()
    assert fans["items"] == []
    assert (await http.get("/api/v1/social/following?cursor=bad", headers=a_auth)).status == 422


async def test_export_contains_everything(http):
    user, auth = await auth_of(http)
    other, _ = await auth_of(http, "other")
    await http.post("/characters", headers=auth, json={"name": "Aria", "sex": 1, "race": 2})
    await http.post("/api/v1/favorites/tracks", headers=auth, json={"track_id": "t1", "rating": 4})
    await http.post(f"/api/v1/social/follow/{other['id']}", headers=auth)
    await http.patch("/api/v1/users/me/preferences", headers=auth, json={"theme": "dark"})
    await http.app[AUDIT].flush()
    await asyncio.sleep(0)
    resp = await http.get("/api/v1/users/me/export", headers=auth)
    assert resp.status == 200 and "attachment" in resp.headers["Content-Disposition"]
    doc = await resp.json()
    assert doc["user"]["username"] == user["username"] and "password" not in str(doc)
    assert [c["name"] for c in doc["characters"]] == ["Aria"]
    assert doc["favorites"]["tracks"][0]["rating"] == 4
    assert doc["following"] == [str(other["id"])] and doc["preferences"] == {"theme": "dark"}
    assert doc["roles"] == ["user"] and any(e["action"] == "login_success" for e in doc["activity"])


async def test_delete_me_cascades_and_leaves_no_key_behind(http, store):
    async def data_keys() -> set[str]:
        return {k async for k in store.scan_iter() if k not in ("audit:events", "rbac:roles")}

    before = await data_keys()
    user, auth = await auth_of(http)
    friend, f_auth = await auth_of(http, "friend")
    after_friend = await data_keys()
    await http.post("/characters", headers=auth, json={"name": "A", "sex": 0, "race": 0})
    await http.post("/api/v1/favorites/videos", headers=auth, json={"video_id": "v1"})
    await http.post("/api/v1/favorites/actors", headers=auth, json={"actor_id": "a1"})
    await http.post(f"/api/v1/social/follow/{friend['id']}", headers=auth)
    await http.post(f"/api/v1/social/follow/{user['id']}", headers=f_auth)
    await http.patch("/api/v1/users/me", headers=auth, json={"bio": "hi"})
    await http.patch("/api/v1/users/me/preferences", headers=auth, json={"a": 1})
    await http.post(
        "/api/v1/users/me/api-keys", headers=auth, json={"name": "k", "scopes": ["profile:read"]}
    )
    await http.post(
        "/api/v1/auth/login", json={"username": user["username"], "password": user["password"]}
    )
    assert (await http.delete("/api/v1/users/me", headers=auth)).status == 204
    await http.app[AUDIT].flush()
    left = await data_keys()
    tag = f"{{{user['id']}}}"
    assert not [k for k in left if tag in k], [k for k in left if tag in k]
    assert await store.zrange(f"user:{{{friend['id']}}}:followers", 0, -1) == []
    assert await store.zrange(f"user:{{{friend['id']}}}:following", 0, -1) == []
    # Exactly the friend's keys (and the shared indexes/counters) remain.
    assert left - after_friend <= {f"user:{{{friend['id']}}}:activity"}
    assert (await http.get("/characters", headers=auth)).status == 401
    # The username and email are free again.
    assert (
        await http.post(
            "/register", json=new_user() | {"username": user["username"], "email": user["email"]}
        )
    ).status == 201
    assert before <= after_friend


async def test_keycloak_user_profile_follows_and_deletion(make_client, aiohttp_server, store):
    kc = Issuer()
    server = await aiohttp_server(kc.app())
    kc.base = str(server.make_url("")).rstrip("/")
    http = await make_client(keycloak_issuer=kc.issuer, keycloak_client_id=CLIENT)
    sub = "7a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
    auth = {"Authorization": f"Bearer {kc.token(sub=sub)}"}
    local, l_auth = await auth_of(http, "local")
    resp = await http.patch("/api/v1/users/me", headers=auth, json={"bio": "from keycloak"})
    assert resp.status == 200 and (await resp.json())["id"] == sub
    assert (await http.post(f"/api/v1/social/follow/{local['id']}", headers=auth)).status == 200
    assert (await http.post(f"/api/v1/social/follow/{sub}", headers=l_auth)).status == 200
    await http.post("/api/v1/favorites/videos", headers=auth, json={"video_id": "v1"})
    assert (await http.delete("/api/v1/users/me", headers=auth)).status == 204
    await http.app[AUDIT].flush()
    assert not [k async for k in store.scan_iter(match=f"*{{{sub}}}*")]
    assert await store.zrange(f"user:{{{local['id']}}}:followers", 0, -1) == []


async def test_check_repairs_followers_from_following(store):
    profiles = ProfileStore(store)
    for fan, target, ms in (
        ("1", "2", 1000),
        ("1", "3", 1001),
        ("1", "4", 1002),
        ("2", "1", 1003),
        ("5", "1", 1004),
    ):
        await profiles.follow(fan, target, now_ms=ms)
    # What a crash between a follow's two writes leaves: the truth without its mirror.
    await store.zrem(keys.followers("2"), "1")
    # Unfollow, crash, follow again: the mirror kept the first follow's time.
    await store.zadd(keys.followers("3"), {"1": 5})
    # An unfollow that crashed after its first write: a mirror without the truth.
    await store.zrem(keys.following("5"), "1")
    await store.zadd(keys.followers("6"), {"1": 7})  # and one for a follow never made
    now = int(time.time() * 1000)

    report = await check(store, fix=False, now_ms=now, batch=2)
    assert sorted(report.problems) == [
        "user:{1}:followers lists 5, who does not follow 1",
        "user:{2}:followers lacks 1, who follows since 1000",
        "user:{3}:followers has 1 since 5, not 1001",
        "user:{6}:followers lists 1, who does not follow 6",
    ]
    assert await store.zscore(keys.followers("1"), "5") == 1004  # reported, not changed

    report = await check(store, fix=True, now_ms=now, batch=2)
    assert report.fixed == 4 and len(report.problems) == 4
    assert await store.zrange(keys.followers("1"), 0, -1, withscores=True) == [("2", 1003)]
    assert await store.zrange(keys.followers("2"), 0, -1, withscores=True) == [("1", 1000)]
    assert await store.zrange(keys.followers("3"), 0, -1, withscores=True) == [("1", 1001)]
    assert await store.zrange(keys.followers("4"), 0, -1, withscores=True) == [("1", 1002)]
    assert not await store.exists(keys.followers("6"))
    assert await store.zrange(keys.following("1"), 0, -1) == ["2", "3", "4"]  # the truth
    assert (await check(store, fix=False, now_ms=now)).problems == []


async def test_check_walks_large_follow_sets_in_batches(store):
    # Over 128 entries: a skiplist, so ZSCAN really pages through it.
    await store.zadd(keys.following("7"), {str(t): 2000 + t for t in range(100, 400)})
    for t in range(100, 400, 2):  # only half the mirrors
        await store.zadd(keys.followers(str(t)), {"7": 2000 + t})
    fans = {str(f): 3000 + f for f in range(100, 400)}
    await store.zadd(keys.followers("7"), fans)  # yet nobody follows 7
    now = int(time.time() * 1000)
    report = await check(store, fix=True, now_ms=now, batch=50)
    assert report.fixed == 150 + 300, report.problems[:3]
    assert not await store.exists(keys.followers("7"))
    assert await store.zscore(keys.followers("399"), "7") == 2399
    assert (await check(store, fix=False, now_ms=now, batch=50)).problems == []


async def test_follows_in_one_millisecond_keep_their_order(make_client, store):
    http = await make_client(clock=lambda: 1_800_000_000.0)
    fan, auth = await auth_of(http, "fan")
    targets = [(await auth_of(http, f"star{i}"))[0] for i in range(4)]
    for target in targets:
        assert (await http.post(f"/api/v1/social/follow/{target['id']}", headers=auth)).ok
    page = await (await http.get("/api/v1/social/following", headers=auth)).json()
    assert [i["user_id"] for i in page["items"]] == [str(t["id"]) for t in reversed(targets)]
    # Each target's followers entry carries the same time as the follow.
    for target in targets:
        since = await store.zscore(f"user:{{{fan['id']}}}:following", str(target["id"]))
        assert await store.zscore(f"user:{{{target['id']}}}:followers", str(fan["id"])) == since
