"""Linking provider identities to accounts: link start and its callback, one identity
one account, listing, unlinking (never the last way to sign in), deletion releasing the
claims, and `authsvc check` repairing stale ones."""

from __future__ import annotations

import pytest

from authsvc.appkeys import AUDIT
from authsvc.store.check import check

from .helpers import error_of, user_with_token
from .oidc_helpers import (
    APP_RETURN,
    add_provider,
    at_provider,
    bearer,
    fresh_account,
    local_path,
    make_admin,
    sign_in,
    sign_in_settings,
)


@pytest.fixture
async def http(make_client):
    return await make_client(**sign_in_settings())


@pytest.fixture
async def admin(http):
    return (await make_admin(http))[1]


@pytest.fixture
async def op(http, admin, oidc_provider):
    return await add_provider(http, admin, oidc_provider)


async def link(http, auth: dict, slug: str, account: dict, *, redirect_to=None):
    """Link start as the caller, the browser at the provider, the callback."""
    params = {"redirect_to": redirect_to} if redirect_to else {}
    resp = await http.post(f"/api/v1/users/me/oidc/link/{slug}", headers=auth, params=params)
    assert resp.status == 200, await resp.text()
    url = (await resp.json())["authorize_url"]
    result = await at_provider(url, slug, account)
    return await http.get(local_path(result.url), allow_redirects=False)


async def my_id(http, token: str) -> int:
    return (await (await http.get("/api/v1/users/me", headers=bearer(token))).json())["id"]


async def claims(store) -> list[str]:
    return sorted([k async for k in store.scan_iter(match="identity:*")])


async def test_link_then_sign_in_with_it(http, admin, oidc_provider):
    reg = await add_provider(http, admin, oidc_provider, auto_register=False)
    user, auth = await user_with_token(http)
    account = fresh_account(oidc_provider)
    resp = await link(http, auth, reg.slug, account)
    assert resp.status == 200, await resp.text()
    linked = await resp.json()
    assert linked["status"] == "linked"
    assert linked["link"] | {"linked_at": None} == {
        "slug": reg.slug,
        "name": reg.slug,
        "issuer": oidc_provider.issuer,
        "sub": account["sub"],
        "linked_at": None,
        "last_used_at": None,
    }
    listed = await (await http.get("/api/v1/users/me/oidc", headers=auth)).json()
    assert [(entry["slug"], entry["name"]) for entry in listed["links"]] == [
        (reg.slug, f"Provider {reg.slug}")
    ]
    # Now the identity signs in to this account (auto-registration is off).
    resp = await sign_in(http, reg.slug, account)
    assert resp.status == 200, await resp.text()
    assert await my_id(http, (await resp.json())["access_token"]) == user["id"]
    listed = await (await http.get("/api/v1/users/me/oidc", headers=auth)).json()
    assert listed["links"][0]["last_used_at"] is not None
    # Linking it again is harmless.
    assert (await link(http, auth, reg.slug, account)).status == 200


async def test_link_with_redirect_to_sends_the_browser_back(http, op, oidc_provider):
    _, auth = await user_with_token(http)
    resp = await link(http, auth, op.slug, fresh_account(oidc_provider), redirect_to=APP_RETURN)
    assert resp.status == 302
    assert resp.headers["Location"] == f"{APP_RETURN}?linked={op.slug}"
    resp = await http.post(
        f"/api/v1/users/me/oidc/link/{op.slug}",
        headers=auth,
        params={"redirect_to": "https://evil.example/"},
    )
    assert resp.status == 403


async def test_an_identity_linked_elsewhere_is_a_409(http, op, oidc_provider, store):
    account = fresh_account(oidc_provider)
    first = await (await sign_in(http, op.slug, account)).json()  # registers account A
    owner = await my_id(http, first["access_token"])
    _, auth = await user_with_token(http)
    resp = await link(http, auth, op.slug, account)
    assert resp.status == 409
    assert (await error_of(resp))["code"] == "identity_linked_elsewhere"
    again = await (await sign_in(http, op.slug, account)).json()
    assert await my_id(http, again["access_token"]) == owner
    assert (await (await http.get("/api/v1/users/me/oidc", headers=auth)).json())["links"] == []


