"""Keycloak tokens against a real local issuer: discovery, JWKS, rotation, attacks."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time

import pytest
from cryptography.hazmat.primitives import serialization

from authsvc.appkeys import ACCOUNTS, AUTHENTICATOR, RBAC

from .helpers import error_of
from .keycloak_issuer import CLIENT, Issuer


@pytest.fixture
async def issuer(aiohttp_server):
    kc = Issuer()
    server = await aiohttp_server(kc.app())
    kc.base = str(server.make_url("")).rstrip("/")
    return kc


@pytest.fixture
async def kc_client(make_client, issuer):
    async def make(**overrides):
        settings = {"jwks_min_refresh_interval": 30} | overrides
        return await make_client(
            keycloak_issuer=issuer.issuer, keycloak_client_id=CLIENT, **settings
        )

    return make


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


async def test_a_keycloak_user_is_upserted_and_synced(kc_client, issuer, store):
    http = await kc_client()
    sub = "6f1c1a52-93a4-4c0e-9d8c-0b6b1f3e1c11"
    resp = await http.get("/api/v1/users/me", headers=bearer(issuer.token(sub=sub)))
    assert resp.status == 200, await resp.text()
    me = await resp.json()
    assert me["id"] == sub and me["kind"] == "keycloak" and me["email"] == "kc@example.com"
    record = await store.hgetall(f"user:{{{sub}}}")
    assert record["display_name"] == "kc_user" and record["created_at"] == record["updated_at"]
    await asyncio.sleep(0.002)
    token = issuer.token(sub=sub, email="new@example.com", preferred_username="renamed")
    me2 = await (await http.get("/api/v1/users/me", headers=bearer(token))).json()
    assert me2["email"] == "new@example.com" and me2["display_name"] == "renamed"
    assert me2["created_at"] == me["created_at"] and me2["updated_at"] != me["updated_at"]


async def test_roles_come_from_realm_and_client_access(kc_client, issuer):
    plain = await kc_client()
    token = issuer.token()
    assert (await plain.get("/api/v1/admin/users", headers=bearer(token))).status == 403
    mapped = await kc_client(keycloak_role_mapping=("player=manager",))
    assert (await mapped.get("/api/v1/admin/users", headers=bearer(token))).status == 200
    # Another client's roles do not count.
    other = issuer.token(resource_access={"account": {"roles": ["player"]}})
    assert (await mapped.get("/api/v1/admin/users", headers=bearer(other))).status == 403


async def test_unmapped_token_roles_give_nothing_even_when_named_admin(kc_client, issuer, store):
    """Default deny: the identity provider's `admin` is not ours. Only roles that
    KEYCLOAK_ROLE_MAPPING names become local roles."""
    http = await kc_client(keycloak_role_mapping=("player=guest",))
    attacker = "7a0c3b1e-0d4f-4a51-9b7e-2f3a4b5c6d7e"
    victim = "1b2c3d4e-5f60-4718-8a9b-0c1d2e3f4a5b"
    forged_roles = {
        "realm_access": {"roles": ["admin", "manager", "service", "offline_access"]},
        "resource_access": {CLIENT: {"roles": ["admin", "player"]}},
    }
    token = issuer.token(sub=attacker, **forged_roles)
    me = bearer(token)
    assert (await http.get("/api/v1/users/me", headers=me)).status == 200
    for method, path, body in (
        ("GET", "/api/v1/admin/users", None),
        ("GET", "/api/v1/admin/roles", None),
        ("POST", f"/api/v1/admin/users/{victim}/roles", {"role": "admin"}),
        ("POST", f"/api/v1/admin/users/{attacker}/roles", {"role": "admin"}),
        ("POST", "/api/v1/tokens/introspect", {"token": token}),
    ):
        resp = await http.request(method, path, json=body, headers=me)
        assert resp.status == 403, (method, path, await resp.text())
    assert await store.smembers(f"user:{{{victim}}}:roles") == set()
    assert await store.smembers(f"user:{{{attacker}}}:roles") == set()
    # What the caller holds: the default role and the mapped `guest`, nothing named in
    # the token.
    authz = http.app[RBAC]
    principal = await http.app[AUTHENTICATOR].verify_token(token)
    assert await authz.roles_of(principal) == {"user", "guest"}
    # An operator who wants the provider's admins to be admins says so.
    mapped = await kc_client(keycloak_role_mapping=("admin=admin",))
    assert (await mapped.get("/api/v1/admin/users", headers=me)).status == 200


async def test_a_keycloak_user_holding_admin_locally_is_guarded_as_the_last_admin(
    kc_client, issuer
):
    http = await kc_client()
    local = {"username": "kc_guard_a", "email": "kcga@x.io", "password": "admin password"}
    acc = await http.app[ACCOUNTS].register(**local, roles=("admin", "user"))
    login = await (
        await http.post(
            "/login", json={"username": local["username"], "password": local["password"]}
        )
    ).json()
    admin = bearer(login["token"])
    sub = "5e6f7a8b-9c0d-4e1f-8a2b-3c4d5e6f7a8b"
    kc = bearer(issuer.token(sub=sub))
    assert (await http.get("/api/v1/users/me", headers=kc)).status == 200
    resp = await http.post(
        f"/api/v1/admin/users/{sub}/roles", json={"role": "admin"}, headers=admin
    )
    assert resp.status == 200
    # The Keycloak user, admin through the store, disables the only other admin...
    assert (await http.post(f"/api/v1/admin/users/{acc['id']}/disable", headers=kc)).status == 200
    # ...and is now the last holder of `*`: they cannot leave, nor drop it.
    resp = await http.delete("/api/v1/users/me", headers=kc)
    assert resp.status == 409 and (await error_of(resp))["code"] == "last_admin"
    resp = await http.delete(f"/api/v1/admin/users/{sub}/roles/admin", headers=kc)
    assert resp.status == 409 and (await error_of(resp))["code"] == "self_lockout"
    assert (await http.post(f"/api/v1/admin/users/{acc['id']}/enable", headers=kc)).status == 200
    assert (await http.delete("/api/v1/users/me", headers=kc)).status == 204


async def test_issuer_audience_and_time_checks(kc_client, issuer):
    http = await kc_client()
    now = int(time.time())
    assert (
        await http.get("/api/v1/users/me", headers=bearer(issuer.token(azp="other", aud=CLIENT)))
    ).status == 200  # aud names us
    for bad in (
        issuer.token(azp="other", aud="account"),
        issuer.token(azp="other", aud=None),
        issuer.token(iss=issuer.issuer + "/"),
        issuer.token(exp=now - 120, iat=now - 600),
        issuer.token(iat=now + 600),
        issuer.token(sub="12345"),
    ):  # would collide with local account ids
        resp = await http.get("/api/v1/users/me", headers=bearer(bad))
        assert resp.status == 401
        assert 'error="invalid_token"' in resp.headers["WWW-Authenticate"]


async def test_hs256_and_none_claiming_the_keycloak_issuer_are_refused(kc_client, issuer):
    http = await kc_client()
    ok = issuer.token()
    assert (await http.get("/api/v1/users/me", headers=bearer(ok))).status == 200
    kid = issuer.keys[-1][0]
    claims = json.loads(base64.urlsafe_b64decode(ok.split(".")[1] + "=="))
    pem = (
        issuer.keys[-1][1]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    # The classic confusion: HS256 with the issuer's public key as the HMAC secret.
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
    body = b64(json.dumps(claims).encode())
    sig = b64(hmac.new(pem, f"{head}.{body}".encode(), hashlib.sha256).digest())
    none_head = b64(json.dumps({"alg": "none", "kid": kid}).encode())
    for forged in (
        f"{head}.{body}.{sig}",
        f"{none_head}.{body}.",
        issuer.token(alg="HS256", key="s" * 64),
    ):
        resp = await http.get("/api/v1/users/me", headers=bearer(forged))
        assert resp.status == 401, forged[:20]


async def test_key_rotation_and_a_flood_of_bogus_kids(kc_client, issuer):
    http = await kc_client()
    assert (await http.get("/api/v1/users/me", headers=bearer(issuer.token()))).status == 200
    assert issuer.jwks_hits == 1
    # A flood of unknown kids: at most one refetch per JWKS_MIN_REFRESH_INTERVAL.
    for i in range(40):
        resp = await http.get("/api/v1/users/me", headers=bearer(issuer.token(kid=f"bogus{i}")))
        assert resp.status == 401
    assert issuer.jwks_hits <= 2


async def test_rotation_is_picked_up_with_one_refetch(kc_client, issuer):
    http = await kc_client(jwks_min_refresh_interval=0)
    assert (await http.get("/api/v1/users/me", headers=bearer(issuer.token()))).status == 200
    hits = issuer.jwks_hits
    issuer.rotate()  # Keycloak publishes a new key and signs with it
    assert (await http.get("/api/v1/users/me", headers=bearer(issuer.token()))).status == 200
    assert issuer.jwks_hits == hits + 1


async def test_a_cached_token_dies_with_its_key(kc_client, issuer):
    """The verified-token cache must not outlive the key: once a JWKS refresh no longer
    lists the kid that verified a token, the token is refused, cached or not."""
    http = await kc_client(jwks_min_refresh_interval=0)
    old_kid = issuer.keys[-1][0]
    old = bearer(issuer.token(sub="3c4d5e6f-7a8b-4c9d-8e0f-1a2b3c4d5e6f"))
    assert (await http.get("/api/v1/users/me", headers=old)).status == 200  # now cached
    assert (await http.get("/api/v1/users/me", headers=old)).status == 200
    issuer.rotate()
    issuer.retire(old_kid)  # Keycloak withdraws the old key
    # A token of the new key forces the refresh (an unknown kid)...
    assert (await http.get("/api/v1/users/me", headers=bearer(issuer.token()))).status == 200
    # ...and the old token, verified and cached before, is refused from then on.
    resp = await http.get("/api/v1/users/me", headers=old)
    assert resp.status == 401, await resp.text()
    assert "key the issuer does not publish" in (await error_of(resp))["message"]
    intro = http.app[AUTHENTICATOR]
    with pytest.raises(Exception, match="does not publish"):
        await intro.verify_token(old["Authorization"][7:])


async def test_a_withdrawn_key_is_noticed_while_every_request_hits_the_cache(kc_client, issuer):
    http = await kc_client(jwks_min_refresh_interval=0, jwks_cache_ttl=1)
    old_kid = issuer.keys[-1][0]
    old = bearer(issuer.token())
    assert (await http.get("/api/v1/users/me", headers=old)).status == 200
    hits = issuer.jwks_hits
    issuer.rotate()
    issuer.retire(old_kid)
    await asyncio.sleep(1.1)  # the keys are due for a refresh; no request misses
    deadline = time.monotonic() + 3
    while (await http.get("/api/v1/users/me", headers=old)).status == 200:
        assert time.monotonic() < deadline, "a token of a withdrawn key is still accepted"
        await asyncio.sleep(0.02)
    # One background refresh (not one per hit), then the refused token's own miss:
    # its kid is unknown now, which may refetch (JWKS_MIN_REFRESH_INTERVAL is 0 here).
    assert issuer.jwks_hits <= hits + 2


async def test_a_cached_token_whose_key_stays_is_not_verified_again(kc_client, issuer):
    http = await kc_client(jwks_min_refresh_interval=0)
    token = bearer(issuer.token())
    assert (await http.get("/api/v1/users/me", headers=token)).status == 200
    issuer.rotate()  # a new key beside the old one: nothing withdrawn
    assert (await http.get("/api/v1/users/me", headers=bearer(issuer.token()))).status == 200
    hits = issuer.jwks_hits
    for _ in range(20):
        assert (await http.get("/api/v1/users/me", headers=token)).status == 200
    assert issuer.jwks_hits == hits


async def test_keycloak_down_keeps_cached_keys_working(kc_client, issuer):
    http = await kc_client(jwks_min_refresh_interval=0, jwks_cache_ttl=1)
    token = issuer.token()
    assert (await http.get("/api/v1/users/me", headers=bearer(token))).status == 200
    issuer.down = True
    await asyncio.sleep(1.1)  # the cache is stale now, and the refresh fails
    fresh = issuer.token(sub="0d7c3f0e-1111-4222-8333-444455556666")
    assert (await http.get("/api/v1/users/me", headers=bearer(fresh))).status == 200
    unknown = issuer.token(kid="new-key-while-down")
    assert (await http.get("/api/v1/users/me", headers=bearer(unknown))).status == 401


async def test_keycloak_off_refuses_keycloak_tokens(http, issuer):
    resp = await http.get("/api/v1/users/me", headers=bearer(issuer.token()))
    assert resp.status == 401
    assert "issuer" in (await error_of(resp))["message"]


async def test_keycloak_users_have_no_game_account_and_can_be_introspected(kc_client, issuer):
    http = await kc_client()
    token = issuer.token()
    resp = await http.get("/characters", headers=bearer(token))
    assert resp.status == 403 and "local account" in (await error_of(resp))["message"]
    owner = {"username": "svc_kc", "email": "svc@x.io", "password": "service password"}
    await http.app[ACCOUNTS].register(**owner, roles=("service", "user"))
    login = await (
        await http.post("/login", json={"username": "svc_kc", "password": "service password"})
    ).json()
    key = await (
        await http.post(
            "/api/v1/users/me/api-keys",
            headers=bearer(login["token"]),
            json={"name": "v", "scopes": ["tokens:introspect"]},
        )
    ).json()
    resp = await http.post(
        "/api/v1/tokens/introspect", headers={"X-API-Key": key["key"]}, json={"token": token}
    )
    info = await resp.json()
    assert info["active"] is True and info["iss"] == issuer.issuer
    assert info["client_id"] == CLIENT
