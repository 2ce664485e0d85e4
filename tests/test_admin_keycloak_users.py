"""Keycloak users in administration: listed beside local accounts (a `kind` filter), and
read, disabled (their tokens refused at once), enabled and deleted (cascade) by `sub`."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from authsvc.appkeys import AUDIT
from authsvc.store.check import check

from .helpers import error_of, register
from .keycloak_issuer import CLIENT, Issuer
from .oidc_helpers import bearer, make_admin

USERS = "/api/v1/admin/users"


@pytest.fixture
async def issuer(aiohttp_server):
    kc = Issuer()
    server = await aiohttp_server(kc.app())
    kc.base = str(server.make_url("")).rstrip("/")
    return kc


@pytest.fixture
async def http(make_client, issuer):
    return await make_client(keycloak_issuer=issuer.issuer, keycloak_client_id=CLIENT)


async def seen(http, issuer, **claims) -> tuple[str, str]:
    """A Keycloak user that has called the service once: (sub, token)."""
    sub = str(uuid.uuid4())
    token = issuer.token(sub=sub, **claims)
    resp = await http.get("/api/v1/users/me", headers=bearer(token))
    assert resp.status == 200, await resp.text()
    await asyncio.sleep(0.002)  # distinct creation times, for a stable order
    return sub, token


async def page_ids(http, admin, query: str = "") -> list:
    ids, cursor = [], ""
    while True:
        sep = "&" if query else ""
        resp = await http.get(f"{USERS}?limit=2&cursor={cursor}{sep}{query}", headers=admin)
        assert resp.status == 200, await resp.text()
        page = await resp.json()
        ids += [item["id"] for item in page["items"]]
        if not page["next_cursor"]:
            return ids
        cursor = page["next_cursor"]


async def test_local_and_keycloak_users_are_listed_together_newest_first(http, issuer):
    admin_user, admin = await make_admin(http)
    await asyncio.sleep(0.002)
    kc1, _ = await seen(http, issuer, preferred_username="kc_one", email="one@kc.example")
    local = await register(http)
    await asyncio.sleep(0.002)
    kc2, _ = await seen(http, issuer)
    assert await page_ids(http, admin) == [kc2, local["id"], kc1, admin_user["id"]]
    assert await page_ids(http, admin, "kind=keycloak") == [kc2, kc1]
    assert await page_ids(http, admin, "kind=local") == [local["id"], admin_user["id"]]
    listing = await (await http.get(f"{USERS}?kind=keycloak", headers=admin)).json()
    one = next(u for u in listing["items"] if u["id"] == kc1)
    assert one | {"created_at": None, "updated_at": None} == {
        "id": kc1,
        "kind": "keycloak",
        "username": "kc_one",
        "email": "one@kc.example",
        "created_at": None,
        "updated_at": None,
        "last_login_at": None,
        "is_active": True,
    }
    # The prefix filters find local accounts only.
    prefix = local["username"][:5]
    found = await (await http.get(f"{USERS}?username={prefix}", headers=admin)).json()
    assert local["id"] in [u["id"] for u in found["items"]]
    none = await (await http.get(f"{USERS}?username=kc_&kind=keycloak", headers=admin)).json()
    assert none == {"items": [], "next_cursor": None}
    assert (await http.get(f"{USERS}?kind=robot", headers=admin)).status == 422


async def test_a_keycloak_user_by_sub_with_roles_and_the_role_filter(http, issuer):
    _, admin = await make_admin(http)
    sub, _ = await seen(http, issuer)
    grant = await http.post(f"{USERS}/{sub}/roles", json={"role": "manager"}, headers=admin)
    assert grant.status == 200
    user = await (await http.get(f"{USERS}/{sub}", headers=admin)).json()
    assert user["kind"] == "keycloak" and user["roles"] == ["manager"]
    members = await page_ids(http, admin, "role=manager&kind=keycloak")
    assert members == [sub]
    assert await page_ids(http, admin, "role=manager&kind=local") == []
    assert (await http.get(f"{USERS}/{uuid.uuid4()}", headers=admin)).status == 404


async def test_disabling_a_keycloak_user_refuses_their_tokens_at_once(http, issuer):
    _, admin = await make_admin(http)
    sub, token = await seen(http, issuer)
    _, other_token = await seen(http, issuer)
    # The token is cached as verified now; disabling still stops it on the next request.
    resp = await http.post(f"{USERS}/{sub}/disable", headers=admin)
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["is_active"] is False
    for path in ("/api/v1/users/me", "/api/v1/favorites/tracks", "/api/v1/sessions"):
        resp = await http.get(path, headers=bearer(token))
        assert resp.status == 401, path
    fresh = issuer.token(sub=sub)  # a new token from Keycloak does not help either
    assert (await http.get("/api/v1/users/me", headers=bearer(fresh))).status == 401
    assert (await http.get("/api/v1/users/me", headers=bearer(other_token))).status == 200
    resp = await http.post(f"{USERS}/{sub}/enable", headers=admin)
    assert resp.status == 200 and (await resp.json())["is_active"] is True
    assert (await http.get("/api/v1/users/me", headers=bearer(token))).status == 200
    assert (await http.post(f"{USERS}/{uuid.uuid4()}/disable", headers=admin)).status == 404
    # PATCH changes a Keycloak user's activity, and nothing Keycloak manages.
    resp = await http.patch(f"{USERS}/{sub}", headers=admin, json={"is_active": False})
    assert resp.status == 200 and (await resp.json())["is_active"] is False
    assert (await http.get("/api/v1/users/me", headers=bearer(token))).status == 401
    resp = await http.patch(f"{USERS}/{sub}", headers=admin, json={"username": "renamed"})
    assert resp.status == 409 and "Keycloak manages" in (await error_of(resp))["message"]
    resp = await http.patch(f"{USERS}/{uuid.uuid4()}", headers=admin, json={"is_active": True})
    assert resp.status == 404


async def test_a_disabled_keycloak_users_api_keys_stop_too(make_client, issuer):
    http = await make_client(
        keycloak_issuer=issuer.issuer,
        keycloak_client_id=CLIENT,
        keycloak_role_mapping=("player=user",),
    )
    _, admin = await make_admin(http)
    sub, token = await seen(http, issuer)
    resp = await http.post(
        "/api/v1/users/me/api-keys",
        headers=bearer(token),
        json={"name": "bot", "scopes": ["favorites:read"]},
    )
    assert resp.status == 201, await resp.text()
    key = (await resp.json())["key"]
    assert (await http.get("/api/v1/favorites/tracks", headers={"X-API-Key": key})).status == 200
    assert (await http.post(f"{USERS}/{sub}/disable", headers=admin)).status == 200
    assert (await http.get("/api/v1/favorites/tracks", headers={"X-API-Key": key})).status == 401


async def test_deleting_a_keycloak_user_cascades(make_client, issuer, store):
    http = await make_client(
        keycloak_issuer=issuer.issuer,
        keycloak_client_id=CLIENT,
        keycloak_role_mapping=("player=user",),
    )
    _, admin = await make_admin(http)
    sub, token = await seen(http, issuer)
    auth = bearer(token)
    fav = await http.post("/api/v1/favorites/tracks", headers=auth, json={"track_id": "t1"})
    assert fav.status in (200, 201), await fav.text()
    await http.patch("/api/v1/users/me", headers=auth, json={"bio": "hello"})
    key = await http.post(
        "/api/v1/users/me/api-keys", headers=auth, json={"name": "k", "scopes": ["favorites:read"]}
    )
    assert key.status == 201
    assert (
        await http.post(f"{USERS}/{sub}/roles", json={"role": "manager"}, headers=admin)
    ).status == 200
    await http.app[AUDIT].flush()
    assert [k async for k in store.scan_iter(match=f"*{{{sub}}}*")]

    assert (await http.delete(f"{USERS}/{sub}", headers=admin)).status == 204
    await http.app[AUDIT].flush()
    left = [k async for k in store.scan_iter(match=f"*{{{sub}}}*")]
    assert left == [], left
    assert sub not in await page_ids(http, admin, "kind=keycloak")
    assert sub not in await page_ids(http, admin, "role=manager")
    assert (await http.get(f"{USERS}/{sub}", headers=admin)).status == 404
    assert (await http.delete(f"{USERS}/{sub}", headers=admin)).status == 404
    # Keycloak still knows them: their next request starts a fresh record.
    again = await http.get("/api/v1/users/me", headers=bearer(issuer.token(sub=sub)))
    assert again.status == 200
    assert sub in await page_ids(http, admin, "kind=keycloak")


async def test_check_keeps_the_keycloak_listing_in_step(http, issuer, store):
    sub, _ = await seen(http, issuer)
    gone, _ = await seen(http, issuer)
    members = [m async for m in store.scan_iter(match="idx:{users:external}:*")]
    assert members
    # A record whose listing entry went missing, and an entry whose record went.
    from authsvc.store.lexindex import LexIndexes

    lex = LexIndexes(store)
    created = await store.hget(f"user:{{{sub}}}", "created_at")
    await lex.remove("users:external", f"{int(created):013d}:{sub}")
    await store.delete(f"user:{{{gone}}}")
    now = int(time.time() * 1000)
    report = await check(store, fix=False, now_ms=now)
    text = "\n".join(report.problems)
    assert f"user {sub} missing from idx:{{users:external}}" in text
    assert "idx:{users:external} lists" in text and gone in text
    await check(store, fix=True, now_ms=now)
    assert (await check(store, fix=False, now_ms=now)).problems == []


async def test_a_keycloak_user_cannot_use_local_only_routes(http, issuer):
    _, token = await seen(http, issuer)
    resp = await http.post("/api/v1/users/me/oidc/link/any", headers=bearer(token))
    assert resp.status in (403, 404)
    resp = await http.post(
        "/api/v1/users/me/credentials",
        headers=bearer(token),
        json={"username": "kc_wants", "email": "w@kc.example", "password": "p" * 12},
    )
    assert resp.status == 403
    assert "local account" in (await error_of(resp))["message"]


async def _refused(resp, code: str) -> None:
    assert resp.status == 409, await resp.text()
    assert (await error_of(resp))["code"] == code


async def test_the_last_admin_guard_covers_keycloak_users_by_sub(http, issuer):
    """A Keycloak user granted `admin` here is guarded as a local administrator is: no
    route (disable, PATCH, DELETE by sub, removing the role, DELETE /users/me) removes
    the last holder of `*`, they cannot lock themselves out, and a disabled Keycloak
    holder no longer counts as someone holding `*`."""
    local, admin = await make_admin(http)
    resp = await http.post(
        "/api/v1/admin/roles",
        json={"name": "usermgr", "permissions": ["users:*", "roles:*"]},
        headers=admin,
    )
    assert resp.status in (200, 201), await resp.text()
    mgr = await register(http)
    assert (
        await http.post(f"{USERS}/{mgr['id']}/roles", json={"role": "usermgr"}, headers=admin)
    ).status == 200
    from .helpers import login

    m = bearer(await login(http, mgr))
    sub, token = await seen(http, issuer)
    k = bearer(token)
    assert (await http.post(f"{USERS}/{sub}/roles", json={"role": "admin"}, headers=admin)).status
    user = f"{USERS}/{sub}"
    # Themselves, by sub: refused even while another administrator exists.
    await _refused(await http.post(f"{user}/disable", headers=k), "self_lockout")
    await _refused(await http.patch(user, json={"is_active": False}, headers=k), "self_lockout")
    await _refused(await http.delete(user, headers=k), "self_lockout")
    await _refused(await http.delete(f"{user}/roles/admin", headers=k), "self_lockout")
    # The Keycloak user removes the local administrator: now they are the last holder.
    resp = await http.delete(f"{USERS}/{local['id']}/roles/admin", headers=k)
    assert resp.status == 204, await resp.text()
    await _refused(await http.post(f"{user}/disable", headers=m), "last_admin")
    await _refused(await http.patch(user, json={"is_active": False}, headers=m), "last_admin")
    await _refused(await http.delete(user, headers=m), "last_admin")
    await _refused(await http.delete(f"{user}/roles/admin", headers=m), "last_admin")
    await _refused(await http.delete("/api/v1/users/me", headers=k), "last_admin")
    after = await (await http.get(user, headers=m)).json()
    assert after["is_active"] is True and after["roles"] == ["admin"]
    assert (await http.get("/api/v1/users/me", headers=k)).status == 200
    # With the local administrator back, the Keycloak user may be disabled; disabled,
    # they hold nothing, so the local one is the last holder again.
    grant = await http.post(f"{USERS}/{local['id']}/roles", json={"role": "admin"}, headers=k)
    assert grant.status == 200
    assert (await http.post(f"{user}/disable", headers=m)).status == 200
    resp = await http.delete(f"{USERS}/{local['id']}/roles/admin", headers=m)
    await _refused(resp, "last_admin")
    assert (await http.patch(user, json={"is_active": True}, headers=m)).status == 200
    resp = await http.delete(f"{USERS}/{local['id']}/roles/admin", headers=m)
    assert resp.status == 204, await resp.text()
    # And the last holder's deletion by sub: refused until someone else holds `*`.
    await _refused(await http.delete(user, headers=m), "last_admin")
    again = await http.post(f"{USERS}/{local['id']}/roles", json={"role": "admin"}, headers=k)
    assert again.status == 200
    assert (await http.delete(user, headers=m)).status == 204