async def test_one_identity_per_provider_and_account(http, op, oidc_provider, store):
    _, auth = await user_with_token(http)
    assert (await link(http, auth, op.slug, fresh_account(oidc_provider))).status == 200
    held = await claims(store)
    resp = await link(http, auth, op.slug, fresh_account(oidc_provider))
    assert resp.status == 409
    assert (await error_of(resp))["code"] == "provider_already_linked"
    assert await claims(store) == held  # the second identity's claim was let go


async def test_linking_needs_the_session_that_started_it(http, op, oidc_provider):
    _, auth = await user_with_token(http)
    resp = await http.post(f"/api/v1/users/me/oidc/link/{op.slug}", headers=auth)
    url = (await resp.json())["authorize_url"]
    result = await at_provider(url, op.slug, fresh_account(oidc_provider))
    assert (await http.post("/api/v1/auth/logout", headers=auth)).status == 204
    resp = await http.get(local_path(result.url), allow_redirects=False)
    assert resp.status == 401
    assert "session" in (await error_of(resp))["message"]


async def test_unlink_and_what_it_leaves(http, op, oidc_provider, store):
    _, auth = await user_with_token(http)
    resp = await http.delete(f"/api/v1/users/me/oidc/unlink/{op.slug}", headers=auth)
    assert resp.status == 404
    account = fresh_account(oidc_provider)
    assert (await link(http, auth, op.slug, account)).status == 200
    assert len(await claims(store)) == 1
    assert (
        await http.delete(f"/api/v1/users/me/oidc/unlink/{op.slug}", headers=auth)
    ).status == 204
    assert await claims(store) == []
    assert (await (await http.get("/api/v1/users/me/oidc", headers=auth)).json())["links"] == []
    await http.app[AUDIT].flush()
    trail = [f["action"] for _, f in await store.xrange("audit:events")]
    assert {"oidc_link_started", "oidc_linked", "oidc_unlinked"} <= set(trail)


async def test_unlink_refuses_the_last_way_to_sign_in(http, admin, op, oidc_provider, store):
    account = fresh_account(oidc_provider)
    body = await (await sign_in(http, op.slug, account)).json()  # no password
    auth = bearer(body["access_token"])
    resp = await http.delete(f"/api/v1/users/me/oidc/unlink/{op.slug}", headers=auth)
    assert resp.status == 409
    assert (await error_of(resp))["code"] == "last_sign_in_method"
    # A second provider's identity: then the first may go.
    other = await add_provider(http, admin, oidc_provider)
    assert (await link(http, auth, other.slug, fresh_account(oidc_provider))).status == 200
    assert (
        await http.delete(f"/api/v1/users/me/oidc/unlink/{op.slug}", headers=auth)
    ).status == 204
    resp = await http.delete(f"/api/v1/users/me/oidc/unlink/{other.slug}", headers=auth)
    assert resp.status == 409
    # With a password it may go too.
    creds = {"username": "linked_later", "email": "later@example.com", "password": "p" * 12}
    resp = await http.post("/api/v1/users/me/credentials", json=creds, headers=auth)
    assert resp.status == 200, await resp.text()
    resp = await http.delete(f"/api/v1/users/me/oidc/unlink/{other.slug}", headers=auth)
    assert resp.status == 204
    resp = await http.post("/login", json={"username": "linked_later", "password": "p" * 12})
    assert resp.status == 200


async def test_links_survive_their_providers_deletion(http, admin, op, oidc_provider):
    _, auth = await user_with_token(http)
    assert (await link(http, auth, op.slug, fresh_account(oidc_provider))).status == 200
    resp = await http.delete(f"/api/v1/admin/oidc/providers/{op.slug}", headers=admin)
    assert resp.status == 204
    listed = await (await http.get("/api/v1/users/me/oidc", headers=auth)).json()
    assert [(entry["slug"], entry["name"]) for entry in listed["links"]] == [(op.slug, op.slug)]
    assert (
        await http.delete(f"/api/v1/users/me/oidc/unlink/{op.slug}", headers=auth)
    ).status == 204


