"""Signing in through a real OpenID provider (npm oidc-provider): authorize -> its login
and consent pages -> callback, and every way that can go wrong."""

from __future__ import annotations

import asyncio
import logging
import time
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
from prometheus_client import REGISTRY

from authsvc.appkeys import AUDIT

from .helpers import assert_edge_headers, data_keys, error_of, register, user_with_token
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
    start,
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


@pytest.fixture
async def op(http, oidc_provider):
    """An admin, and a provider with auto-registration at the real OpenID provider."""
    _, admin = await make_admin(http)
    return await add_provider(http, admin, oidc_provider)


async def durable_keys(store) -> list[str]:
    """The data keys but the sign-ins in flight (a callback spends its state)."""
    return [k for k in await data_keys(store) if not k.startswith("oidc:state:")]


async def me(http, body: dict) -> dict:
    resp = await http.get("/api/v1/users/me", headers=bearer(body["access_token"]))
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def actions(http, store) -> list[dict]:
    await http.app[AUDIT].flush()
    return [fields for _, fields in await store.xrange("audit:events")]


def provider_requests(kind: str) -> float:
    return sum(
        REGISTRY.get_sample_value(
            "authsvc_oidc_provider_requests_total", {"kind": kind, "result": r}
        )
        or 0
        for r in ("200", "400", "401", "error")
    )


# -- the way it should go ------------------------------------------------------------------


async def test_a_first_sign_in_registers_and_answers_the_login_body(http, op, oidc_provider):
    account = fresh_account(oidc_provider, username="Jöhn Doe!")
    resp = await sign_in(http, op.slug, account)
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert set(body) == LOGIN_BODY and body["token_type"] == "Bearer"
    assert resp.headers["Cache-Control"] == "no-store"
    profile = await me(http, body)
    assert profile["username"] == "John_Doe"
    assert profile["email"] == account["email"] and profile["email_verified"] is True
    assert profile["credentials_set"] is False

    # The same identity signs in to the same account; the refresh token works.
    again = await (await sign_in(http, op.slug, account)).json()
    assert (await me(http, again))["id"] == profile["id"]
    resp = await http.post("/api/v1/auth/refresh", json={"refresh_token": again["refresh_token"]})
    assert resp.status == 200
    # No password to guess: a password login as that username fails like any miss.
    resp = await http.post("/login", json={"username": "John_Doe", "password": "x" * 10})
    assert resp.status == 401


async def test_a_provider_made_account_has_no_password_to_guess(http, op, oidc_provider):
    """The account a first sign-in made has a username and an email but no password: a
    password login with it answers exactly as for an unknown account, whatever the
    password (the hasher's dummy password included)."""
    account = fresh_account(oidc_provider)
    made = await me(http, await (await sign_in(http, op.slug, account)).json())
    assert made["username"] and made["email"] and made["credentials_set"] is False
    answers = []
    for name in (made["username"], made["email"], "nobody_at_all"):
        for password in ("authsvc-dummy-password", "", "x" * 10):
            resp = await http.post("/login", json={"username": name, "password": password})
            if password == "":
                assert resp.status == 422
                continue
            assert resp.status == 401, (name, password, await resp.text())
            answers.append(await error_of(resp))
    assert all(a == answers[0] for a in answers)


@pytest.mark.parametrize(
    ("registered", "configured"),
    [
        ("client_secret_basic", "auto"),  # the first method discovery offers
        ("client_secret_post", "client_secret_post"),
    ],
)
async def test_both_client_authentication_methods(http, oidc_provider, registered, configured):
    _, admin = await make_admin(http)
    reg = await add_provider(
        http, admin, oidc_provider, auth_method=registered, token_auth_method=configured
    )
    resp = await sign_in(http, reg.slug, fresh_account(oidc_provider))
    assert resp.status == 200, await resp.text()


