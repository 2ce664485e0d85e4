"""`authsvc migrate`: a store in the layout earlier versions wrote (per-user activity
streams, one hash per favorite, link tokens as keys with a TTL) is moved to the current
one, on a real redis-server, and the HTTP API then reads it as if it had been written
now. The old keys are written here exactly as the earlier code wrote them."""

from __future__ import annotations

import asyncio
import hashlib
import re
import time

from authsvc.appkeys import AUDIT, LIFECYCLE
from authsvc.store import keys
from authsvc.store.migrate import migrate

from .helpers import login, register

NOW_MS = int(time.time() * 1000)


async def _old_layout(http, store, user: dict) -> str:
    """Rewrite the user's keys in the old layout; the verification token it mailed."""
    uid = user["id"]
    await http.app[AUDIT].flush()
    # Activity: a stream copy of the user's events, ids as in audit:events.
    await store.delete(f"user:{{{uid}}}:activity")
    for entry_id, fields in await store.xrange("audit:events"):
        if fields.get("user_id") == str(uid):
            await store.xadd(f"user:{{{uid}}}:activity", fields, id=entry_id)
    # Favorites: target -> uuid, a record hash per favorite, an index on uuids.
    tag = f"fav:{{{uid}}}:tracks"
    await store.delete(f"{tag}:by_target", f"{tag}:index")
    for i, (target, extra) in enumerate(
        (("t-old", {"rating": "5", "notes": 'say "hi"'}), ("t-older", {}))
    ):
        fav_uuid = f"0000000{i}-0000-4000-8000-000000000000"
        created = NOW_MS - 1000 * (i + 1)
        await store.hset(f"{tag}:by_target", target, fav_uuid)
        await store.hset(
            f"{tag}:{fav_uuid}",
            mapping={
                "uuid": fav_uuid,
                "user_id": str(uid),
                "target": target,
                "created_ms": str(created),
                **extra,
            },
        )
        await store.zadd(f"{tag}:index", {f"{created:013d}:{fav_uuid}": 0})
    await store.hset(f"{tag}:ffffffff-0000-4000-8000-000000000000", "uuid", "orphan")
    # The verification link: a hash with the token's hex SHA-256 and a TTL.
    await http.app[LIFECYCLE].mail.drain()
    body = http.app[LIFECYCLE].mail.mailer.messages[-1].body
    token = re.search(r"token=(\S+)", body).group(1)
    await store.hdel(f"account:{{{uid}}}", "verify_link")
    await store.hset(
        f"account:{{{uid}}}:verify", "hash", hashlib.sha256(token.encode()).hexdigest()
    )
    await store.pexpire(f"account:{{{uid}}}:verify", 3_600_000)
    return token


async def test_migrate_moves_an_old_store_to_the_current_layout(http, store):
    user = await register(http)
    auth = {"Authorization": f"Bearer {await login(http, user)}"}
    token = await _old_layout(http, store, user)
    uid = user["id"]

    report = await migrate(store, now_ms=NOW_MS)
    assert report.moved == {
        "activity streams": 1,
        "activity entries": 2,  # register, login_success
        "favorites": 2,
        "orphaned favorite records": 1,
        "verify_links": 1,
    }
    assert await store.type(f"user:{{{uid}}}:activity") == "zset"
    assert not await store.exists(f"account:{{{uid}}}:verify")
    assert not [k async for k in store.scan_iter(match=f"fav:{{{uid}}}:tracks:0*")]

    activity = await (await http.get("/api/v1/users/me/activity", headers=auth)).json()
    assert [e["action"] for e in activity["items"]] == ["login_success", "register"]
    favs = await (await http.get("/api/v1/favorites/tracks", headers=auth)).json()
    assert [(f["track_id"], f["rating"], f["notes"]) for f in favs["items"]] == [
        ("t-old", 5, 'say "hi"'),
        ("t-older", None, None),
    ]
    assert favs["items"][0]["favorite_track_uuid"] == "00000000-0000-4000-8000-000000000000"
    # Pages and removal work on the rebuilt index.
    page = await (await http.get("/api/v1/favorites/tracks?limit=1", headers=auth)).json()
    nxt = await (
        await http.get(
            f"/api/v1/favorites/tracks?limit=1&cursor={page['next_cursor']}", headers=auth
        )
    ).json()
    assert [f["track_id"] for f in nxt["items"]] == ["t-older"] and nxt["next_cursor"] is None
    assert (await http.delete("/api/v1/favorites/tracks/t-old", headers=auth)).status == 204
    assert await store.zcard(f"fav:{{{uid}}}:tracks:index") == 1
    # The mailed link still works, once, with the time it had left.
    expires = int((await store.hget(f"account:{{{uid}}}", "verify_link")).split(".")[0])
    assert NOW_MS + 3_590_000 < expires <= NOW_MS + 3_600_000
    assert (await http.post("/api/v1/auth/verify-email", json={"token": token})).status == 200
    assert (await http.post("/api/v1/auth/verify-email", json={"token": token})).status == 400

    again = await migrate(store, now_ms=NOW_MS)
    assert again.moved == {}  # idempotent: nothing old is left


