"""The real OpenID provider the OIDC login tests run against (tests/oidc_provider.py):
the whole authorization-code flow with PKCE through its login and consent pages, the
token endpoint with both client authentication methods, RS256 ID tokens that verify
against its JWKS, and the test controls (key rotation, provider down, slow, tampered)."""

from __future__ import annotations

import asyncio
import itertools
import json
import secrets
import time

import aiohttp
import jwt
import pytest

from . import oidc_provider as op
from .oidc_provider import FlowError, exchange_code, parse_forms, pkce_pair, run_code_flow

REDIRECT = "http://127.0.0.1:8765/api/v1/auth/oidc/test/callback"
_n = itertools.count()


def fresh_client(provider, auth_method="client_secret_basic", secret=None) -> dict:
    return provider.add_client(
        f"client-{auth_method}-{next(_n)}",
        secret or secrets.token_urlsafe(24),
        [REDIRECT],
        auth_method=auth_method,
    )


def fresh_account(provider, **claims) -> dict:
    i = next(_n)
    values = {
        "sub": f"sub-{i}-{secrets.token_hex(4)}",
        "email": f"player{i}@example.com",
        "email_verified": True,
        "username": f"player_{i}",
    } | claims
    return provider.add_account(f"player{i}", **values)


async def code_for(provider, client, account, *, scope="openid email profile", **kw):
    """One browser round through the provider: (result, verifier, state, nonce)."""
    verifier, challenge = pkce_pair()
    state, nonce = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    url = provider.authorize_url(
        client["client_id"],
        REDIRECT,
        state=state,
        nonce=nonce,
        code_challenge=challenge,
        scope=scope,
    )
    result = await run_code_flow(url, REDIRECT, login=account["login"], **kw)
    return result, verifier, state, nonce


def verify_id_token(provider, token: str, client: dict) -> dict:
    """What a relying party does: the key by kid from the JWKS, RS256 pinned."""
    kid = jwt.get_unverified_header(token)["kid"]
    key = jwt.PyJWKSet.from_dict(provider.jwks())[kid]
    return jwt.decode(
        token,
        key,
        algorithms=["RS256"],
        audience=client["client_id"],
        issuer=provider.issuer,
        options={"require": ["exp", "iat", "sub", "nonce"]},
    )


async def test_discovery_offers_what_the_login_feature_needs(oidc_provider):
    doc = oidc_provider.discovery()
    assert doc["issuer"] == oidc_provider.issuer
    assert doc["issuer"].startswith("http://127.0.0.1:")
    assert doc["response_types_supported"] == ["code"]
    assert doc["code_challenge_methods_supported"] == ["S256"]
    assert doc["id_token_signing_alg_values_supported"] == ["RS256"]
    assert set(doc["token_endpoint_auth_methods_supported"]) == {
        "client_secret_basic",
        "client_secret_post",
    }
    assert {"openid", "email", "profile", "roles"} <= set(doc["scopes_supported"])
    keys = oidc_provider.jwks()["keys"]
    assert [k["kid"] for k in keys] == oidc_provider.kids
    assert all(k["kty"] == "RSA" and "d" not in k for k in keys)  # public halves only


@pytest.mark.parametrize("auth_method", ["client_secret_basic", "client_secret_post"])
async def test_code_flow_yields_an_rs256_id_token_that_verifies(oidc_provider, auth_method):
    # A secret with characters RFC 6749's form-encoding changes: the basic header is built
    # as the spec says, or the provider refuses it.
    client = fresh_client(oidc_provider, auth_method, secret="s3cr+t/with:odd&chars%" + "x" * 8)
    account = fresh_account(oidc_provider, roles=["admin", "player"])
    result, verifier, state, nonce = await code_for(
        oidc_provider, client, account, scope="openid email profile roles"
    )
    assert result.code and result.state == state
    assert result.params["iss"] == oidc_provider.issuer  # RFC 9207 iss in the response
    assert result.url.startswith(REDIRECT + "?")
    # the browser went through both pages: login, then consent
    posts = [s for s in result.steps if s.startswith("POST ")]
    assert len(posts) == 2, result.steps

    status, body = await exchange_code(oidc_provider, client, result.code, verifier)
    assert status == 200, body
    assert body["token_type"] == "Bearer" and body["access_token"]
    assert jwt.get_unverified_header(body["id_token"])["alg"] == "RS256"
    claims = verify_id_token(oidc_provider, body["id_token"], client)
    assert claims["nonce"] == nonce
    assert claims["sub"] == account["sub"]
    assert claims["email"] == account["email"]
    assert claims["email_verified"] is True
    assert claims["preferred_username"] == account["preferred_username"]
    assert claims["roles"] == ["admin", "player"]