async def test_usernames_are_made_unique_without_failing(http, op, oidc_provider):
    taken = await register(
        http, {"username": "neo", "email": "neo@x.example", "password": "p" * 10}
    )
    names = []
    for claims in ({"username": "neo"}, {"username": "neo"}, {"username": "x"}, {"username": None}):
        account = fresh_account(oidc_provider, **claims)
        body = await (await sign_in(http, op.slug, account)).json()
        names.append((await me(http, body))["username"])
    assert names[0] != taken["username"] and names[0].startswith("neo_")
    assert names[1].startswith("neo_") and names[1] != names[0]
    assert names[2] == "x_user"
    assert names[3] and names[3] != "user"  # from the email's local part
    assert all(3 <= len(n) <= 50 for n in names)


async def test_only_a_verified_email_is_claimed(http, op, oidc_provider, store):
    local = await register(http)
    account = fresh_account(oidc_provider, email=local["email"], email_verified=False)
    body = await (await sign_in(http, op.slug, account)).json()
    profile = await me(http, body)
    assert profile["email"] is None and profile["email_verified"] is False
    # The local account keeps its email and its claim.
    assert await store.get(f"account:email:{local['email']}") == str(local["id"])


async def test_an_existing_account_with_that_email_is_never_linked_silently(
    http, op, oidc_provider, store
):
    local = await register(http)
    before = await durable_keys(store)
    account = fresh_account(oidc_provider, email=local["email"].upper(), email_verified=True)
    resp = await sign_in(http, op.slug, account)
    assert resp.status == 409
    err = await error_of(resp)
    assert err["code"] == "account_exists"
    assert f"/api/v1/users/me/oidc/link/{op.slug}" in err["message"]
    assert await durable_keys(store) == before  # nothing created
    failed = [a for a in await actions(http, store) if a["action"] == "oidc_login_failed"]
    assert failed[-1]["reason"] == "email_in_use"


async def test_without_auto_registration_an_unknown_identity_is_refused(http, oidc_provider, store):
    _, admin = await make_admin(http)
    reg = await add_provider(http, admin, oidc_provider, auto_register=False)
    before = await durable_keys(store)
    resp = await sign_in(http, reg.slug, fresh_account(oidc_provider))
    assert resp.status == 403
    assert (await error_of(resp))["code"] == "identity_not_linked"
    assert await durable_keys(store) == before


async def test_redirect_to_hands_a_single_use_code_to_the_app(http, op, oidc_provider, store):
    resp = await sign_in(
        http, op.slug, fresh_account(oidc_provider), redirect_to=APP_RETURN + "?tab=2"
    )
    assert resp.status == 302, await resp.text()
    location = resp.headers["Location"]
    assert location.startswith(APP_RETURN + "?tab=2&code=")
    code = location.rsplit("code=", 1)[1]
    keys = [k async for k in store.scan_iter(match="oidc:handoff:*")]
    assert len(keys) == 1 and 0 < await store.pttl(keys[0]) <= 60_000
    assert code not in keys[0]  # stored by its hash only
    resp = await http.post("/api/v1/auth/oidc/exchange", json={"code": code})
    assert resp.status == 200, await resp.text()
    assert set(await resp.json()) == LOGIN_BODY
    resp = await http.post("/api/v1/auth/oidc/exchange", json={"code": code})
    assert resp.status == 401
    assert (await error_of(resp))["code"] == "invalid_exchange_code"

    # A game's own scheme on the allow-list works too; anything else is refused before
    # anything is stored.
    resp = await sign_in(
        http, op.slug, fresh_account(oidc_provider), redirect_to="mygame:/signed-in"
    )
    assert resp.headers["Location"].startswith("mygame:/signed-in?code=")
    for target in (
        "https://evil.example/after-login",
        "https://game.example/other",
        "https://game.example/after-login#frag",
        "https://x@game.example/after-login",
    ):
        resp = await http.get(
            f"/api/v1/auth/oidc/{op.slug}/authorize",
            params={"redirect_to": target},
            allow_redirects=False,
        )
        assert resp.status == 403, target
        assert (await error_of(resp))["code"] == "redirect_not_allowed"


