"""The last-admin guard: no route leaves no one holding `*`, an administrator cannot
lock themselves out, and two administrators removing each other at once cannot both
succeed. Over HTTP on a real redis-server (and a cluster in CI)."""

from __future__ import annotations

import asyncio

from authsvc.appkeys import ACCOUNTS, ADMIN, STORE
from authsvc.store.rbac import RbacStore

from .helpers import error_of, login, new_user


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


USERS: dict[str, dict] = {}  # account id -> its credentials, to log in again


async def account(http, roles=("user",), prefix="guard") -> tuple[str, dict]:
    user = new_user(prefix)
    acc = await http.app[ACCOUNTS].register(**user, roles=roles, email_verified=True)
    USERS[str(acc["id"])] = user
    return str(acc["id"]), bearer(await login(http, user))


async def user_manager(http, admin: dict) -> tuple[str, dict]:
    """Someone who may disable, delete and change roles, without holding `*`."""
    resp = await http.post(
        "/api/v1/admin/roles",
        json={"name": "usermgr", "permissions": ["users:*", "roles:*"]},
        headers=admin,
    )
    assert resp.status in (200, 201), await resp.text()
    return await account(http, roles=("user", "usermgr"), prefix="mgr")


async def refused(resp, code: str) -> None:
    assert resp.status == 409, await resp.text()
    assert (await error_of(resp))["code"] == code


async def holds_star(http, user_id: str) -> bool:
    acc = await http.app[ADMIN].get_user(user_id)
    return acc["is_active"] and "admin" in acc["roles"]


async def test_an_admin_cannot_disable_delete_or_demote_themselves(http):
    a_id, a = await account(http, roles=("admin", "user"))
    await account(http, roles=("admin", "user"))  # another admin: not the last-admin rule
    users = f"/api/v1/admin/users/{a_id}"
    await refused(await http.post(f"{users}/disable", headers=a), "self_lockout")
    await refused(await http.patch(users, json={"is_active": False}, headers=a), "self_lockout")
    await refused(await http.delete(users, headers=a), "self_lockout")
    await refused(await http.delete(f"{users}/roles/admin", headers=a), "self_lockout")
    # Nor a custom role that grants `*` through inheritance.
    resp = await http.post(
        "/api/v1/admin/roles",
        json={"name": "root", "permissions": [], "inherits": ["admin"]},
        headers=a,
    )
    assert resp.status == 201
    assert (await http.post(f"{users}/roles", json={"role": "root"}, headers=a)).status == 200
    await refused(await http.delete(f"{users}/roles/root", headers=a), "self_lockout")
    assert await holds_star(http, a_id)
    # What does not take `*` away stays allowed: a role without it, a field change.
    assert (await http.delete(f"{users}/roles/user", headers=a)).status == 204
    resp = await http.patch(users, json={"email_verified": True}, headers=a)
    assert resp.status == 200
    assert (await http.get("/api/v1/admin/users", headers=a)).status == 200


async def test_the_last_holder_of_star_cannot_be_removed_by_any_route(http):
    a_id, a = await account(http, roles=("admin", "user"))
    m_id, m = await user_manager(http, a)
    user = f"/api/v1/admin/users/{a_id}"
    await refused(await http.post(f"{user}/disable", headers=m), "last_admin")
    resp = await http.patch(user, json={"is_active": False, "username": "renamed_a"}, headers=m)
    await refused(resp, "last_admin")
    assert (await http.app[ADMIN].get_user(a_id))["username"] != "renamed_a"
    await refused(await http.delete(user, headers=m), "last_admin")
    await refused(await http.delete(f"{user}/roles/admin", headers=m), "last_admin")
    await refused(await http.delete("/api/v1/users/me", headers=a), "last_admin")
    assert await holds_star(http, a_id)
    # With a second holder, each of these is allowed again (and the survivor is last).
    b_id, b = await account(http, roles=("admin", "user"))
    assert (await http.post(f"{user}/disable", headers=m)).status == 200
    await refused(await http.delete("/api/v1/users/me", headers=b), "last_admin")
    await refused(await http.delete(f"/api/v1/admin/users/{b_id}", headers=m), "last_admin")
    # A disabled holder does not count: enabling `a` makes `b` removable.
    assert (await http.post(f"{user}/enable", headers=m)).status == 200
    assert (await http.delete(f"/api/v1/admin/users/{b_id}/roles/admin", headers=m)).status == 204
    a = bearer(await login(http, USERS[a_id]))  # disabling ended a's sessions
    assert (await http.delete(f"/api/v1/admin/users/{m_id}", headers=a)).status == 204


async def test_redefining_a_role_cannot_strip_star_from_its_last_holders(http):
    a_id, a = await account(http, roles=("admin", "user"))
    r_id, r = await account(http, roles=("user",))
    roles = "/api/v1/admin/roles"
    assert (await http.post(roles, json={"name": "root", "permissions": ["*"]}, headers=a)).status
    assert (
        await http.post(f"/api/v1/admin/users/{r_id}/roles", json={"role": "root"}, headers=a)
    ).status == 200
    # `r` holds `*` through root, so `a` may go.
    assert (await http.delete(f"/api/v1/admin/users/{a_id}/roles/admin", headers=r)).status == 204
    resp = await http.post(roles, json={"name": "root", "permissions": ["users:read"]}, headers=r)
    await refused(resp, "last_admin")
    resp = await http.post(
        roles, json={"name": "root", "permissions": [], "inherits": ["manager"]}, headers=r
    )
    await refused(resp, "last_admin")
    assert (await http.get("/api/v1/admin/activity", headers=r)).status == 200  # still `*`
    # Still granting `*` (now by inheritance): allowed.
    resp = await http.post(
        roles, json={"name": "root", "permissions": [], "inherits": ["admin"]}, headers=r
    )
    assert resp.status == 200, await resp.text()
    # With no holder to begin with, nothing is lost by redefining a role nobody holds.
    assert (await http.post(roles, json={"name": "spare", "permissions": ["*"]}, headers=r)).status
    resp = await http.post(roles, json={"name": "spare", "permissions": []}, headers=r)
    assert resp.status == 200


