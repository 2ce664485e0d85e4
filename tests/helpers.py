from __future__ import annotations

import itertools

_n = itertools.count()


def new_user(prefix: str = "user") -> dict:
    i = next(_n)
    return {
        "username": f"{prefix}_{i}",
        "email": f"{prefix}{i}@example.com",
        "password": "correct horse battery",
    }


async def register(http, user: dict | None = None) -> dict:
    user = user or new_user()
    resp = await http.post("/register", json=user)
    assert resp.status == 201, await resp.text()
    return user | {"id": (await resp.json())["id"]}


async def login(http, user: dict) -> str:
    resp = await http.post(
        "/login", json={"username": user["username"], "password": user["password"]}
    )
    assert resp.status == 200, await resp.text()
    return (await resp.json())["token"]


async def user_with_token(http) -> tuple[dict, dict]:
    user = await register(http)
    token = await login(http, user)
    return user, {"Authorization": f"Bearer {token}"}


async def error_of(resp) -> dict:
    body = await resp.json()
    assert set(body) == {"error"}, body
    assert {"code", "message"} <= set(body["error"]), body
    return body["error"]


async def data_keys(store) -> int:
    """Keys in the store, not counting the audit stream (which every event appends to)."""
    return await store.dbsize() - await store.exists("audit:events")