async def test_the_authorization_request_and_the_state_record(http, op, store):
    url = await start(http, op.slug)
    q = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    assert q["response_type"] == "code" and q["code_challenge_method"] == "S256"
    assert q["client_id"] == op.client["client_id"]
    assert q["redirect_uri"] == op.view["redirect_uri"]
    assert q["scope"].split() == ["openid", "email", "profile", "roles"]
    assert len(q["state"]) >= 43 and len(q["nonce"]) >= 32 and len(q["code_challenge"]) == 43
    (key,) = [k async for k in store.scan_iter(match="oidc:state:*")]
    assert q["state"] not in key  # by its SHA-256
    ttl = await store.pttl(key)
    assert 0 < ttl <= 600_000
    raw = await store.get(key)
    assert q["nonce"] in raw and q["code_challenge"] not in raw  # the verifier, not the challenge
    cookie = [c for c in http.session.cookie_jar if c.key.startswith("authsvc_oidc_")]
    assert cookie and cookie[0]["httponly"] and cookie[0]["path"] == "/api/v1/auth/oidc/"


# -- the ways it can go wrong ----------------------------------------------------------------


async def test_a_replayed_callback_is_refused_and_creates_nothing(http, op, oidc_provider, store):
    url = await start(http, op.slug)
    result = await at_provider(url, op.slug, fresh_account(oidc_provider))
    first = await http.get(local_path(result.url), allow_redirects=False)
    assert first.status == 200
    before = await durable_keys(store)
    replay = await http.get(local_path(result.url), allow_redirects=False)
    assert replay.status == 401
    assert (await error_of(replay))["code"] == "invalid_oidc_state"
    assert await durable_keys(store) == before
    bogus = await http.get(
        f"/api/v1/auth/oidc/{op.slug}/callback",
        params={"state": "made-up", "code": "x"},
        allow_redirects=False,
    )
    assert bogus.status == 401


async def test_a_callback_from_another_browser_is_refused(http, op, oidc_provider, aiohttp_client):
    url = await start(http, op.slug)
    result = await at_provider(url, op.slug, fresh_account(oidc_provider))
    other = await aiohttp_client(http.server)  # same service, a browser without the cookie
    resp = await other.get(local_path(result.url), allow_redirects=False)
    assert resp.status == 401
    assert "another browser" in (await error_of(resp))["message"]


async def test_a_reused_code_with_a_fresh_state_is_refused(http, op, oidc_provider):
    url = await start(http, op.slug)
    result = await at_provider(url, op.slug, fresh_account(oidc_provider))
    assert (await http.get(local_path(result.url), allow_redirects=False)).status == 200
    # The attacker's own new state, the victim's spent code.
    url2 = await start(http, op.slug)
    state2 = parse_qs(urlsplit(url2).query)["state"][0]
    resp = await http.get(
        f"/api/v1/auth/oidc/{op.slug}/callback",
        params={"code": result.code, "state": state2, "iss": result.params["iss"]},
        allow_redirects=False,
    )
    assert resp.status == 401
    assert (await error_of(resp))["code"] == "invalid_oidc_code"


