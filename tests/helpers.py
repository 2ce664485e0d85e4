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


async def data_keys(store) -> list[str]:
    """The keys that hold data, by shape (ids replaced by '*'), sorted: not counting the
    audit stream and rate-limit counters, which every request may touch."""
    import re

    shapes = []
    async for key in store.scan_iter(count=1000):
        if key in ("audit:events", "rbac:roles") or key.startswith("rl:"):
            continue  # the trail, the role definitions, rate-limit counters
        if key.endswith(":activity"):
            continue  # a user's copy of the trail
        key = re.sub(r"\{\d+\}", "{*}", key)
        shapes.append(re.sub(r"^account:(username|email):.*", r"account:\1:*", key))
    return sorted(shapes)


# What one registered account leaves in the store.
ONE_ACCOUNT = [
    "account:email:*",
    "account:username:*",
    "account:{*}",
    "account:{*}:verify",
    "idx:users:created",
    "idx:users:email",
    "idx:users:username",
    "rbac:members:user",
    "user:{*}:roles",
]