async def test_the_other_auth_method_is_refused(oidc_provider):
    basic = fresh_client(oidc_provider, "client_secret_basic")
    account = fresh_account(oidc_provider)
    result, verifier, _, _ = await code_for(oidc_provider, basic, account)
    as_post = basic | {"token_endpoint_auth_method": "client_secret_post"}
    status, body = await exchange_code(oidc_provider, as_post, result.code, verifier)
    assert status == 401 and body["error"] == "invalid_client"
    wrong = basic | {"client_secret": "not-the-secret"}
    status, body = await exchange_code(oidc_provider, wrong, result.code, verifier)
    assert status == 401 and body["error"] == "invalid_client"


async def test_claims_follow_the_scopes_and_the_account(oidc_provider):
    client = fresh_client(oidc_provider)
    account = fresh_account(oidc_provider, email_verified=False, roles=["player"])
    result, verifier, _, _ = await code_for(oidc_provider, client, account, scope="openid")
    _, body = await exchange_code(oidc_provider, client, result.code, verifier)
    claims = verify_id_token(oidc_provider, body["id_token"], client)
    assert claims["sub"] == account["sub"]
    assert not {"email", "email_verified", "preferred_username", "roles"} & set(claims)

    result, verifier, _, _ = await code_for(oidc_provider, client, account)
    _, body = await exchange_code(oidc_provider, client, result.code, verifier)
    claims = verify_id_token(oidc_provider, body["id_token"], client)
    assert claims["email_verified"] is False
    assert "roles" not in claims  # not asked for

    # A login name nobody set up signs in too: sub is the name, no email.
    stranger = {"login": f"stranger{next(_n)}"}
    result, verifier, _, _ = await code_for(oidc_provider, client, stranger)
    _, body = await exchange_code(oidc_provider, client, result.code, verifier)
    claims = verify_id_token(oidc_provider, body["id_token"], client)
    assert claims["sub"] == stranger["login"]
    assert claims["preferred_username"] == stranger["login"]
    assert "email" not in claims


async def test_a_replayed_code_is_refused(oidc_provider):
    client = fresh_client(oidc_provider)
    result, verifier, _, _ = await code_for(oidc_provider, client, fresh_account(oidc_provider))
    status, body = await exchange_code(oidc_provider, client, result.code, verifier)
    assert status == 200, body
    status, body = await exchange_code(oidc_provider, client, result.code, verifier)
    assert status == 400 and body["error"] == "invalid_grant"


async def test_pkce_is_enforced(oidc_provider):
    client = fresh_client(oidc_provider)
    account = fresh_account(oidc_provider)
    result, _, _, _ = await code_for(oidc_provider, client, account)
    status, body = await exchange_code(oidc_provider, client, result.code, "x" * 50)
    assert status == 400 and body["error"] == "invalid_grant"

    # No challenge: refused at the authorization endpoint, back to the redirect_uri.
    url = oidc_provider.authorize_url(
        client["client_id"], REDIRECT, state="s", nonce="n", code_challenge=None
    )
    result = await run_code_flow(url, REDIRECT, login=account["login"])
    assert result.error == "invalid_request" and result.code is None
    assert result.state == "s"


async def test_a_redirect_uri_must_match_exactly(oidc_provider):
    client = fresh_client(oidc_provider)
    for other in (REDIRECT.replace("127.0.0.1", "localhost"), REDIRECT.replace("8765", "8766")):
        _, challenge = pkce_pair()
        url = oidc_provider.authorize_url(
            client["client_id"], other, state="s", nonce="n", code_challenge=challenge
        )
        with pytest.raises(FlowError) as caught:
            await run_code_flow(url, other, login="anyone")
        # an error page at the provider, no redirect to an unregistered URI
        assert caught.value.status == 400
        assert "error : invalid_redirect_uri" in caught.value.text
        assert "redirect_uri did not match" in caught.value.text


async def test_declined_consent_redirects_with_access_denied(oidc_provider):
    client = fresh_client(oidc_provider)
    result, _, state, _ = await code_for(
        oidc_provider, client, fresh_account(oidc_provider), consent=False
    )
    assert result.error == "access_denied" and result.code is None
    assert result.state == state


async def test_a_second_flow_in_the_same_browser_skips_both_pages(oidc_provider):
    client = fresh_client(oidc_provider)
    account = fresh_account(oidc_provider)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
        first, _, _, _ = await code_for(oidc_provider, client, account, session=browser)
        second, verifier, _, nonce = await code_for(oidc_provider, client, account, session=browser)
    assert sum(s.startswith("POST ") for s in first.steps) == 2
    assert not any(s.startswith("POST ") for s in second.steps), second.steps
    _, body = await exchange_code(oidc_provider, client, second.code, verifier)
    assert verify_id_token(oidc_provider, body["id_token"], client)["nonce"] == nonce