@pytest.mark.parametrize(
    ("tamper", "why"),
    [
        ({"claims": {"nonce": "not-the-nonce"}}, "nonce"),
        ({"claims": {"nonce": None}}, "nonce"),
        ({"claims": {"aud": "someone-else"}}, "not meant for this client"),
        ({"claims": {"aud": ["CLIENT", "other"], "azp": "other"}}, "azp"),
        ({"claims": {"iss": "http://127.0.0.1:1"}}, "issuer"),
        ({"claims": {"exp": 1_000_000_000}}, "expired"),
        ({"claims": {"iat": 4_000_000_000}}, "not valid yet"),
        ({"claims": {"at_hash": "AAAAAAAAAAAAAAAAAAAAAA"}}, "at_hash"),
        ({"unknown_key": True}, "does not publish"),
        ({"header": {"alg": "none"}}, "algorithm"),
        ({"header": {"alg": "HS256"}, "hmac_secret": "CLIENT_SECRET"}, "algorithm"),
        ({"header": {"alg": "RS512"}}, "algorithm"),
    ],
)
async def test_a_bad_id_token_is_refused(http, op, oidc_provider, store, tamper, why):
    url = await start(http, op.slug)
    result = await at_provider(url, op.slug, fresh_account(oidc_provider))
    claims = dict(tamper.get("claims", {}))
    if claims.get("aud") == ["CLIENT", "other"]:
        claims["aud"] = [op.client["client_id"], "other"]
    secret = tamper.get("hmac_secret")
    oidc_provider.tamper_next_id_token(
        claims,
        header=tamper.get("header"),
        unknown_key=tamper.get("unknown_key", False),
        hmac_secret=op.client["client_secret"] if secret else None,
    )
    before = await durable_keys(store)
    resp = await http.get(local_path(result.url), allow_redirects=False)
    assert resp.status == 401, await resp.text()
    err = await error_of(resp)
    assert err["code"] == "invalid_id_token" and why in err["message"], err
    assert await durable_keys(store) == before
    failed = [a for a in await actions(http, store) if a["action"] == "oidc_login_failed"]
    assert failed[-1]["reason"] == "id_token_rejected" and failed[-1]["slug"] == op.slug


async def test_an_iss_parameter_naming_another_issuer_is_refused(http, op, oidc_provider):
    url = await start(http, op.slug)
    result = await at_provider(url, op.slug, fresh_account(oidc_provider))
    forged = local_path(result.url).replace("iss=", "iss=http%3A%2F%2Fevil.example%2F&x=")
    resp = await http.get(forged, allow_redirects=False)
    assert resp.status == 401
    assert "iss" in (await error_of(resp))["message"]


async def test_declined_consent_is_refused_and_spends_the_state(http, op, oidc_provider):
    url = await start(http, op.slug)
    result = await at_provider(url, op.slug, fresh_account(oidc_provider), consent=False)
    assert result.error == "access_denied"
    resp = await http.get(local_path(result.url), allow_redirects=False)
    assert resp.status == 401
    assert (await error_of(resp))["code"] == "provider_denied"
    again = await http.get(local_path(result.url), allow_redirects=False)
    assert (await error_of(again))["code"] == "invalid_oidc_state"


async def test_a_rotated_key_is_fetched_once(http, op, oidc_provider):
    account = fresh_account(oidc_provider)
    assert (await sign_in(http, op.slug, account)).status == 200  # keys cached now
    oidc_provider.rotate_key(drop_old=True)
    jwks_before = provider_requests("jwks")
    resp = await sign_in(http, op.slug, account)
    assert resp.status == 200, await resp.text()
    assert provider_requests("jwks") - jwks_before == 1
    assert (await sign_in(http, op.slug, account)).status == 200
    assert provider_requests("jwks") - jwks_before == 1  # cached again


async def test_a_slow_provider_is_a_bounded_503_and_nothing_is_consumed(
    make_client, oidc_provider, store
):
    http = await make_client(**sign_in_settings(oidc_http_timeout=0.5))
    _, admin = await make_admin(http)
    op = await add_provider(http, admin, oidc_provider)
    url = await start(http, op.slug)
    result = await at_provider(url, op.slug, fresh_account(oidc_provider))
    oidc_provider.set_delay(2, path="/token")
    began = time.monotonic()
    resp = await http.get(local_path(result.url), allow_redirects=False)
    took = time.monotonic() - began
    assert resp.status == 503, await resp.text()
    assert (await error_of(resp))["code"] == "provider_unavailable"
    assert resp.headers["Retry-After"] == "2"
    assert took < 1.5, took
    assert [k async for k in store.scan_iter(match="oidc:state:*")]  # put back
    await asyncio.sleep(2.2 - took)  # the held request is dropped unanswered, never redeemed
    oidc_provider.set_delay(0)
    resp = await http.get(local_path(result.url), allow_redirects=False)
    assert resp.status == 200, await resp.text()


