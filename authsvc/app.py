"""The application factory: explicit settings in, a wired web.Application out."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator

import redis.asyncio as redis
from aiohttp import web

from . import embedded, health
from .accounts import routes as account_routes
from .accounts.service import AccountService
from .app_keys import HASHER, SERVICES, SETTINGS, STORE, Services
from .audit import Audit
from .auth import Authenticator, LocalVerifier
from .characters import routes as character_routes
from .characters.service import CharacterService
from .clock import Clock
from .config import Settings
from .passwords import PasswordHasher
from .store.accounts import AccountStore
from .store.characters import CharacterStore
from .store.connection import create_client
from .tokens import TokenService
from .web import AUTHENTICATOR, error_middleware

log = logging.getLogger("authsvc")

ROUTES = (health.api, account_routes.api, character_routes.api)


def create_app(
    settings: Settings,
    *,
    client: redis.Redis | None = None,
    hasher: PasswordHasher | None = None,
    clock: Clock = time.time,
) -> web.Application:
    """Build the service. `client` injects a store client (tests: fakeredis or a
    redis-server they started); without it the app connects to `settings.store_url`,
    starting an embedded store when KEYDB_URL is unset and nothing answers there."""
    app = web.Application(middlewares=[error_middleware], client_max_size=settings.max_body_bytes)
    app[SETTINGS] = settings
    tokens = TokenService(
        secret=settings.jwt_secret,
        previous_secrets=settings.jwt_previous_secrets,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        ttl=settings.access_token_ttl,
        leeway=settings.jwt_leeway,
        clock=clock,
    )
    app[AUTHENTICATOR] = Authenticator(
        verifiers={settings.jwt_issuer: LocalVerifier(tokens)},
        cache_size=settings.token_cache_size,
        clock=clock,
    )
    app[HASHER] = hasher or PasswordHasher(cost=settings.bcrypt_cost, threads=settings.hash_threads)

    async def store_ctx(app: web.Application) -> AsyncIterator[None]:
        async with embedded.store_url(settings, may_start=client is None) as url:
            own_client = client is None
            store = (
                client if client is not None else create_client(url, timeout=settings.store_timeout)
            )
            app[STORE] = store
            audit = Audit(store, retention_days=settings.audit_retention_days, clock=clock)
            app[SERVICES] = Services(
                audit=audit,
                accounts=AccountService(
                    store=AccountStore(store),
                    hasher=app[HASHER],
                    tokens=tokens,
                    audit=audit,
                    clock=clock,
                ),
                characters=CharacterService(
                    store=CharacterStore(store),
                    cap=settings.max_characters_per_account,
                    clock=clock,
                ),
            )
            await app[HASHER].warm_up()
            yield
            if own_client:
                await store.aclose()
            app[HASHER].close()

    app.cleanup_ctx.append(store_ctx)
    for api in ROUTES:
        api.register(app)
    return app
