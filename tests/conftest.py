from __future__ import annotations

import os

import fakeredis
import pytest
import redis.asyncio as aredis

from authsvc.config import Settings
from authsvc.serve.app import create_app
from authsvc.store.connection import create_client

from .oidc_provider import OidcProvider
from .redis_proc import RedisClusterProcesses, RedisProcess, redis_server_bin, server_version

# A fixed secret that passes the start-up entropy check (secrets.token_hex(32), once).
SECRET = "5b0e7d2c94a1f3e86c7d09b4a2e51f6d8c3b7a90e4d12f5a6b8c9d0e1f2a3b4c"


def make_settings(**overrides) -> Settings:
    values = {
        "jwt_secret": SECRET,
        "bcrypt_cost": 4,  # tests that measure the cost itself set their own
        "hash_threads": 2,
        "keydb_url": "redis://unused.invalid:1/0",
        # Many tests register and log in from 127.0.0.1: lift the per-address limits
        # that tests of those limits set back down.
        "register_ip_limit": 100_000,
        "login_ip_max_failures": 100_000,
        "mail_ip_limit": 100_000,
    }
    values.update(overrides)
    return Settings(**values)


def pytest_report_header(config) -> str:
    """Which server this run tests, so a pass count always names it."""
    try:
        binary = redis_server_bin()
    except RuntimeError as exc:  # every storage test then fails with the same line
        return f"store server: NONE ({exc})"
    shape = "3-master cluster" if os.environ.get("AUTHSVC_TEST_CLUSTER") else "single node"
    return f"store server: {binary} ({server_version(binary)}), {shape}"


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    if os.environ.get("AUTHSVC_TEST_CLUSTER"):
        # A real three-master Redis Cluster: the client routes by slot, and the
        # servers refuse any script or MULTI whose keys span hash slots.
        server = RedisClusterProcesses(tmp_path_factory.mktemp("cluster")).start()
    else:
        server = RedisProcess(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def oidc_provider_process(tmp_path_factory):
    """One real OpenID provider (npm oidc-provider in Node) for the whole session; fails
    loudly when node or its packages are missing (`npm ci --prefix tests/oidc_provider`)."""
    provider = OidcProvider(tmp_path_factory.mktemp("oidc-provider")).start()
    yield provider
    provider.stop()


@pytest.fixture
def oidc_provider(oidc_provider_process):
    """The session's provider, running (a test that stopped it gets it back), with no
    delay or tampering left over. Clients, accounts and keys persist across tests: use
    fresh client ids and login names."""
    oidc_provider_process.start()
    oidc_provider_process.reset_controls()
    yield oidc_provider_process
    oidc_provider_process.start()
    oidc_provider_process.reset_controls()


@pytest.fixture
async def store(redis_server):
    """A client to the real server, emptied before each test."""
    client = create_client(redis_server.url)
    await client.flushdb()
    yield client
    await client.aclose()


@pytest.fixture
async def fake_store():
    client = fakeredis.FakeAsyncRedis(decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture
def settings() -> Settings:
    return make_settings()


@pytest.fixture
async def make_client(aiohttp_client, store):
    """Build the app on the real store with setting overrides; returns a test client."""

    async def make(client: aredis.Redis | None = None, hasher=None, clock=None, **overrides):
        kw = {}
        if clock is not None:
            kw["clock"] = clock
        app = create_app(make_settings(**overrides), client=client or store, hasher=hasher, **kw)
        return await aiohttp_client(app)

    return make


@pytest.fixture
async def http(make_client):
    return await make_client()