async def test_a_stopped_provider_is_a_503_and_the_state_survives(make_client, oidc_provider):
    http = await make_client(**sign_in_settings(oidc_http_timeout=1.0))
    _, admin = await make_admin(http)
    op = await add_provider(http, admin, oidc_provider)
    url = await start(http, op.slug)
    result = await at_provider(url, op.slug, fresh_account(oidc_provider))
    oidc_provider.stop()
    began = time.monotonic()
    resp = await http.get(local_path(result.url), allow_redirects=False)
    assert resp.status == 503 and time.monotonic() - began < 1.5
    # Starting a new sign-in needs the discovery document: cached, so the provider is
    # only needed at the callback; a fresh service has none and answers 503 at once.
    fresh = await make_client(**sign_in_settings(oidc_http_timeout=1.0))
    resp = await fresh.get(f"/api/v1/auth/oidc/{op.slug}/authorize", allow_redirects=False)
    assert resp.status == 503
    oidc_provider.start()
    # The state was kept; the provider lost the code it held in memory when it stopped.
    resp = await http.get(local_path(result.url), allow_redirects=False)
    assert resp.status == 401
    assert (await error_of(resp))["code"] == "invalid_oidc_code"


async def test_a_disabled_provider_or_account_cannot_sign_in(http, op, oidc_provider):
    _, admin = await make_admin(http)
    account = fresh_account(oidc_provider)
    body = await (await sign_in(http, op.slug, account)).json()
    uid = (await me(http, body))["id"]
    assert (await http.post(f"/api/v1/admin/users/{uid}/disable", headers=admin)).status == 200
    resp = await sign_in(http, op.slug, account)
    assert resp.status == 403 and (await error_of(resp))["code"] == "account_disabled"

    url = await start(http, op.slug)
    result = await at_provider(url, op.slug, fresh_account(oidc_provider))
    patch = await http.patch(
        f"/api/v1/admin/oidc/providers/{op.slug}", json={"enabled": False}, headers=admin
    )
    assert patch.status == 200
    resp = await http.get(local_path(result.url), allow_redirects=False)
    assert resp.status == 404


async def test_the_role_mapping_is_the_only_way_to_local_roles(http, oidc_provider):
    _, admin = await make_admin(http)
    reg = await add_provider(
        http, admin, oidc_provider, role_mapping={"vip": "manager"}, roles_claim="roles"
    )
    account = fresh_account(oidc_provider, roles=["vip", "admin"])
    body = await (await sign_in(http, reg.slug, account)).json()
    uid = (await me(http, body))["id"]
    user = await (await http.get(f"/api/v1/admin/users/{uid}", headers=admin)).json()
    assert user["roles"] == ["manager", "user"]  # never `admin`: it is not mapped
    assert (
        await http.get("/api/v1/admin/users", headers=bearer(body["access_token"]))
    ).status == 200

    # The provider stops asserting it: gone at the next sign-in.
    oidc_provider.add_account(account["login"], sub=account["sub"], roles=["admin"])
    body = await (await sign_in(http, reg.slug, account)).json()
    user = await (await http.get(f"/api/v1/admin/users/{uid}", headers=admin)).json()
    assert user["roles"] == ["user"]
    resp = await http.get("/api/v1/admin/users", headers=bearer(body["access_token"]))
    assert resp.status == 403


