"""The application factory: explicit settings in, a wired web.Application out.

`create_app` builds the shared resources (`Deps`), then calls each feature's
`setup(app, deps)` in dependency order (FEATURES); a feature reads what earlier ones put
on the app (authsvc/appkeys.py) and puts its own service there. Everything is built
before the app starts; what must be opened and closed (the embedded store and the
client, outgoing HTTP, the hash pool, the audit buffer, the mail queue, the RBAC change
feed) is one `cleanup_ctx` each, owned by the part that uses it."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import time
from collections.abc import AsyncIterator, Callable

import aiohttp
import redis.asyncio as redis
from aiohttp import web

from ..accounts import routes as account_routes
from ..accounts import setup as accounts
from ..admin import routes as admin_routes
from ..admin import setup as admin
from ..apikeys import routes as apikey_routes
from ..apikeys import setup as apikeys
from ..appkeys import (
    API_KEYS,
    AUTHENTICATOR,
    CLOCK,
    HASHER,
    HTTP,
    LIVENESS,
    MAILER,
    RBAC,
    SETTINGS,
    STORE,
    TRUSTED_PROXIES,
    Deps,
)
from ..appkeys import INTROSPECTOR as INTROSPECTOR_KEY
from ..audit import setup as audit
from ..characters import routes as character_routes
from ..characters import setup as characters
from ..config import Settings
from ..devices import routes as device_routes
from ..devices import setup as devices
from ..favorites import routes as favorite_routes
from ..favorites import setup as favorites
from ..federation import routes as federation_routes
from ..federation import setup as federation
from ..http import apidocs, health, openapi
from ..http.logs import access_log_args, edge_middleware
from ..http.web import Api, dumps, error_middleware
from ..identity.introspect import Introspector
from ..identity.keycloak import KeycloakVerifier
from ..identity.passwords import PasswordHasher
from ..identity.principal import LOCAL, Authenticator, LocalVerifier, Principal
from ..identity.tokens import TokenService
from ..platform.clock import Clock
from ..platform.mail import Mailer, OutboxMailer, SmtpMailer
from ..profiles import routes as profile_routes
from ..profiles import setup as profiles
from ..rbac import setup as rbac
from ..sessions import routes as session_routes
from ..sessions import setup as sessions
from ..store import connection, embedded
from ..store.accounts import AccountStore
from ..store.connection import OUTAGE_ERRORS, create_client
from ..store.migrate import earlier_layout
from ..store.users import UserStore

log = logging.getLogger("authsvc")

Setup = Callable[[web.Application, Deps], None]

# Every route table, in the order of the OpenAPI document and the permission table.
ROUTES: tuple[Api, ...] = (
    health.api,
    account_routes.api,
    session_routes.api,
    character_routes.api,
    apikey_routes.api,
    admin_routes.api,
    favorite_routes.api,
    profile_routes.api,
    federation_routes.api,
    device_routes.api,
    openapi.api,
    apidocs.api,
)


def _setup_identity(app: web.Application, deps: Deps) -> None:
    """Who is calling: our HS256 tokens, the Keycloak issuer when configured, API keys;
    the liveness check of every authenticated request; token introspection."""
    settings, store = deps.settings, deps.store
    users = UserStore(store)
    accounts_store = AccountStore(store)
    authenticator = Authenticator(
        verifiers={settings.jwt_issuer: LocalVerifier(deps.tokens)},
        cache_size=settings.token_cache_size,
        api_keys=app[API_KEYS],
        clock=deps.clock,
    )
    if settings.oidc_issuer:

        async def upsert(p: Principal) -> None:
            await users.upsert(
                p.user_id,
                display_name=p.username,
                email=p.email or "",
                now_ms=int(deps.clock() * 1000),
            )

        keycloak = KeycloakVerifier(
            issuer=settings.oidc_issuer,
            client_id=settings.keycloak_client_id,
            audience=settings.keycloak_audience,
            session=deps.http,
            cache_ttl=settings.jwks_cache_ttl,
            min_refresh_interval=settings.jwks_min_refresh_interval,
            http_timeout=settings.oidc_http_timeout,
            leeway=settings.jwt_leeway,
            clock=deps.clock,
            on_principal=upsert,
        )
        authenticator.add_issuer(settings.oidc_issuer, keycloak)

        async def close_keycloak(app: web.Application) -> AsyncIterator[None]:
            yield
            await keycloak.aclose()

        app.cleanup_ctx.append(close_keycloak)
    app[AUTHENTICATOR] = authenticator

    async def liveness(p: Principal) -> bool:
        if p.kind != LOCAL:
            return await users.is_live(p.user_id)
        return await accounts_store.is_live(p.user_id, sid=p.sid)

    app[LIVENESS] = liveness
    app[INTROSPECTOR_KEY] = Introspector(
        authenticator=authenticator, accounts=accounts_store, authorizer=app[RBAC]
    )


def _setup_operations(app: web.Application, deps: Deps) -> None:
    """Health, metrics, the OpenAPI document and its browsable page."""
    app[health.ACTIVE_SESSIONS] = health.ActiveSessions(deps.settings.metrics_session_scan_interval)
    app[openapi.OPENAPI_JSON] = openapi_document()
    for api in (health.api, openapi.api, apidocs.api):
        api.register(app)

    async def session_count(app: web.Application) -> AsyncIterator[None]:
        yield
        await app[health.ACTIVE_SESSIONS].close()

    app.cleanup_ctx.append(session_count)


# Dependency order: each reads only what the ones before it set.
FEATURES: tuple[Setup, ...] = (
    audit.setup,
    accounts.setup,
    sessions.setup,
    rbac.setup,
    apikeys.setup,
    _setup_identity,
    characters.setup,
    favorites.setup,
    admin.setup,
    profiles.setup,
    federation.setup,
    devices.setup,
    _setup_operations,
)


def make_mailer(settings: Settings) -> Mailer:
    if settings.mail_backend == "smtp":
        return SmtpMailer(
            host=settings.smtp_host,
            port=settings.smtp_port,
            sender=settings.mail_from,
            user=settings.smtp_user,
            password=settings.smtp_password,
            starttls=settings.smtp_starttls,
            timeout=settings.smtp_timeout,
        )
    return OutboxMailer()


def create_app(
    settings: Settings,
    *,
    client: redis.Redis | None = None,
    hasher: PasswordHasher | None = None,
    mailer: Mailer | None = None,
    clock: Clock = time.time,
) -> web.Application:
    """Build the service. `client` injects a store client (tests: fakeredis or a
    redis-server they started); without it the app connects to `settings.store_url`,
    starting an embedded store when KEYDB_URL is unset and nothing answers there."""
    app = web.Application(
        # Outermost first: every answer, errors included, gets its request id and is
        # counted with the status the error middleware gave it.
        middlewares=[edge_middleware, error_middleware],
        client_max_size=settings.max_body_bytes,
        handler_args=access_log_args(settings.access_log),
    )
    app[SETTINGS] = settings
    app[CLOCK] = clock
    app[TRUSTED_PROXIES] = tuple(
        ipaddress.ip_network(net, strict=False) for net in settings.trusted_proxies
    )
    connection.COMMAND_TIMEOUT = settings.store_timeout
    # The store first: when it cannot start (no server, a refused data directory) the
    # start fails before anything else was opened (aiohttp closes nothing of a failed
    # start).
    store = client if client is not None else _own_store(app, settings)
    app[STORE] = store
    app.cleanup_ctx.append(_layout_warning)
    app[HASHER] = hasher or PasswordHasher(cost=settings.bcrypt_cost, threads=settings.hash_threads)
    app.cleanup_ctx.append(_hash_pool)
    app[MAILER] = mailer or make_mailer(settings)
    app.cleanup_ctx.append(_outgoing_http)
    deps = Deps(
        settings=settings,
        clock=clock,
        store=store,
        http=lambda: app[HTTP],
        hasher=app[HASHER],
        mailer=app[MAILER],
        tokens=TokenService(
            secret=settings.jwt_secret,
            previous_secrets=settings.jwt_previous_secrets,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            ttl=settings.access_token_ttl,
            leeway=settings.jwt_leeway,
            clock=clock,
        ),
    )
    for setup in FEATURES:
        setup(app, deps)
    return app


def _own_store(app: web.Application, settings: Settings) -> redis.Redis:
    """The service's own client to `settings.store_url`; the embedded store behind that
    address is started (when KEYDB_URL is unset and nothing answers) before anything
    uses it, and stopped after the client is closed."""
    store = create_client(settings.store_url, timeout=settings.store_timeout, socket_timeout=False)

    async def store_ctx(app: web.Application) -> AsyncIterator[None]:
        # The embedded store listens at the default address, which is then store_url.
        async with embedded.store_url(settings):
            yield
            await store.aclose()

    app.cleanup_ctx.append(store_ctx)
    return store


async def _layout_warning(app: web.Application) -> AsyncIterator[None]:
    check = asyncio.ensure_future(_warn_if_earlier_layout(app[STORE]))  # beside the start
    yield
    check.cancel()


async def _hash_pool(app: web.Application) -> AsyncIterator[None]:
    await app[HASHER].warm_up()  # the dummy hash, before the first login
    yield
    app[HASHER].close()


async def _outgoing_http(app: web.Application) -> AsyncIterator[None]:
    app[HTTP] = aiohttp.ClientSession()
    yield
    await app[HTTP].close()


_OPENAPI: str | None = None


def openapi_document() -> str:
    """The OpenAPI document as JSON text; the routes are module-level, so build it once."""
    global _OPENAPI
    if _OPENAPI is None:
        _OPENAPI = dumps(openapi.build_spec(ROUTES))
    return _OPENAPI


async def _warn_if_earlier_layout(store: redis.Redis) -> None:
    """One warning at start when the store still holds the layout of an earlier authsvc
    (`authsvc migrate` moves it). Never in the way: a store that is down now is simply
    not checked."""
    with contextlib.suppress(*OUTAGE_ERRORS, TimeoutError):
        async with asyncio.timeout(5):
            if await earlier_layout(store):
                log.warning(
                    "the store holds keys of an earlier authsvc layout: run `authsvc migrate`"
                    " (old favorites cannot be read until it has run)"
                )
