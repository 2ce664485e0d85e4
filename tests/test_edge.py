"""What every answer carries at the edge: security headers, caching, the JSON error
shape even for requests aiohttp cannot parse, and the access log."""

from __future__ import annotations

from authsvc.app_keys import SERVICES

from .helpers import register, user_with_token


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def assert_edge_headers(resp, *, cache: str | None = "no-store") -> None:
    where = f"{resp.method} {resp.url.path} -> {resp.status}"
    assert resp.headers.get("X-Content-Type-Options") == "nosniff", where
    server = resp.headers.get("Server", "")
    assert "aiohttp" not in server and "Python" not in server, (where, server)
    assert not any(ch.isdigit() for ch in server), (where, server)
    if cache is not None:
        assert resp.headers.get("Cache-Control") == cache, (where, resp.headers)


async def test_every_answer_has_nosniff_no_version_and_no_store(http):
    user, auth = await user_with_token(http)
    login = await (
        await http.post(
            "/api/v1/auth/login", json={"username": user["username"], "password": user["password"]}
        )
    ).json()
    key = await http.post(
        "/api/v1/users/me/api-keys", json={"name": "k", "scopes": ["profile:read"]}, headers=auth
    )
    assert_edge_headers(key)
    admin_user = {"username": "edge_admin", "email": "edge@x.io", "password": "admin password"}
    await http.app[SERVICES].accounts.register(**admin_user, roles=("admin", "user"))
    admin = await (
        await http.post("/login", json={"username": "edge_admin", "password": "admin password"})
    ).json()
    admin_auth = bearer(admin["token"])
    requests = [
        # personal data, tokens and keys
        (
            "POST",
            "/register",
            {
                "json": {
                    "username": "edge_u2",
                    "email": "e2@x.io",
                    "password": "correct horse battery",
                }
            },
        ),
        ("POST", "/login", {"json": {"username": user["username"], "password": user["password"]}}),
        ("POST", "/api/v1/auth/refresh", {"json": {"refresh_token": login["refresh_token"]}}),
        ("GET", "/api/v1/users/me", {"headers": auth}),
        ("GET", "/api/v1/users/me/export", {"headers": auth}),
        ("GET", "/api/v1/users/me/activity", {"headers": auth}),
        ("GET", "/api/v1/users/me/preferences", {"headers": auth}),
        ("GET", "/api/v1/sessions", {"headers": auth}),
        ("GET", "/api/v1/users/me/api-keys", {"headers": auth}),
        ("GET", "/characters", {"headers": auth}),
        ("GET", "/api/v1/admin/users", {"headers": admin_auth}),
        ("GET", f"/api/v1/admin/users/{user['id']}", {"headers": admin_auth}),
        ("GET", "/api/v1/admin/activity", {"headers": admin_auth}),
        (
            "POST",
            "/api/v1/tokens/introspect",
            {"headers": admin_auth, "json": {"token": login["access_token"]}},
        ),
        # health
        ("GET", "/healthz", {}),
        ("GET", "/readyz", {}),
        ("GET", "/metrics", {}),
        # errors: every kind
        ("GET", "/api/v1/users/me", {}),  # 401
        ("GET", "/api/v1/admin/users", {"headers": auth}),  # 403
        ("GET", "/no/such/route", {}),  # 404
        ("GET", "/api/v1/characters/1", {"headers": auth}),  # 404 of a route
        ("PATCH", "/healthz", {}),  # 405
        (
            "POST",
            "/login",
            {"data": b"x" * 70_000, "headers": {"Content-Type": "application/json"}},
        ),  # 413
        ("POST", "/login", {"data": b"username=x"}),  # 415
        ("POST", "/login", {"data": b"{", "headers": {"Content-Type": "application/json"}}),
        ("POST", "/login", {"json": {"username": "x"}}),  # 422
        ("POST", "/login", {"json": {"username": "nobody_here", "password": "wrong pass"}}),
        ("DELETE", "/api/v1/sessions/nope", {"headers": auth}),
        ("POST", "/api/v1/auth/logout", {"headers": auth}),  # 204 (last: ends the session)
    ]
    seen = set()
    for method, path, kw in requests:
        resp = await http.request(method, path, **kw)
        seen.add(resp.status)
        assert_edge_headers(resp)
    assert {200, 201, 204, 400, 401, 403, 404, 405, 413, 415, 422} <= seen, seen
    # The one answer meant to be cached says so itself.
    resp = await http.get("/api/v1/openapi.json")
    assert_edge_headers(resp, cache="public, max-age=300")
    assert (await register(http))["id"]