async def test_migrate_keeps_a_newer_link_and_ignores_a_fresh_store(http, store):
    assert (await migrate(store, now_ms=NOW_MS)).moved == {}
    user = await register(http)
    account = f"account:{{{user['id']}}}"
    newer = await store.hget(account, "verify_link")
    await store.hset(f"{account}:verify", "hash", "ab" * 32)
    await store.pexpire(f"{account}:verify", 60_000)
    assert (await migrate(store, now_ms=NOW_MS)).moved == {"verify_links": 1}
    assert await store.hget(account, "verify_link") == newer  # the newest link wins
    assert not await store.exists(f"{account}:verify")


async def test_migrate_moves_roles_and_the_admin_indexes(http, store):
    """Roles in a set per account and the admin indexes as plain zsets (the layout
    before): afterwards the admin listing, the role's members and the user's roles
    answer as before, and the old keys are gone."""
    from .test_rbac_admin import make_admin

    admin_user, admin = await make_admin(http)
    user = await register(http)
    uid = str(user["id"])
    # Rewrite both accounts' roles and every index entry the old way.
    for account_id in (uid, str(admin_user["id"])):
        held = (await store.hget(f"account:{{{account_id}}}", "roles")).split()
        await store.hdel(f"account:{{{account_id}}}", "roles")
        await store.sadd(f"user:{{{account_id}}}:roles", *held)
        for role in held:
            await store.zadd(f"rbac:members:{role}", {account_id: 0})
        acc = await store.hgetall(f"account:{{{account_id}}}")
        for index, member in keys.listing_entries(
            account_id, acc["username"].lower(), acc["email"].lower(), int(acc["created_at"])
        ):
            await store.zadd(f"idx:{index}", {member: 0})
    for key in [k async for k in store.scan_iter(match="idx:{*")]:
        await store.delete(key)

    report = await migrate(store, now_ms=NOW_MS)
    assert report.moved == {"role sets": 2, "index entries": 9}  # 3 x 2 listings + 3 roles
    assert await store.hget(f"account:{{{uid}}}", "roles") == "user"
    assert await store.hget(f"account:{{{admin_user['id']}}}", "roles") == "admin user"
    assert not [k async for k in store.scan_iter(match="user:{*}:roles")]
    assert not [k async for k in store.scan_iter(match="idx:users:*")]
    assert not [k async for k in store.scan_iter(match="rbac:members:*")]

    listed = await (
        await http.get(f"/api/v1/admin/users?username={user['username']}", headers=admin)
    ).json()
    assert [u["id"] for u in listed["items"]] == [user["id"]]
    members = await (await http.get("/api/v1/admin/roles/user/users", headers=admin)).json()
    assert sorted(members["items"]) == sorted([uid, str(admin_user["id"])])
    one = await (await http.get(f"/api/v1/admin/users/{uid}", headers=admin)).json()
    assert one["roles"] == ["user"]
    assert (await migrate(store, now_ms=NOW_MS)).moved == {}


async def test_the_service_warns_at_start_about_an_earlier_layout(make_client, store, caplog):
    await make_client()
    await asyncio.sleep(0.2)  # the check runs beside the start, never in its way
    assert "authsvc migrate" not in caplog.text  # a store on this layout
    await store.zadd("idx:users:created", {"1795489067976:1": 0})  # as the old code wrote
    await make_client()
    await asyncio.sleep(0.2)
    assert "earlier authsvc layout: run `authsvc migrate`" in caplog.text
