"""Guest accounts of game clients: a device signs in (the account is made on first use,
with no username, email or password), later gains credentials or a provider identity,
and devices are listed, linked and unlinked. What an account without a username means
everywhere: tokens, /users/me, the admin listing, password login, `authsvc check`."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time

import jwt
import pytest

from authsvc.appkeys import ACCOUNTS, LIFECYCLE
from authsvc.store.check import check

from .helpers import error_of, register, user_with_token
from .oidc_helpers import (
    add_provider,
    at_provider,
    bearer,
    fresh_account,
    local_path,
    make_admin,
    sign_in,
    sign_in_settings,
)

LOGIN_BODY = {
    "token",
    "access_token",
    "token_type",
    "expires_in",
    "refresh_token",
    "refresh_expires_in",
    "session_id",
}


@pytest.fixture
async def http(make_client):
    return await make_client(**sign_in_settings())


def device() -> str:
    return secrets.token_urlsafe(24)


async def as_device(http, device_id: str, **extra) -> dict:
    resp = await http.post("/api/v1/auth/device", json={"device_id": device_id, **extra})
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def me(http, body: dict) -> dict:
    resp = await http.get("/api/v1/users/me", headers=bearer(body["access_token"]))
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def test_a_device_makes_a_guest_account_on_first_use(http, store):
    device_id = device()
    body = await as_device(http, device_id, device_name="Steam Deck")
    assert set(body) == LOGIN_BODY
    guest = await me(http, body)
    assert guest["username"] is None and guest["email"] is None
    assert guest["credentials_set"] is False and guest["email_verified"] is False
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert "preferred_username" not in claims and claims["sub"] == str(guest["id"])
    again = await as_device(http, device_id)
    assert (await me(http, again))["id"] == guest["id"]
    # Stored only as its SHA-256.
    digest = hashlib.sha256(device_id.encode()).hexdigest()
    assert await store.get(f"identity:device:{digest}") == str(guest["id"])
    async for key in store.scan_iter(count=1000):
        assert device_id not in key
        if await store.type(key) == "hash":
            assert device_id not in str(await store.hgetall(key))
        elif await store.type(key) == "string":
            assert device_id not in (await store.get(key) or "")
        elif await store.type(key) == "stream":
            assert device_id not in str(await store.xrange(key))
    sessions = await (
        await http.get("/api/v1/sessions", headers=bearer(body["access_token"]))
    ).json()
    assert "Steam Deck" in [s["device_name"] for s in sessions["sessions"]]
    # A guest has the default role: it can play.
    resp = await http.post(
        "/characters",
        headers=bearer(body["access_token"]),
        json={"name": "Aria", "sex": 1, "race": 2},
    )
    assert resp.status in (200, 201), await resp.text()


@pytest.mark.parametrize("bad", ["x" * 15, "x" * 129, "with space 1234567", "é" * 20, ""])
async def test_a_device_id_is_16_to_128_visible_characters(http, bad):
    resp = await http.post("/api/v1/auth/device", json={"device_id": bad})
    assert resp.status == 422
    assert "device_id" in (await error_of(resp))["fields"]


async def test_device_sign_in_is_limited_per_address(make_client):
    http = await make_client(**sign_in_settings(device_ip_limit=3))
    device_id = device()
    for _ in range(3):
        await as_device(http, device_id)
    resp = await http.post("/api/v1/auth/device", json={"device_id": device_id})
    assert resp.status == 429 and int(resp.headers["Retry-After"]) > 0
    resp = await http.post("/api/v1/auth/device", json={"device_id": device()})
    assert resp.status == 429  # every attempt counts, new devices too


async def test_linking_a_device_counts_against_the_same_limit(make_client):
    """POST /users/me/devices answers 409 for a device another account holds, so it is
    limited per address like the sign-in: no faster way to find known device ids."""
    http = await make_client(**sign_in_settings(device_ip_limit=3))
    held = device()
    await as_device(http, held)  # 1
    auth = bearer((await as_device(http, device()))["access_token"])  # 2
    resp = await http.post("/api/v1/users/me/devices", headers=auth, json={"device_id": held})
    assert resp.status == 409  # 3
    resp = await http.post("/api/v1/users/me/devices", headers=auth, json={"device_id": device()})
    assert resp.status == 429 and int(resp.headers["Retry-After"]) > 0
    assert (await http.post("/api/v1/auth/device", json={"device_id": held})).status == 429


async def test_setting_credentials_counts_against_the_registration_limit(make_client):
    """POST /users/me/credentials claims a username and an email as registration does,
    and answers email_taken as it does: the same per-address limit, so guests (free to
    make) cannot test addresses faster than registration can."""
    http = await make_client(**sign_in_settings(register_ip_limit=2))
    taken = {"username": "cred_owner", "email": "owner@example.com", "password": "p" * 12}
    await http.app[ACCOUNTS].register(**taken)
    auth = bearer((await as_device(http, device()))["access_token"])
    creds = {"username": "cred_guest", "email": taken["email"], "password": "p" * 12}
    for _ in range(2):
        resp = await http.post("/api/v1/users/me/credentials", json=creds, headers=auth)
        assert resp.status == 409 and (await error_of(resp))["code"] == "email_taken"
    resp = await http.post("/api/v1/users/me/credentials", json=creds, headers=auth)
    assert resp.status == 429 and int(resp.headers["Retry-After"]) > 0
    other = {"username": "cred_other", "email": "other@example.com", "password": "p" * 12}
    assert (await http.post("/register", json=other)).status == 429  # one limit for both


async def test_a_guest_gains_credentials_and_keeps_everything(http, store):
    device_id = device()
    body = await as_device(http, device_id)
    auth = bearer(body["access_token"])
    guest = await me(http, body)
    assert (
        await http.post("/characters", headers=auth, json={"name": "Kai", "sex": 0, "race": 1})
    ).status in (200, 201)
    fav = await http.post(
        "/api/v1/favorites/tracks", headers=auth, json={"track_id": "t9", "rating": 5}
    )
    assert fav.status in (200, 201), await fav.text()

    taken = await register(http)
    creds = {"username": taken["username"], "email": "kai@example.com", "password": "p" * 12}
    resp = await http.post("/api/v1/users/me/credentials", json=creds, headers=auth)
    assert resp.status == 409 and (await error_of(resp))["code"] == "username_taken"
    assert (await me(http, body))["username"] is None  # nothing changed
    assert await store.get("account:email:kai@example.com") is None  # nor claimed

    creds["username"] = "kai_the_guest"
    resp = await http.post("/api/v1/users/me/credentials", json=creds, headers=auth)
    assert resp.status == 200, await resp.text()
    account = await resp.json()
    assert account["id"] == guest["id"] and account["username"] == "kai_the_guest"
    assert account["email"] == "kai@example.com" and account["credentials_set"] is True
    assert account["email_verified"] is False
    await http.app[LIFECYCLE].mail.drain()
    outbox = http.app[LIFECYCLE].mail.mailer.messages
    assert any(m.to == "kai@example.com" and "Verify" in m.subject for m in outbox)

    resp = await http.post("/login", json={"username": "kai_the_guest", "password": "p" * 12})
    assert resp.status == 200
    auth2 = bearer((await resp.json())["access_token"])
    chars = await (await http.get("/characters", headers=auth2)).json()
    assert [c["name"] for c in chars["characters"]] == ["Kai"]
    favs = await (await http.get("/api/v1/favorites/tracks", headers=auth2)).json()
    assert [f["track_id"] for f in favs["items"]] == ["t9"]
    assert (await me(http, await as_device(http, device_id)))["id"] == guest["id"]  # still
    resp = await http.post("/api/v1/users/me/credentials", json=creds, headers=auth)
    assert resp.status == 409 and (await error_of(resp))["code"] == "credentials_exist"
    resp = await http.post(
        "/api/v1/users/me/change-password",
        headers=auth2,
        json={"current_password": "p" * 12, "new_password": "q" * 12},
    )
    assert resp.status == 200


async def test_a_guest_cannot_change_a_password_it_does_not_have(http):
    auth = bearer((await as_device(http, device()))["access_token"])
    resp = await http.post(
        "/api/v1/users/me/change-password",
        headers=auth,
        json={"current_password": "whatever1", "new_password": "q" * 12},
    )
    assert resp.status == 409 and (await error_of(resp))["code"] == "no_password"


async def test_a_guest_links_a_provider_identity(http, oidc_provider):
    _, admin = await make_admin(http)
    reg = await add_provider(http, admin, oidc_provider, auto_register=False)
    body = await as_device(http, device())
    guest = await me(http, body)
    resp = await http.post(
        f"/api/v1/users/me/oidc/link/{reg.slug}", headers=bearer(body["access_token"])
    )
    url = (await resp.json())["authorize_url"]
    account = fresh_account(oidc_provider)
    result = await at_provider(url, reg.slug, account)
    assert (await http.get(local_path(result.url), allow_redirects=False)).status == 200
    signed = await sign_in(http, reg.slug, account)
    assert (await me(http, await signed.json()))["id"] == guest["id"]


async def test_devices_are_listed_linked_and_unlinked(http):
    first, second = device(), device()
    body = await as_device(http, first, device_name="phone")
    auth = bearer(body["access_token"])
    guest = await me(http, body)
    resp = await http.post(
        "/api/v1/users/me/devices", headers=auth, json={"device_id": second, "name": "tablet"}
    )
    assert resp.status == 201, await resp.text()
    linked = await resp.json()
    assert linked["id"] == hashlib.sha256(second.encode()).hexdigest()[:16]
    assert (await me(http, await as_device(http, second)))["id"] == guest["id"]
    listed = (await (await http.get("/api/v1/users/me/devices", headers=auth)).json())["devices"]
    assert sorted(d["name"] or "" for d in listed) == ["phone", "tablet"]
    assert all(d["last_used_at"] for d in listed)
    assert all(first not in str(d) and second not in str(d) for d in listed)

    first_handle = hashlib.sha256(first.encode()).hexdigest()[:16]
    assert (
        await http.delete(f"/api/v1/users/me/devices/{first_handle}", headers=auth)
    ).status == 204
    assert (
        await http.delete(f"/api/v1/users/me/devices/{first_handle}", headers=auth)
    ).status == 404
    # The last device of an account without a password stays.
    resp = await http.delete(f"/api/v1/users/me/devices/{linked['id']}", headers=auth)
    assert resp.status == 409 and (await error_of(resp))["code"] == "last_sign_in_method"
    # The unlinked device is free: it makes a new guest.
    assert (await me(http, await as_device(http, first)))["id"] != guest["id"]
    # A device another account holds cannot be linked.
    _, other = await user_with_token(http)
    resp = await http.post("/api/v1/users/me/devices", headers=other, json={"device_id": second})
    assert resp.status == 409 and (await error_of(resp))["code"] == "identity_linked_elsewhere"


async def test_an_account_without_a_username_everywhere(http, store):
    _, admin = await make_admin(http)
    body = await as_device(http, device())
    guest = await me(http, body)
    listing = await (await http.get("/api/v1/admin/users?limit=200", headers=admin)).json()
    row = [u for u in listing["items"] if u["id"] == guest["id"]]
    assert row and row[0]["username"] is None and row[0]["email"] is None
    by_name = await (await http.get("/api/v1/admin/users?username=a", headers=admin)).json()
    assert guest["id"] not in [u["id"] for u in by_name["items"]]
    one = await (await http.get(f"/api/v1/admin/users/{guest['id']}", headers=admin)).json()
    assert one["username"] is None and one["roles"] == ["user"]
    for name in ("None", "null", "_", "user"):
        resp = await http.post("/login", json={"username": name, "password": "x" * 10})
        assert resp.status == 401
    assert (await http.post("/login", json={"username": "", "password": "x" * 10})).status == 422
    assert not [k async for k in store.scan_iter(match="account:username:*") if k.endswith(":")]
    refreshed = await http.post(
        "/api/v1/auth/refresh", json={"refresh_token": body["refresh_token"]}
    )
    assert refreshed.status == 200
    export = await http.get("/api/v1/users/me/export", headers=bearer(body["access_token"]))
    assert export.status == 200
    # An admin may give it a name.
    resp = await http.patch(
        f"/api/v1/admin/users/{guest['id']}", headers=admin, json={"username": "named_by_admin"}
    )
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["username"] == "named_by_admin"
    assert await store.get("account:username:named_by_admin") == str(guest["id"])
    report = await check(store, fix=False, now_ms=int(time.time() * 1000))
    assert report.problems == [], report.problems


async def test_deleting_a_guest_releases_its_device(http, store):
    device_id = device()
    body = await as_device(http, device_id)
    guest = await me(http, body)
    assert (
        await http.delete("/api/v1/users/me", headers=bearer(body["access_token"]))
    ).status == 204
    assert [k async for k in store.scan_iter(match="identity:*")] == []
    assert (await me(http, await as_device(http, device_id)))["id"] != guest["id"]


async def test_a_disabled_guest_cannot_sign_in(http):
    _, admin = await make_admin(http)
    device_id = device()
    guest = await me(http, await as_device(http, device_id))
    assert (
        await http.post(f"/api/v1/admin/users/{guest['id']}/disable", headers=admin)
    ).status == 200
    resp = await http.post("/api/v1/auth/device", json={"device_id": device_id})
    assert resp.status == 403 and (await error_of(resp))["code"] == "account_disabled"


async def test_concurrent_first_uses_of_one_device_make_one_account(http, store):
    device_id = device()
    answers = await asyncio.gather(
        *(http.post("/api/v1/auth/device", json={"device_id": device_id}) for _ in range(6))
    )
    assert [a.status for a in answers] == [200] * 6
    # (by the tokens' subject: six sessions of one account evict the oldest, the cap is 5)
    ids = {
        jwt.decode((await a.json())["access_token"], options={"verify_signature": False})["sub"]
        for a in answers
    }
    assert len(ids) == 1
    assert len([k async for k in store.scan_iter(match="account:{*}")]) == 1