async def test_key_rotation_publishes_the_new_kid_then_drops_the_old(oidc_provider):
    client = fresh_client(oidc_provider)
    account = fresh_account(oidc_provider)
    result, verifier, _, _ = await code_for(oidc_provider, client, account)
    _, body = await exchange_code(oidc_provider, client, result.code, verifier)
    old_token = body["id_token"]
    old_kid = jwt.get_unverified_header(old_token)["kid"]
    assert old_kid == oidc_provider.kids[0]

    new_kid = oidc_provider.rotate_key()
    published = [k["kid"] for k in oidc_provider.jwks()["keys"]]
    assert new_kid != old_kid and published[0] == new_kid and old_kid in published
    verify_id_token(oidc_provider, old_token, client)  # still verifiable

    result, verifier, _, _ = await code_for(oidc_provider, client, account)
    _, body = await exchange_code(oidc_provider, client, result.code, verifier)
    assert jwt.get_unverified_header(body["id_token"])["kid"] == new_kid
    verify_id_token(oidc_provider, body["id_token"], client)

    oidc_provider.retire_old_keys()
    assert [k["kid"] for k in oidc_provider.jwks()["keys"]] == [new_kid]
    with pytest.raises(KeyError):
        verify_id_token(oidc_provider, old_token, client)

    newest = oidc_provider.rotate_key(drop_old=True)
    assert [k["kid"] for k in oidc_provider.jwks()["keys"]] == [newest]


async def test_a_stopped_provider_refuses_connections_and_comes_back(oidc_provider):
    client = fresh_client(oidc_provider)
    account = fresh_account(oidc_provider)
    result, verifier, _, _ = await code_for(oidc_provider, client, account)
    kids = oidc_provider.kids

    oidc_provider.stop()
    async with aiohttp.ClientSession() as s:
        with pytest.raises(aiohttp.ClientConnectorError):
            await s.get(oidc_provider.discovery_url)
    with pytest.raises(aiohttp.ClientConnectorError):
        await exchange_code(oidc_provider, client, result.code, verifier)

    oidc_provider.start()
    # Same issuer, keys, clients and accounts; the codes it held in memory are gone.
    assert oidc_provider.discovery()["issuer"] == oidc_provider.issuer
    assert [k["kid"] for k in oidc_provider.jwks()["keys"]] == kids
    status, body = await exchange_code(oidc_provider, client, result.code, verifier)
    assert status == 400 and body["error"] == "invalid_grant"
    result, verifier, _, _ = await code_for(oidc_provider, client, account)
    status, body = await exchange_code(oidc_provider, client, result.code, verifier)
    assert status == 200, body


async def test_a_slow_provider_holds_the_token_endpoint(oidc_provider):
    client = fresh_client(oidc_provider)
    result, verifier, _, _ = await code_for(oidc_provider, client, fresh_account(oidc_provider))
    oidc_provider.set_delay(1, path="/token")
    began = time.monotonic()
    with pytest.raises(asyncio.TimeoutError):
        await exchange_code(oidc_provider, client, result.code, verifier, request_timeout=0.3)
    assert time.monotonic() - began < 0.9
    # only the path asked for is held: discovery answers at once
    assert oidc_provider.discovery()["issuer"] == oidc_provider.issuer
    await asyncio.sleep(1.5 - (time.monotonic() - began))  # past the held request's release
    oidc_provider.set_delay(0)
    # the request given up on was dropped, never redeemed: the code still works, once
    status, body = await exchange_code(oidc_provider, client, result.code, verifier)
    assert status == 200, body


@pytest.mark.parametrize(
    ("tamper", "error"),
    [
        ({"claims": {"aud": "someone-else"}}, jwt.InvalidAudienceError),
        ({"claims": {"iss": "http://127.0.0.1:1"}}, jwt.InvalidIssuerError),
        ({"claims": {"exp": 1_000_000_000}}, jwt.ExpiredSignatureError),
        ({"claims": {"nonce": None}}, jwt.MissingRequiredClaimError),
        ({"unknown_key": True}, KeyError),
        ({"header": {"alg": "none"}}, jwt.InvalidAlgorithmError),
        ({"header": {"alg": "HS256"}, "hmac_secret": "a-secret"}, jwt.InvalidAlgorithmError),
    ],
)
async def test_a_tampered_id_token_fails_verification(oidc_provider, tamper, error):
    client = fresh_client(oidc_provider)
    account = fresh_account(oidc_provider)
    result, verifier, _, _ = await code_for(oidc_provider, client, account)
    oidc_provider.tamper_next_id_token(
        tamper.get("claims"),
        header=tamper.get("header"),
        unknown_key=tamper.get("unknown_key", False),
        hmac_secret=tamper.get("hmac_secret"),
    )
    status, body = await exchange_code(oidc_provider, client, result.code, verifier)
    assert status == 200, body
    with pytest.raises(error):
        verify_id_token(oidc_provider, body["id_token"], client)

    # one-shot: the next token is genuine again
    result, verifier, _, _ = await code_for(oidc_provider, client, account)
    _, body = await exchange_code(oidc_provider, client, result.code, verifier)
    verify_id_token(oidc_provider, body["id_token"], client)