async def test_the_role_sync_never_removes_the_last_holder_of_star(
    http, oidc_provider, store, caplog
):
    """Roles are re-applied from the provider's mapping at each sign-in, through the
    last-admin guard: a provider that stops asserting the role giving `*` to the last
    holder does not take it (kept, warned, audited) until someone else holds `*`. The
    provider-made account is guarded like any other (DELETE /users/me)."""
    local, admin = await make_admin(http)
    reg = await add_provider(
        http, admin, oidc_provider, role_mapping={"ops": "admin"}, roles_claim="roles"
    )
    account = fresh_account(oidc_provider, roles=["ops"])
    body = await (await sign_in(http, reg.slug, account)).json()
    ops = bearer(body["access_token"])
    uid = (await me(http, body))["id"]
    resp = await http.delete(f"/api/v1/admin/users/{local['id']}/roles/admin", headers=ops)
    assert resp.status == 204, await resp.text()
    resp = await http.delete("/api/v1/users/me", headers=ops)
    assert resp.status == 409 and (await error_of(resp))["code"] == "last_admin"

    oidc_provider.add_account(account["login"], sub=account["sub"], roles=["other"])
    with caplog.at_level(logging.WARNING, logger="authsvc.federation"):
        body = await (await sign_in(http, reg.slug, account)).json()
    ops = bearer(body["access_token"])
    user = await (await http.get(f"/api/v1/admin/users/{uid}", headers=ops)).json()
    assert user["roles"] == ["admin", "user"]
    kept = [a for a in await actions(http, store) if a["action"] == "oidc_role_kept"]
    assert [(a["user_id"], a["role"], a["reason"]) for a in kept] == [
        (str(uid), "admin", "last_admin")
    ]
    assert any("kept" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)

    # Someone else holds `*` again: the next sign-in removes the provider's role.
    resp = await http.post(
        f"/api/v1/admin/users/{local['id']}/roles", json={"role": "admin"}, headers=ops
    )
    assert resp.status == 200
    body = await (await sign_in(http, reg.slug, account)).json()
    user = await (await http.get(f"/api/v1/admin/users/{uid}", headers=admin)).json()
    assert user["roles"] == ["user"]
    synced = [a for a in await actions(http, store) if a["action"] == "oidc_roles_synced"]
    assert synced[-1]["removed"] == "admin"
    resp = await http.get("/api/v1/admin/users", headers=bearer(body["access_token"]))
    assert resp.status == 403


async def test_concurrent_first_sign_ins_of_one_identity_make_one_account(
    http, op, oidc_provider, store
):
    account = fresh_account(oidc_provider)
    urls = []
    for _ in range(4):
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
            url = await start(http, op.slug)
            urls.append(await at_provider(url, op.slug, account, session=browser))
    answers = await asyncio.gather(
        *(http.get(local_path(r.url), allow_redirects=False) for r in urls)
    )
    bodies = [await a.json() for a in answers]
    assert [a.status for a in answers] == [200] * 4, bodies
    ids = {(await me(http, b))["id"] for b in bodies}
    assert len(ids) == 1
    claims = [k async for k in store.scan_iter(match="identity:oidc:*")]
    assert len(claims) == 1


async def test_no_code_token_or_secret_reaches_the_logs_or_the_audit_trail(
    http, op, oidc_provider, store, caplog
):
    caplog.set_level(logging.DEBUG)
    account = fresh_account(oidc_provider)
    url = await start(http, op.slug, redirect_to=APP_RETURN)
    result = await at_provider(url, op.slug, account)
    resp = await http.get(local_path(result.url), allow_redirects=False)
    handoff = resp.headers["Location"].rsplit("code=", 1)[1]
    body = await (await http.post("/api/v1/auth/oidc/exchange", json={"code": handoff})).json()
    oidc_provider.tamper_next_id_token({"nonce": "x"})
    url = await start(http, op.slug)
    bad = await at_provider(url, op.slug, account)
    await http.get(local_path(bad.url), allow_redirects=False)
    oidc_provider.set_delay(3, path="/token")
    url = await start(http, op.slug)
    slow = await at_provider(url, op.slug, account)
    await http.get(local_path(slow.url), allow_redirects=False)
    oidc_provider.set_delay(0)
    trail = str(await actions(http, store))
    logs = caplog.text
    secrets_seen = [
        result.code,
        result.state,
        bad.code,
        slow.code,
        handoff,
        body["refresh_token"],
        body["access_token"],
        op.client["client_secret"],
    ]
    for secret in secrets_seen:
        assert secret not in trail and secret not in logs
    raw_states = [await store.get(k) async for k in store.scan_iter(match="oidc:state:*")]
    for state in raw_states:
        assert op.client["client_secret"] not in state