@pytest.mark.parametrize("by", ["owner", "admin"])
async def test_deleting_an_account_releases_its_identity_claims(
    http, admin, op, oidc_provider, store, by
):
    account = fresh_account(oidc_provider)
    body = await (await sign_in(http, op.slug, account)).json()
    uid = await my_id(http, body["access_token"])
    assert len(await claims(store)) == 1
    if by == "owner":
        resp = await http.delete("/api/v1/users/me", headers=bearer(body["access_token"]))
    else:
        resp = await http.delete(f"/api/v1/admin/users/{uid}", headers=admin)
    assert resp.status == 204
    assert await claims(store) == []
    assert not [k async for k in store.scan_iter(match=f"account:{{{uid}}}*")]
    # The identity is free: its next sign-in makes a new account.
    again = await (await sign_in(http, op.slug, account)).json()
    assert await my_id(http, again["access_token"]) != uid


async def test_check_reports_and_repairs_stale_identity_claims(http, op, oidc_provider, store):
    import time

    # An identity whose account lives, then four kinds of damage.
    owner = await (await sign_in(http, op.slug, fresh_account(oidc_provider))).json()
    owner_id = await my_id(http, owner["access_token"])
    loose = fresh_account(oidc_provider)
    loose_body = await (await sign_in(http, op.slug, loose)).json()
    loose_id = await my_id(http, loose_body["access_token"])
    orphan = await (await sign_in(http, op.slug, fresh_account(oidc_provider))).json()
    orphan_id = await my_id(http, orphan["access_token"])
    unclaimed = await (await sign_in(http, op.slug, fresh_account(oidc_provider))).json()
    unclaimed_id = await my_id(http, unclaimed["access_token"])

    # 1. a claim naming an account that does not exist
    await store.set("identity:device:" + "ab" * 32, "12345")
    # 2. a live account that no longer holds its identity (the entry went, the claim stayed)
    (field,) = [
        f for f in await store.hkeys(f"account:{{{loose_id}}}:identities") if f.count(":") == 1
    ]
    await store.hdel(f"account:{{{loose_id}}}:identities", field)
    # 3. an identities hash whose account is gone
    await store.delete(f"account:{{{orphan_id}}}")
    # 4. a live account whose identity's claim is gone
    (ufield,) = [
        f for f in await store.hkeys(f"account:{{{unclaimed_id}}}:identities") if f.count(":") == 1
    ]
    await store.delete("identity:" + ufield)

    now = int(time.time() * 1000)
    report = await check(store, fix=False, now_ms=now)
    text = "\n".join(report.problems)
    assert "stale claim identity:device:" + "ab" * 32 + " -> account 12345" in text
    assert f"stale claim identity:{field} -> account {loose_id}" in text
    assert f"account:{{{orphan_id}}}:identities belongs to no account" in text
    assert f"account {unclaimed_id} does not hold its claim identity:{ufield}" in text
    assert str(owner_id) not in text

    fixed = await check(store, fix=True, now_ms=now)
    assert fixed.fixed >= 4
    after = await check(store, fix=False, now_ms=now)
    assert [p for p in after.problems if "identit" in p] == []
    # The repaired account signs in again through its identity.
    assert await store.get("identity:" + ufield) == str(unclaimed_id)


async def test_a_stale_claim_heals_itself_at_the_next_sign_in(http, op, oidc_provider, store):
    account = fresh_account(oidc_provider, email_verified=False)  # no email to collide on
    body = await (await sign_in(http, op.slug, account)).json()
    uid = await my_id(http, body["access_token"])
    ident = f"account:{{{uid}}}:identities"
    (field,) = [f for f in await store.hkeys(ident) if f.count(":") == 1]
    await store.hdel(ident, field)  # the entry is the truth: the claim is stale now
    again = await sign_in(http, op.slug, account)
    assert again.status == 200, await again.text()
    # Not signed in to the account that no longer holds it: a new one took the claim.
    new_id = await my_id(http, (await again.json())["access_token"])
    assert new_id != uid
    assert await claims(store) == [f"identity:{field}"]
    assert await store.get(f"identity:{field}") == str(new_id)
