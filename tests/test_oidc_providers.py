"""OIDC providers as data: administration (a permission of its own, held by admin), the
public list, the client secret sealed at rest and never shown, and its re-sealing under
a new SECRETS_KEY by `authsvc rotate-secrets-key`."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys

import pytest

from authsvc.appkeys import AUDIT
from authsvc.http.docs import permission_table
from authsvc.platform import crypto

from .helpers import error_of, register, user_with_token
from .oidc_helpers import SECRETS_KEY, add_provider, make_admin, sign_in, sign_in_settings

ADMIN = "/api/v1/admin/oidc/providers"
BASE = {
    "slug": "steam",
    "name": "Steam",
    "issuer": "https://id.example.com/realms/game",
    "client_id": "authsvc",
    "client_secret": "a-secret-nobody-sees-%+",
}


@pytest.fixture
async def http(make_client):
    return await make_client(**sign_in_settings())


async def _all_text(store) -> str:
    """Everything the store holds, as text (to look for a secret in it)."""
    parts = []
    async for key in store.scan_iter(count=1000):
        kind = await store.type(key)
        if kind == "string":
            parts.append(await store.get(key))
        elif kind == "hash":
            parts.append(json.dumps(await store.hgetall(key)))
        elif kind == "stream":
            parts.append(json.dumps(await store.xrange(key)))
        elif kind == "zset":
            parts.append(json.dumps(await store.zrange(key, 0, -1)))
    return "\n".join(p for p in parts if p)


async def test_administration_round_trip_and_the_secret_is_write_only(http, store):
    _, admin = await make_admin(http)
    resp = await http.post(ADMIN, json=BASE, headers=admin)
    assert resp.status == 201, await resp.text()
    assert resp.headers["Location"] == f"{ADMIN}/steam"
    created = await resp.json()
    assert created | {"created_at": None, "updated_at": None} == {
        "slug": "steam",
        "name": "Steam",
        "issuer": BASE["issuer"],
        "client_id": "authsvc",
        "client_secret_set": True,
        "scopes": ["openid", "email", "profile"],
        "auto_register": False,
        "enabled": True,
        "username_claim": "preferred_username",
        "email_claim": "email",
        "roles_claim": "roles",
        "role_mapping": {},
        "token_auth_method": "auto",
        "redirect_uri": "http://127.0.0.1:8765/api/v1/auth/oidc/steam/callback",
        "created_at": None,
        "updated_at": None,
    }
    assert (await (await http.get(f"{ADMIN}/steam", headers=admin)).json()) == created
    listed = await (await http.get(ADMIN, headers=admin)).json()
    assert listed == {"providers": [created]}

    patch = {
        "name": "Steam (new)",
        "client_secret": "the-next-secret",
        "scopes": ["email"],
        "role_mapping": {"vip": "manager"},
        "auto_register": True,
    }
    resp = await http.patch(f"{ADMIN}/steam", json=patch, headers=admin)
    assert resp.status == 200, await resp.text()
    changed = await resp.json()
    assert changed["name"] == "Steam (new)" and changed["scopes"] == ["openid", "email"]
    assert changed["role_mapping"] == {"vip": "manager"} and changed["auto_register"]
    assert changed["created_at"] == created["created_at"]

    # Sealed at rest: neither secret appears anywhere in the store (audit trail included),
    # and the stored value opens under SECRETS_KEY, bound to this provider.
    await http.app[AUDIT].flush()
    everything = await _all_text(store)
    assert BASE["client_secret"] not in everything and "the-next-secret" not in everything
    record = json.loads(await store.hget("oidc:providers", "steam"))
    box = crypto.SecretBox.from_text(SECRETS_KEY)
    assert record["client_secret"].startswith(f"v1.{box.current_key_id}.")
    opened = box.open(record["client_secret"], context="oidc-provider:steam:client_secret")
    assert opened == "the-next-secret"
    actions = [f["action"] for _, f in await store.xrange("audit:events")]
    assert {"oidc_provider_created", "oidc_provider_updated"} <= set(actions)

    assert (await http.delete(f"{ADMIN}/steam", headers=admin)).status == 204
    assert (await http.get(f"{ADMIN}/steam", headers=admin)).status == 404
    assert (await http.delete(f"{ADMIN}/steam", headers=admin)).status == 404
    assert (await http.patch(f"{ADMIN}/steam", json={"name": "x"}, headers=admin)).status == 404


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("issuer", "http://id.example.com"),  # plain http off loopback
        ("issuer", "https://id.example.com?x=1"),
        ("issuer", "https://user@id.example.com"),
        ("issuer", "ftp://id.example.com"),
        ("issuer", "https://id.example.com:65536"),  # no such port
        ("issuer", "https://id.example.com:0"),
        ("slug", "Has-Caps"),
        ("slug", "a" * 33),
        ("scopes", ["with space"]),
        ("token_auth_method", "private_key_jwt"),
        ("role_mapping", {"x": "Not A Role"}),
        ("client_secret", ""),
    ],
)
async def test_bad_providers_are_refused(http, field, value):
    _, admin = await make_admin(http)
    resp = await http.post(ADMIN, json=BASE | {field: value}, headers=admin)
    assert resp.status == 422, await resp.text()
    assert any(f.split(".")[0] == field for f in (await error_of(resp))["fields"])


async def test_loopback_http_is_allowed_and_a_slug_is_unique(http):
    _, admin = await make_admin(http)
    for issuer in ("http://127.0.0.1:9999", "http://localhost:1/realms/x", "http://[::1]:65535"):
        slug = f"dev{len(issuer)}"
        resp = await http.post(ADMIN, json=BASE | {"slug": slug, "issuer": issuer}, headers=admin)
        assert resp.status == 201, await resp.text()
    resp = await http.post(ADMIN, json=BASE | {"slug": "dev21"}, headers=admin)
    assert resp.status == 409 and (await error_of(resp))["fields"] == {"slug": ["Taken."]}


async def test_only_oidc_manage_may_administer(http):
    _, user = await user_with_token(http)
    for method, path in (("GET", ADMIN), ("POST", ADMIN), ("GET", ADMIN + "/x")):
        resp = await http.request(method, path, json=BASE, headers=user)
        assert resp.status == 403, (method, path)
        assert "oidc:manage" in (await error_of(resp))["message"]
    _, admin = await make_admin(http)
    role = {"name": "idp_admin", "permissions": ["oidc:manage"]}
    assert (await http.post("/api/v1/admin/roles", json=role, headers=admin)).status == 201
    user_row, token = await user_with_token(http)
    grant = await http.post(
        f"/api/v1/admin/users/{user_row['id']}/roles", json={"role": "idp_admin"}, headers=admin
    )
    assert grant.status == 200
    assert (await http.get(ADMIN, headers=token)).status == 200
    assert "| GET | `/api/v1/admin/oidc/providers` | `oidc:manage` |" in permission_table()


async def test_without_secrets_key_no_provider_can_be_stored(make_client):
    http = await make_client(**sign_in_settings(secrets_key=""))
    _, admin = await make_admin(http)
    resp = await http.post(ADMIN, json=BASE, headers=admin)
    assert resp.status == 409
    assert (await error_of(resp))["code"] == "secrets_key_missing"


async def test_the_public_list_shows_enabled_providers_by_slug_and_name(http):
    _, admin = await make_admin(http)
    for slug, enabled in (("b-on", True), ("a-on", True), ("off", False)):
        body = BASE | {"slug": slug, "name": slug.upper(), "enabled": enabled}
        assert (await http.post(ADMIN, json=body, headers=admin)).status == 201
    resp = await http.get("/api/v1/auth/oidc/providers")  # no login
    assert resp.status == 200
    assert await resp.json() == {
        "providers": [{"slug": "a-on", "name": "A-ON"}, {"slug": "b-on", "name": "B-ON"}]
    }
    # A disabled provider cannot be used to sign in.
    assert (await http.get("/api/v1/auth/oidc/off/authorize", allow_redirects=False)).status == 404


async def test_rotate_secrets_key_reseals_every_secret(
    make_client, store, redis_server, oidc_provider
):
    old_http = await make_client(**sign_in_settings())
    _, admin = await make_admin(old_http)
    first = await add_provider(old_http, admin, oidc_provider)
    second = await add_provider(
        old_http,
        admin,
        oidc_provider,
        auth_method="client_secret_post",
        token_auth_method="client_secret_post",
    )
    new_key_text = secrets.token_urlsafe(32)
    env = {
        **os.environ,
        "KEYDB_URL": redis_server.url,
        "SECRETS_KEY": new_key_text,
        "SECRETS_PREVIOUS_KEYS": SECRETS_KEY,
    }
    if os.environ.get("AUTHSVC_TEST_CLUSTER"):
        env["KEYDB_CLUSTER"] = "true"
    argv = [sys.executable, "-m", "authsvc", "rotate-secrets-key"]
    done = await asyncio.to_thread(subprocess.run, argv, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    kid = crypto.SecretBox.from_text(new_key_text).current_key_id
    assert f"re-sealed 2 secrets under key {kid}; 0 were under it already" in done.stdout
    again = await asyncio.to_thread(subprocess.run, argv, env=env, capture_output=True, text=True)
    assert "re-sealed 0 secrets" in again.stdout and "2 were under it already" in again.stdout

    for reg in (first, second):
        record = json.loads(await store.hget("oidc:providers", reg.slug))
        assert record["client_secret"].startswith(f"v1.{kid}.")
    # A service that knows only the new key signs people in through both.
    new_http = await make_client(**sign_in_settings(secrets_key=new_key_text))
    for reg in (first, second):
        account = oidc_provider.add_account(f"rot-{reg.slug}", sub=f"rot-{reg.slug}")
        resp = await sign_in(new_http, reg.slug, account)
        assert resp.status == 200, await resp.text()

    # Without the old key the command says which key it lacks.
    env["SECRETS_PREVIOUS_KEYS"] = ""
    env["SECRETS_KEY"] = SECRETS_KEY
    done = await asyncio.to_thread(subprocess.run, argv, env=env, capture_output=True, text=True)
    assert done.returncode == 1 and f"sealed under key {kid}" in done.stderr


async def test_a_user_cannot_see_the_secret_even_through_the_public_routes(http):
    _, admin = await make_admin(http)
    assert (await http.post(ADMIN, json=BASE, headers=admin)).status == 201
    await register(http)
    text = await (await http.get("/api/v1/auth/oidc/providers")).text()
    assert BASE["client_secret"] not in text and "client_id" not in text