async def test_the_cost_of_one_sign_in(http, op, oidc_provider, monkeypatch):
    """Store round trips and provider requests of one sign-in, counted at the
    connection: every packet sent to the store is one round trip (a pipeline is one; on
    a cluster, one per node it reaches)."""
    from redis.asyncio.connection import AbstractConnection as connection_class

    account = fresh_account(oidc_provider)
    # Warm: the first registers, the second loads the sign-in script (once per store
    # start); discovery and keys are cached.
    for _ in range(2):
        assert (await sign_in(http, op.slug, account)).status == 200
    await http.app[AUDIT].flush()
    sent: list[bytes] = []
    original = connection_class.send_packed_command

    async def counting(self, command, check_health=True):
        packed = b"".join(command) if isinstance(command, list | tuple) else command
        sent.append(packed if isinstance(packed, bytes) else bytes(packed))
        return await original(self, command, check_health)

    monkeypatch.setattr(connection_class, "send_packed_command", counting)
    token_before = provider_requests("token")
    others_before = provider_requests("discovery") + provider_requests("jwks")

    def store_trips() -> int:
        return sum(1 for p in sent if b"XADD" not in p and b":activity" not in p)

    url = await start(http, op.slug)
    authorize_trips = store_trips()
    authorize_sent = [p[:80] for p in sent]
    result = await at_provider(url, op.slug, account)
    sent.clear()
    resp = await http.get(local_path(result.url), allow_redirects=False)
    assert resp.status == 200
    callback_trips = store_trips()
    monkeypatch.undo()
    assert provider_requests("token") - token_before == 1
    assert provider_requests("discovery") + provider_requests("jwks") - others_before == 0
    # authorize: the provider, the per-address counter, the state.
    assert authorize_trips == 3, authorize_sent
    # callback: take the state, the provider, the identity's claim, the account (one
    # script: live, holds the identity, stamped), the session.
    assert callback_trips == 5, [b" ".join(p.split(b"\r\n")[2:11:2]) for p in sent]
    print(
        f"\nsign-in cost: authorize {authorize_trips} store round trips, 0 provider "
        f"requests; callback {callback_trips} store round trips, 1 provider request"
    )


async def test_the_cost_of_a_first_sign_in(http, op, oidc_provider, monkeypatch):
    from redis.asyncio.connection import AbstractConnection as connection_class

    assert (await sign_in(http, op.slug, fresh_account(oidc_provider))).status == 200
    await http.app[AUDIT].flush()
    sent: list[bytes] = []
    original = connection_class.send_packed_command

    async def counting(self, command, check_health=True):
        packed = b"".join(command) if isinstance(command, list | tuple) else command
        sent.append(bytes(packed))
        return await original(self, command, check_health)

    url = await start(http, op.slug)
    result = await at_provider(url, op.slug, fresh_account(oidc_provider))
    monkeypatch.setattr(connection_class, "send_packed_command", counting)
    resp = await http.get(local_path(result.url), allow_redirects=False)
    monkeypatch.undo()
    assert resp.status == 200
    trips = sum(1 for p in sent if b"XADD" not in p and b":activity" not in p)
    print(f"\nfirst sign-in (registration) callback: {trips} store round trips")
    assert trips <= 16, trips