async def test_a_tampered_token_keeps_the_real_signature_when_only_claims_change(oidc_provider):
    # The control re-signs with the provider's own key: only the claim check catches it.
    client = fresh_client(oidc_provider)
    result, verifier, _, _ = await code_for(oidc_provider, client, fresh_account(oidc_provider))
    oidc_provider.tamper_next_id_token({"nonce": "not-the-nonce"})
    _, body = await exchange_code(oidc_provider, client, result.code, verifier)
    claims = verify_id_token(oidc_provider, body["id_token"], client)
    assert claims["nonce"] == "not-the-nonce"


async def test_a_provider_configured_at_start(tmp_path):
    """Clients and accounts given before start(); the spec's default of scope claims only
    from userinfo (conform_id_token_claims); a short code lifetime. oidc-provider counts
    expiry in whole seconds (exp = floor(now) + ttl), so a ttl of 1 lives 0 to 1 s: 3 s
    leaves the first exchange at least 2 s."""
    provider = op.OidcProvider(tmp_path, conform_id_token_claims=True, ttl={"AuthorizationCode": 3})
    client = provider.add_client("early", "early-secret", [REDIRECT])
    account = provider.add_account("early", sub="e-1", email="e@example.com", email_verified=True)
    provider.start()
    try:
        assert provider.started_in < 10
        result, verifier, _, _ = await code_for(provider, client, account)
        status, body = await exchange_code(provider, client, result.code, verifier)
        assert status == 200, body
        claims = verify_id_token(provider, body["id_token"], client)
        assert claims["sub"] == "e-1" and "email" not in claims
        async with aiohttp.ClientSession() as s:
            userinfo = provider.discovery()["userinfo_endpoint"]
            headers = {"Authorization": f"Bearer {body['access_token']}"}
            async with s.get(userinfo, headers=headers) as resp:
                assert resp.status == 200
                assert await resp.json() == {
                    "sub": "e-1",
                    "email": "e@example.com",
                    "email_verified": True,
                }

        result, verifier, _, _ = await code_for(provider, client, account)
        await asyncio.sleep(3.1)
        status, body = await exchange_code(provider, client, result.code, verifier)
        assert status == 400 and body["error"] == "invalid_grant"  # expired
    finally:
        provider.stop()
    assert not provider.running


def test_the_login_and_consent_pages_parse_as_forms():
    page = """<form autocomplete="off" action="/interaction/abc" method="post">
      <input type="hidden" name="prompt" value="login"/>
      <input required type="text" name="login" placeholder="Enter any login">
      <input type="checkbox" name="remember">
      <button type="submit" class="login login-submit">Sign-in</button></form>
      <form action="/other"><input name="q" value="1"></form>"""
    forms = parse_forms(page)
    assert forms[0] == {
        "action": "/interaction/abc",
        "method": "post",
        "fields": {"prompt": "login", "login": ""},
    }
    assert forms[1] == {"action": "/other", "method": "get", "fields": {"q": "1"}}


def test_a_missing_install_fails_loudly(tmp_path, monkeypatch):
    monkeypatch.setattr(op, "HERE", tmp_path)
    (tmp_path / "package.json").write_text(json.dumps({"dependencies": {"oidc-provider": "8.8.1"}}))
    with pytest.raises(RuntimeError, match=r"npm ci --prefix tests/oidc_provider"):
        op.OidcProvider(tmp_path / "p").start()

    installed = tmp_path / "node_modules" / "oidc-provider"
    installed.mkdir(parents=True)
    (installed / "package.json").write_text(json.dumps({"version": "7.0.0"}))
    with pytest.raises(RuntimeError, match=r"7\.0\.0 is installed but package.json pins 8\.8\.1"):
        op.OidcProvider(tmp_path / "p").start()

    monkeypatch.setattr(op.shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match=r"node not found.*npm ci --prefix tests/oidc_provider"):
        op.OidcProvider(tmp_path / "p").start()


def test_the_pinned_version_is_installed():
    pinned = json.loads((op.HERE / "package.json").read_text())["dependencies"]["oidc-provider"]
    lock = json.loads((op.HERE / "package-lock.json").read_text())
    assert lock["packages"]["node_modules/oidc-provider"]["version"] == pinned
    op._check_installed()
