"""Helpers of the sign-in tests: an app with SECRETS_KEY and an allow-list, an admin, a
provider registered on both sides (the real OpenID provider and authsvc), and a
browser that goes authorize -> the provider's pages -> callback."""

from __future__ import annotations

import itertools
import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

from authsvc.appkeys import ACCOUNTS

from .helpers import login, new_user
from .oidc_provider import FlowResult, run_code_flow

SECRETS_KEY = "k" * 43  # 32 bytes as base64url
PUBLIC_URL = "http://127.0.0.1:8765"
APP_RETURN = "https://game.example/after-login"
_n = itertools.count()


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def sign_in_settings(**overrides) -> dict:
    return {
        "secrets_key": SECRETS_KEY,
        "public_url": PUBLIC_URL,
        "oidc_redirect_allowlist": ("https://game.example/after-login", "mygame:/signed-in"),
        "oidc_http_timeout": 2.0,
    } | overrides


async def make_admin(http) -> tuple[dict, dict]:
    user = new_user("admin")
    acc = await http.app[ACCOUNTS].register(**user, roles=("admin", "user"), email_verified=True)
    return user | {"id": acc["id"]}, bearer(await login(http, user))


def callback_uri(slug: str) -> str:
    return f"{PUBLIC_URL}/api/v1/auth/oidc/{slug}/callback"


@dataclass
class Registered:
    slug: str
    client: dict  # as the provider knows it (tests.oidc_provider.add_client)
    view: dict  # as authsvc answered its creation


async def add_provider(
    http, admin: dict, provider, *, auth_method="client_secret_basic", **fields
) -> Registered:
    """A fresh client at the real provider and the matching provider in authsvc."""
    slug = fields.pop("slug", f"op{next(_n)}-{secrets.token_hex(2)}")
    client = provider.add_client(
        f"authsvc-{slug}",
        "s3cr+t/" + secrets.token_urlsafe(16),  # characters the form-encoding changes
        [callback_uri(slug)],
        auth_method=auth_method,
    )
    body = {
        "slug": slug,
        "name": f"Provider {slug}",
        "issuer": provider.issuer,
        "client_id": client["client_id"],
        "client_secret": client["client_secret"],
        "auto_register": True,
        "scopes": ["openid", "email", "profile", "roles"],
    } | fields
    resp = await http.post("/api/v1/admin/oidc/providers", json=body, headers=admin)
    assert resp.status == 201, await resp.text()
    return Registered(slug, client, await resp.json())


def fresh_account(provider, **claims) -> dict:
    i = next(_n)
    values = {
        "sub": f"sub-{i}-{secrets.token_hex(4)}",
        "email": f"player{i}.{secrets.token_hex(2)}@example.com",
        "email_verified": True,
        "username": f"player_{i}",
    } | claims
    return provider.add_account(f"player{i}-{secrets.token_hex(2)}", **values)


def local_path(url: str) -> str:
    """The callback URL the provider sent the browser to, as a path for the test client."""
    parts = urlsplit(url)
    return parts.path + ("?" + parts.query if parts.query else "")


async def start(http, slug: str, *, redirect_to: str | None = None, headers=None) -> str:
    """GET authorize through the test client (its cookie jar keeps the binding cookie);
    the provider URL it redirects to."""
    params = {"redirect_to": redirect_to} if redirect_to else {}
    resp = await http.get(
        f"/api/v1/auth/oidc/{slug}/authorize",
        params=params,
        allow_redirects=False,
        headers=headers,
    )
    assert resp.status == 302, await resp.text()
    return resp.headers["Location"]


async def at_provider(url: str, slug: str, account: dict, **kw) -> FlowResult:
    """The browser at the provider: its login and consent pages, until it is sent back."""
    return await run_code_flow(url, callback_uri(slug), login=account["login"], **kw)


async def sign_in(http, slug: str, account: dict, *, redirect_to: str | None = None):
    """The whole flow; the callback's response (not followed)."""
    url = await start(http, slug, redirect_to=redirect_to)
    result = await at_provider(url, slug, account)
    assert result.code, result.params
    return await http.get(local_path(result.url), allow_redirects=False)