async def test_a_keycloak_style_session_state_parameter_is_ignored(http, op, oidc_provider):
    url = await start(http, op.slug)
    result = await at_provider(url, op.slug, fresh_account(oidc_provider))
    resp = await http.get(local_path(result.url) + "&session_state=abc", allow_redirects=False)
    assert resp.status == 200


async def test_a_logged_in_user_gains_nothing_by_calling_the_callback(http, op):
    _, auth = await user_with_token(http)
    resp = await http.get(
        f"/api/v1/auth/oidc/{op.slug}/callback",
        params={"state": "s", "code": "c"},
        headers=auth,
        allow_redirects=False,
    )
    assert resp.status == 401


async def test_every_sign_in_is_audited(http, op, oidc_provider, store):
    account = fresh_account(oidc_provider)
    assert (await sign_in(http, op.slug, account)).status == 200
    trail = await actions(http, store)
    register_event = [a for a in trail if a["action"] == "register"][-1]
    assert register_event["method"] == f"oidc:{op.slug}"
    login = [a for a in trail if a["action"] == "login_success"][-1]
    assert login["method"] == f"oidc:{op.slug}" and login["user_id"] == register_event["user_id"]


async def test_every_sign_in_answer_carries_the_edge_headers(http, op, oidc_provider):
    """Tokens, codes and personal data are never cacheable: authorize's 302, the
    callback's /login body and its 302 with an exchange code, the exchange, the link
    routes, the device sign-in, the provider administration, and their errors all say
    Cache-Control: no-store (with nosniff and a Server without versions)."""
    _, admin = await make_admin(http)
    seen = []

    def check(resp):
        assert_edge_headers(resp)
        seen.append((resp.method, resp.url.path.rsplit("/", 1)[-1], resp.status))
        return resp

    authorize = check(
        await http.get(f"/api/v1/auth/oidc/{op.slug}/authorize", allow_redirects=False)
    )
    assert authorize.status == 302 and authorize.headers["Referrer-Policy"] == "no-referrer"
    result = await at_provider(authorize.headers["Location"], op.slug, fresh_account(oidc_provider))
    body = check(await http.get(local_path(result.url), allow_redirects=False))
    assert body.status == 200 and set(await body.json()) == LOGIN_BODY
    assert body.headers["Referrer-Policy"] == "no-referrer"
    auth = bearer((await body.json())["access_token"])
    redirected = check(
        await sign_in(http, op.slug, fresh_account(oidc_provider), redirect_to=APP_RETURN)
    )
    assert redirected.status == 302
    code = redirected.headers["Location"].rsplit("code=", 1)[1]
    exchanged = check(await http.post("/api/v1/auth/oidc/exchange", json={"code": code}))
    assert exchanged.status == 200
    check(await http.post("/api/v1/auth/oidc/exchange", json={"code": code}))  # 401
    check(await http.get(local_path(result.url), allow_redirects=False))  # replayed: 4xx
    check(await http.get(f"/api/v1/auth/oidc/{op.slug}/callback?state=x&code=y"))
    check(await http.get("/api/v1/auth/oidc/no-such/authorize", allow_redirects=False))  # 404
    check(await http.post(f"/api/v1/users/me/oidc/link/{op.slug}", headers=auth))
    check(await http.get("/api/v1/users/me/oidc", headers=auth))
    check(await http.get("/api/v1/auth/oidc/providers"))
    check(await http.get("/api/v1/admin/oidc/providers", headers=admin))
    check(await http.get(f"/api/v1/admin/oidc/providers/{op.slug}", headers=admin))
    device = {"device_id": "edge-headers-device-0001"}
    for _ in range(2):  # a new device, then a known one: the same answer
        signed = check(await http.post("/api/v1/auth/device", json=device))
        assert signed.status == 200 and set(await signed.json()) == LOGIN_BODY
    guest = bearer((await signed.json())["access_token"])
    check(await http.get("/api/v1/users/me/devices", headers=guest))
    statuses = {status for *_, status in seen}
    assert {200, 302, 401, 404} <= statuses, seen