async def test_two_admins_removing_each_other_at_once_leave_one(make_client):
    """Two service processes, two admins, each removing the other in the same instant:
    the lease serializes them, so exactly one wins."""
    a_app, b_app = await make_client(), await make_client()
    ways = (
        lambda app, uid, auth: app.post(f"/api/v1/admin/users/{uid}/disable", headers=auth),
        lambda app, uid, auth: app.delete(f"/api/v1/admin/users/{uid}/roles/admin", headers=auth),
        lambda app, uid, auth: app.delete(f"/api/v1/admin/users/{uid}", headers=auth),
    )
    for round_ in range(6):
        a_id, a = await account(a_app, roles=("admin", "user"), prefix=f"ra{round_}")
        b_id, b = await account(a_app, roles=("admin", "user"), prefix=f"rb{round_}")
        first, second = ways[round_ % 3], ways[(round_ + 1) % 3]
        answers = await asyncio.gather(first(a_app, b_id, a), second(b_app, a_id, b))
        # The loser is refused by the guard (409 last_admin) or, when the winner's
        # change landed before the loser's own permission check, as no longer an admin
        # (403 forbidden). Either way exactly one holder is left.
        statuses = sorted(r.status for r in answers)
        assert statuses in ([200, 403], [200, 409], [204, 403], [204, 409]), statuses
        loser = next(r for r in answers if r.status in (403, 409))
        code = {403: "forbidden", 409: "last_admin"}[loser.status]
        assert (await error_of(loser))["code"] == code
        alive = [uid for uid in (a_id, b_id) if await _holds(a_app, uid)]
        assert len(alive) == 1, (round_, statuses)
        # Back to no holder for the next round: the survivor is removed directly.
        await RbacStore(a_app.app[STORE]).revoke(alive[0], "admin")


async def _holds(http, user_id: str) -> bool:
    roles = await RbacStore(http.app[STORE]).live_roles(user_id)
    return bool(roles) and "admin" in roles


async def test_a_removal_waits_for_the_lease(http, store):
    _, a = await account(http, roles=("admin", "user"))
    b_id, _ = await account(http, roles=("admin", "user"))
    lease = RbacStore(store).superuser_lease()
    await lease.__aenter__()
    try:
        task = asyncio.ensure_future(http.post(f"/api/v1/admin/users/{b_id}/disable", headers=a))
        await asyncio.sleep(0.3)
        assert not task.done()
        assert await holds_star(http, b_id)
    finally:
        await lease.__aexit__(None, None, None)
    assert (await task).status == 200
    assert await store.get("rbac:superuser_lease") is None


async def test_a_guest_account_is_guarded_like_any_account(http):
    """A game client's guest account (made by POST /api/v1/auth/device, no password)
    that holds `*` cannot delete itself, nor be disabled or deleted, as the last holder."""
    a_id, a = await account(http, roles=("admin", "user"))
    _, m = await user_manager(http, a)
    resp = await http.post("/api/v1/auth/device", json={"device_id": "guard-device-0123456789"})
    assert resp.status == 200, await resp.text()
    g = bearer((await resp.json())["access_token"])
    g_id = str((await (await http.get("/api/v1/users/me", headers=g)).json())["id"])
    resp = await http.post(f"/api/v1/admin/users/{g_id}/roles", json={"role": "admin"}, headers=a)
    assert resp.status == 200
    guest = f"/api/v1/admin/users/{g_id}"
    await refused(await http.post(f"{guest}/disable", headers=g), "self_lockout")
    await refused(await http.delete(guest, headers=g), "self_lockout")
    assert (await http.delete(f"/api/v1/admin/users/{a_id}/roles/admin", headers=g)).status == 204
    await refused(await http.delete("/api/v1/users/me", headers=g), "last_admin")
    await refused(await http.delete(guest, headers=m), "last_admin")
    await refused(await http.patch(guest, json={"is_active": False}, headers=m), "last_admin")
    await refused(await http.post(f"{guest}/disable", headers=m), "last_admin")
    assert await holds_star(http, g_id)
    # Once someone else holds `*`, the guest may go.
    resp = await http.post(f"/api/v1/admin/users/{a_id}/roles", json={"role": "admin"}, headers=g)
    assert resp.status == 200
    assert (await http.delete("/api/v1/users/me", headers=g)).status == 204
    again = await http.post("/api/v1/auth/device", json={"device_id": "guard-device-0123456789"})
    assert again.status == 200  # the device's claim was released: a fresh guest
    fresh = bearer((await again.json())["access_token"])
    assert (await (await http.get("/api/v1/users/me", headers=fresh)).json())["id"] != int(g_id)
