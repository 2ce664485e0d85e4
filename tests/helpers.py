from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp

from .redis_proc import free_port

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


def assert_edge_headers(resp, *, cache: str | None = "no-store") -> None:
    """What every answer carries at the edge: nosniff, a Server without versions, and
    (unless `cache` is None) that Cache-Control."""
    where = f"{resp.method} {resp.url.path} -> {resp.status}"
    assert resp.headers.get("X-Content-Type-Options") == "nosniff", where
    server = resp.headers.get("Server", "")
    assert "aiohttp" not in server and "Python" not in server, (where, server)
    assert not any(ch.isdigit() for ch in server), (where, server)
    if cache is not None:
        assert resp.headers.get("Cache-Control") == cache, (where, resp.headers)


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


async def compact_encoding(store) -> str:
    """The name this server gives the compact encoding of a small hash or sorted set:
    `listpack` on Redis 7, `ziplist` on Redis 6 and KeyDB (listpack replaced ziplist in
    7.0). Asked of the server itself, so a test comparing a key's OBJECT ENCODING with it
    accepts only that server's compact name, never `hashtable` or `skiplist`."""
    probe = "test:{compact-encoding-probe}"
    await store.hset(probe, "f", "v")  # one short field: compact under any defaults
    try:
        name = await store.object("encoding", probe)
    finally:
        await store.delete(probe)
    assert name in ("listpack", "ziplist"), f"a one-field hash is {name!r} on this server"
    return name


# What one registered account leaves in the store (each lex index: directory, first
# bucket, bucket counter).
ONE_ACCOUNT = [
    "account:email:*",
    "account:username:*",
    "account:{*}",
    "idx:{rbac:members:user}",
    "idx:{rbac:members:user}:1",
    "idx:{rbac:members:user}:seq",
    "idx:{users:created}",
    "idx:{users:created}:1",
    "idx:{users:created}:seq",
    "idx:{users:email}",
    "idx:{users:email}:1",
    "idx:{users:email}:seq",
    "idx:{users:username}",
    "idx:{users:username}:1",
    "idx:{users:username}:seq",
]


def service_env(store_url: str, **extra: str) -> dict[str, str]:
    """The environment of a real `authsvc serve` in the tests: the test secret, a cheap
    bcrypt, and the per-address limits lifted (every request comes from 127.0.0.1)."""
    from .conftest import SECRET

    return {
        "API_JWT_SECRET": SECRET,
        "KEYDB_URL": store_url,
        "BCRYPT_COST": "4",
        "REGISTER_IP_LIMIT": "1000000",
        "LOGIN_IP_MAX_FAILURES": "1000000",
        "MAIL_IP_LIMIT": "1000000",
        "APIKEY_RATE_LIMIT": "1000000",
        "DEVICE_IP_LIMIT": "1000000",
        "OIDC_AUTHORIZE_IP_LIMIT": "1000000",
        # OIDC providers can be stored (their client secrets sealed); a provider that does
        # not answer costs half a second, not three.
        "SECRETS_KEY": "k" * 43,
        "OIDC_HTTP_TIMEOUT": "0.5",
        "LOG_LEVEL": "WARNING",
        **extra,
    }


async def create_admin(env: dict[str, str], user: dict) -> None:
    """The first operator, made the documented way: `authsvc create-admin`, password on
    stdin."""
    argv = ["-m", "authsvc", "create-admin", "--username", user["username"]]
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, *argv, "--email", user["email"]],
        input=user["password"] + "\n",
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=60,
    )
    assert done.returncode == 0, done.stderr


@contextlib.asynccontextmanager
async def serve(env: dict[str, str], log_path: Path) -> AsyncIterator[asyncio.subprocess.Process]:
    """A real `authsvc serve` process on a free port (`env` over os.environ, output in
    `log_path`); yields the process, with `.base` its URL, once /readyz answers 200."""
    port = free_port()
    argv = ["-m", "authsvc", "serve", "--host", "127.0.0.1", "--port", str(port)]
    with log_path.open("w") as log:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, *argv, env={**os.environ, **env}, stdout=log, stderr=log
        )
    proc.base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        async with aiohttp.ClientSession() as http:
            while True:
                if proc.returncode is not None:
                    output = await asyncio.to_thread(log_path.read_text)
                    raise AssertionError(f"authsvc serve exited: {output[-3000:]}")
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(proc.base + "/readyz") as resp:
                        if resp.status == 200:
                            break
                assert time.monotonic() < deadline, "authsvc serve did not become ready"
                await asyncio.sleep(0.1)
        yield proc
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()
