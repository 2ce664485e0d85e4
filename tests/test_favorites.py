"""Favorites over HTTP on a real redis-server, with a real local catalog server."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web

from authsvc.appkeys import ACCOUNTS, ADMIN, AUDIT, ROLES

from .helpers import compact_encoding, error_of, login, new_user, register
from .keycloak_issuer import CLIENT, Issuer

VIDEO = "0b8f2c4e-6a1d-4f6e-9a7b-3c2d1e0f9a8b"
ACTOR = "a1b2c3d4-e5f6-4789-9abc-def012345678"


class CatalogServer:
    def __init__(self) -> None:
        self.known = {("video", VIDEO), ("actor", ACTOR)} | {("video", f"v{i}") for i in range(30)}
        self.hits = 0
        self.down = False

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/api/{kind}s/{id}", self.item)
        return app

    async def item(self, request: web.Request) -> web.Response:
        self.hits += 1
        if self.down:
            return web.Response(status=502)
        key = (request.match_info["kind"], request.match_info["id"])
        return web.json_response({"id": key[1]}) if key in self.known else web.Response(status=404)


@pytest.fixture
async def catalog(aiohttp_server):
    cat = CatalogServer()
    server = await aiohttp_server(cat.app())
    cat.url = str(server.make_url("")).rstrip("/") + "/api/{kind}s/{id}"
    return cat


@pytest.fixture
async def fav_http(make_client, catalog):
    return await make_client(catalog_backend="http", catalog_url=catalog.url)


async def auth_of(http, prefix="fan") -> tuple[dict, dict]:
    user = await register(http, new_user(prefix))
    return user, {"Authorization": f"Bearer {await login(http, user)}"}


async def test_add_is_idempotent_and_has_its_own_uuid(fav_http, store):
    user, auth = await auth_of(fav_http)
    resp = await fav_http.post("/api/v1/favorites/videos", json={"video_id": VIDEO}, headers=auth)
    assert resp.status == 201
    fav = await resp.json()
    assert set(fav) == {"favorite_video_uuid", "user_id", "video_id", "created_at"}
    assert fav["user_id"] == str(user["id"]) and fav["video_id"] == VIDEO
    again = await fav_http.post("/api/v1/favorites/videos", json={"video_id": VIDEO}, headers=auth)
    assert again.status == 200 and await again.json() == fav  # the existing favorite
    # Kinds are separate records: the same id as an actor is another favorite (if known).
    resp = await fav_http.post("/api/v1/favorites/actors", json={"actor_id": ACTOR}, headers=auth)
    assert resp.status == 201 and "favorite_actor_uuid" in await resp.json()


async def test_concurrent_duplicate_adds_make_one_favorite(fav_http, store):
    user, auth = await auth_of(fav_http)
    resps = await asyncio.gather(
        *(
            fav_http.post("/api/v1/favorites/videos", json={"video_id": VIDEO}, headers=auth)
            for _ in range(20)
        )
    )
    assert sorted(r.status for r in resps) == [200] * 19 + [201]
    uuids = {(await r.json())["favorite_video_uuid"] for r in resps}
    assert len(uuids) == 1
    assert await store.hlen(f"fav:{{{user['id']}}}:videos:by_target") == 1
    assert await store.zcard(f"fav:{{{user['id']}}}:videos:index") == 1


async def test_catalog_unknown_is_422_and_down_is_503_with_nothing_stored(fav_http, catalog, store):
    user, auth = await auth_of(fav_http)
    resp = await fav_http.post("/api/v1/favorites/videos", json={"video_id": "nope"}, headers=auth)
    assert resp.status == 422 and (await error_of(resp))["code"] == "unknown_item"
    catalog.down = True
    resp = await fav_http.post("/api/v1/favorites/videos", json={"video_id": "v1"}, headers=auth)
    assert resp.status == 503 and (await error_of(resp))["code"] == "catalog_unavailable"
    assert not [k async for k in store.scan_iter(match=f"fav:{{{user['id']}}}:*")]
    catalog.down = False
    hits = catalog.hits
    for _ in range(3):  # answers are cached briefly
        await fav_http.post("/api/v1/favorites/videos", json={"video_id": "v2"}, headers=auth)
    assert catalog.hits == hits + 1


async def test_delete_and_list_newest_first_stable_under_inserts(fav_http):
    _, auth = await auth_of(fav_http)
    for i in range(5):
        await fav_http.post("/api/v1/favorites/videos", json={"video_id": f"v{i}"}, headers=auth)
        await asyncio.sleep(0.002)
    page = await (await fav_http.get("/api/v1/favorites/videos?limit=2", headers=auth)).json()
    assert [f["video_id"] for f in page["items"]] == ["v4", "v3"]
    # New favorites arriving between pages do not shift the next page.
    await fav_http.post("/api/v1/favorites/videos", json={"video_id": "v9"}, headers=auth)
    nxt = await (
        await fav_http.get(
            f"/api/v1/favorites/videos?limit=2&cursor={page['next_cursor']}", headers=auth
        )
    ).json()
    assert [f["video_id"] for f in nxt["items"]] == ["v2", "v1"]
    last = await (
        await fav_http.get(
            f"/api/v1/favorites/videos?limit=2&cursor={nxt['next_cursor']}", headers=auth
        )
    ).json()
    assert [f["video_id"] for f in last["items"]] == ["v0"] and last["next_cursor"] is None
    assert (await fav_http.delete("/api/v1/favorites/videos/v3", headers=auth)).status == 204
    assert (await fav_http.delete("/api/v1/favorites/videos/v3", headers=auth)).status == 404
    everything = await (await fav_http.get("/api/v1/favorites/videos", headers=auth)).json()
    assert [f["video_id"] for f in everything["items"]] == ["v9", "v4", "v2", "v1", "v0"]
    for bad in ("limit=0", "limit=101", "cursor=garbage", "limit=x"):
        resp = await fav_http.get(f"/api/v1/favorites/videos?{bad}", headers=auth)
        assert resp.status == 422, bad


async def test_tracks_have_rating_and_notes(http):
    _, auth = await auth_of(http)
    resp = await http.post(
        "/api/v1/favorites/tracks",
        headers=auth,
        json={"track_id": "t1", "rating": 5, "notes": "on repeat"},
    )
    assert resp.status == 201
    fav = await resp.json()
    assert fav["rating"] == 5 and fav["notes"] == "on repeat" and fav["favorite_track_uuid"]
    for bad in (
        {"track_id": "t2", "rating": 6},
        {"track_id": "t2", "rating": "5"},
        {"track_id": "t2", "notes": "x" * 2001},
        {"track_id": "bad id"},
        {},
    ):
        resp = await http.post("/api/v1/favorites/tracks", headers=auth, json=bad)
        assert resp.status == 422, bad


async def test_only_the_user_manages_and_admins_list_with_a_scoped_role(fav_http):
    alice, a_auth = await auth_of(fav_http, "alice")
    _, m_auth = await auth_of(fav_http, "mallory")
    await fav_http.post("/api/v1/favorites/videos", json={"video_id": VIDEO}, headers=a_auth)
    # Mallory's DELETE only ever touches Mallory's favorites.
    assert (
        await fav_http.delete(f"/api/v1/favorites/videos/{VIDEO}", headers=m_auth)
    ).status == 404
    path = f"/api/v1/admin/users/{alice['id']}/favorites/videos"
    assert (await fav_http.get(path, headers=m_auth)).status == 403
    curator = new_user("curator")
    await fav_http.app[ROLES].create(
        name="curator",
        permissions=["favorites:read-all"],
        inherits=["user"],
        description="",
        actor=_actor(),
    )
    await fav_http.app[ACCOUNTS].register(**curator, roles=("curator",))
    c_auth = {"Authorization": f"Bearer {await login(fav_http, curator)}"}
    page = await (await fav_http.get(path, headers=c_auth)).json()
    assert [f["video_id"] for f in page["items"]] == [VIDEO]
    # A user that does not exist (or no longer does) has no favorites to list: 404, not
    # an empty page (schemathesis's use_after_free check, after DELETE of the account).
    await fav_http.app[ADMIN].delete_user(str(alice["id"]), actor=_actor())
    resp = await fav_http.get(path, headers=c_auth)
    assert resp.status == 404 and (await error_of(resp))["code"] == "not_found"
    resp = await fav_http.get("/api/v1/admin/users/424242/favorites/tracks", headers=c_auth)
    assert resp.status == 404


def _actor():
    from authsvc.identity.principal import LOCAL, Principal

    return Principal(user_id="0", kind=LOCAL, username="test", exp=2**62)


async def test_adds_and_removes_are_audited_with_username(fav_http, store):
    user, auth = await auth_of(fav_http)
    fav = await (
        await fav_http.post("/api/v1/favorites/videos", json={"video_id": VIDEO}, headers=auth)
    ).json()
    await fav_http.delete(f"/api/v1/favorites/videos/{VIDEO}", headers=auth)
    await fav_http.app[AUDIT].flush()
    events = [
        e for _, e in await store.xrange("audit:events") if e["action"].startswith("favorite_")
    ]
    assert [e["action"] for e in events] == ["favorite_added", "favorite_removed"]
    for e in events:
        assert e["user_id"] == str(user["id"]) and e["username"] == user["username"]
        assert e["favorite_uuid"] == fav["favorite_video_uuid"] and e["video_id"] == VIDEO


async def test_keycloak_users_share_the_user_space(make_client, aiohttp_server):
    kc = Issuer()
    server = await aiohttp_server(kc.app())
    kc.base = str(server.make_url("")).rstrip("/")
    http = await make_client(keycloak_issuer=kc.issuer, keycloak_client_id=CLIENT)
    sub = "1d4a6a3c-5b1e-4f7a-8c2d-9e0f1a2b3c4d"
    auth = {"Authorization": f"Bearer {kc.token(sub=sub)}"}
    resp = await http.post("/api/v1/favorites/videos", json={"video_id": VIDEO}, headers=auth)
    assert resp.status == 201 and (await resp.json())["user_id"] == sub


async def test_favorites_are_two_small_keys_per_kind(http, store):
    """The pair hash holds each whole record and the index orders them: no key per
    favorite, both compact-encoded (listpack; ziplist on KeyDB) while records are short;
    extra fields with JSON-hostile text survive (a long note just makes that user's hash
    a hashtable)."""
    user, auth = await auth_of(http)
    for i in range(30):
        await http.post("/api/v1/favorites/tracks", headers=auth, json={"track_id": f"t{i}"})
    tag = f"fav:{{{user['id']}}}:tracks"
    assert sorted([k async for k in store.scan_iter(match=f"fav:{{{user['id']}}}:*")]) == [
        f"{tag}:by_target",
        f"{tag}:index",
    ]
    compact = await compact_encoding(store)
    for key in (f"{tag}:by_target", f"{tag}:index"):
        assert await store.object("encoding", key) == compact
    notes = 'a "quoted" note: with colons, \\ and ünïcode'
    body = {"track_id": "t:1", "rating": 4, "notes": notes}
    made = await (await http.post("/api/v1/favorites/tracks", headers=auth, json=body)).json()
    items, cursor = [], ""
    while True:
        query = f"limit=7&cursor={cursor}" if cursor else "limit=7"
        page = await (await http.get(f"/api/v1/favorites/tracks?{query}", headers=auth)).json()
        items += page["items"]
        if not (cursor := page["next_cursor"]):
            break
    assert len(items) == 31 and items[0] == made  # the newest, whole, first
    assert made["notes"] == notes and made["rating"] == 4
    assert sorted(i["track_id"] for i in items[1:]) == sorted(f"t{i}" for i in range(30))
    times = [i["created_at"] for i in items]
    assert times == sorted(times, reverse=True)  # within one millisecond, by target id
    resp = await http.delete("/api/v1/favorites/tracks/t:1", headers=auth)
    assert resp.status == 204
    assert await store.hlen(f"{tag}:by_target") == await store.zcard(f"{tag}:index") == 30
