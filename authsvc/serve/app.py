"""The application factory: explicit settings in, a wired web.Application out."""

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
from ..accounts.identities import IdentityAccounts
from ..accounts.lifecycle import LifecycleService
from ..accounts.service import AccountService
from ..admin import routes as admin_routes
from ..admin.service import AdminService
from ..apikeys import routes as apikey_routes
from ..apikeys.service import ApiKeyService
from ..audit.service import Audit, AuditReader
from ..characters import routes as character_routes
from ..characters.service import CharacterService
from ..config import Settings
from ..devices import routes as device_routes
from ..devices.service import DeviceService
from ..favorites import routes as favorite_routes
from ..favorites.kinds import KINDS
from ..favorites.service import FavoriteService
from ..federation import routes as federation_routes
from ..federation.client import OidcClient
from ..federation.providers import ProviderService
from ..federation.service import SignInService
from ..http import apidocs, health, openapi
from ..http.logs import access_log_args, edge_middleware
from ..http.web import AUTHENTICATOR, AUTHORIZER, LIVENESS, TRUSTED_PROXIES, dumps, error_middleware
from ..identity.introspect import Introspector
from ..identity.keycloak import KeycloakVerifier
from ..identity.passwords import PasswordHasher
from ..identity.principal import LOCAL, Authenticator, LocalVerifier, Principal
from ..identity.throttle import LoginThrottle, RequestLimiter
from ..identity.tokens import TokenService
from ..platform.catalog import HttpCatalog, NoCatalog
from ..platform.clock import Clock
from ..platform.crypto import SecretBox
from ..platform.mail import Mailer, MailQueue, OutboxMailer, SmtpMailer
from ..profiles import routes as profile_routes
from ..profiles.service import ProfileService
from ..rbac.guard import SuperuserGuard
from ..rbac.service import Authorizer, RoleService
from ..sessions import routes as session_routes
from ..sessions.service import SessionService
from ..store import connection, embedded, keys
from ..store.accounts import AccountStore
from ..store.apikeys import ApiKeyStore
from ..store.characters import CharacterStore
from ..store.connection import OUTAGE_ERRORS, create_client
from ..store.favorites import FavoriteStore
from ..store.federation import FlowStore, ProviderStore
from ..store.identities import IdentityStore
from ..store.migrate import earlier_layout
from ..store.profiles import ProfileStore
from ..store.ratelimits import RateLimitStore
from ..store.rbac import RbacStore
from ..store.sessions import SessionStore
from ..store.users import UserStore
from .appkeys import (
    DEVICES,
    HASHER,
    HTTP,
    MAILER,
    OIDC_PROVIDERS,
    SERVICES,
    SETTINGS,
    SIGN_IN,
    STORE,
    Services,
)

log = logging.getLogger("authsvc")

ROUTES = (
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
    app[health.ACTIVE_SESSIONS] = health.ActiveSessions(settings.metrics_session_scan_interval)
    app[SETTINGS] = settings
    app[TRUSTED_PROXIES] = tuple(
        ipaddress.ip_network(net, strict=False) for net in settings.trusted_proxies
    )
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
    app[MAILER] = mailer or make_mailer(settings)
    keycloak = None
    if settings.oidc_issuer:
        keycloak = KeycloakVerifier(
            issuer=settings.oidc_issuer,
            client_id=settings.keycloak_client_id,
            audience=settings.keycloak_audience,
            session=lambda: app[HTTP],
            cache_ttl=settings.jwks_cache_ttl,
            min_refresh_interval=settings.jwks_min_refresh_interval,
            http_timeout=settings.oidc_http_timeout,
            leeway=settings.jwt_leeway,
            clock=clock,
        )
        app[AUTHENTICATOR].add_issuer(settings.oidc_issuer, keycloak)

    async def http_ctx(app: web.Application) -> AsyncIterator[None]:
        app[HTTP] = aiohttp.ClientSession()
        yield
        if keycloak is not None:
            await keycloak.aclose()
        await app[HTTP].close()

    async def store_ctx(app: web.Application) -> AsyncIterator[None]:
        async with embedded.store_url(settings, may_start=client is None) as url:
            own_client = client is None
            store = (
                client
                if client is not None
                else create_client(url, timeout=settings.store_timeout, socket_timeout=False)
            )
            connection.COMMAND_TIMEOUT = settings.store_timeout
            app[STORE] = store
            services = build_services(
                settings,
                store,
                app[HASHER],
                app[MAILER],
                tokens,
                clock,
                app[AUTHENTICATOR],
                http=lambda: app[HTTP],
            )
            app[SERVICES] = services
            app[AUTHORIZER] = services.authorizer
            live_store = AccountStore(store)
            external_users = UserStore(store)

            async def liveness(p: Principal) -> bool:
                if p.kind != LOCAL:
                    return await external_users.is_live(p.user_id)
                return await live_store.is_live(p.user_id, sid=p.sid)

            app[LIVENESS] = liveness
            if keycloak is not None:
                keycloak_users = UserStore(store)

                async def upsert(p: Principal) -> None:
                    await keycloak_users.upsert(
                        p.user_id,
                        display_name=p.username,
                        email=p.email or "",
                        now_ms=int(clock() * 1000),
                    )

                keycloak.on_principal = upsert
            stop_feed = asyncio.Event()
            rbac_feed = asyncio.ensure_future(services.authorizer.listen(store, stop_feed))
            layout_check = asyncio.ensure_future(_warn_if_earlier_layout(store))
            await app[HASHER].warm_up()
            yield
            stop_feed.set()
            layout_check.cancel()
            rbac_feed.cancel()
            await asyncio.wait({rbac_feed}, timeout=1)
            await app[SERVICES].audit.flush()
            await app[SERVICES].lifecycle.mail.close()
            await app[health.ACTIVE_SESSIONS].close()
            if own_client:
                await store.aclose()
            app[HASHER].close()

    # The store first: when it cannot start (no server, a refused data directory) the
    # start fails before anything else was opened (aiohttp closes nothing of a failed
    # start). Nothing in store_ctx's clean-up uses the HTTP session.
    app.cleanup_ctx.append(store_ctx)
    app.cleanup_ctx.append(http_ctx)
    _setup_oidc(app, settings, clock)
    _setup_devices(app, settings, clock)
    for api in ROUTES:
        api.register(app)
    app[openapi.OPENAPI_JSON] = openapi_document()
    return app


# -- features that wire themselves (lifted into each feature's setup() by the restructure)


def _setup_oidc(app: web.Application, settings: Settings, clock: Clock) -> None:
    """Sign-in through OIDC providers (authsvc.federation): its stores and services over
    the shared store, audit, sessions and outgoing HTTP, once the store is up."""

    async def oidc_ctx(app: web.Application) -> AsyncIterator[None]:
        store, services = app[STORE], app[SERVICES]
        providers = ProviderService(
            store=ProviderStore(store),
            box=SecretBox.from_text(settings.secrets_key, settings.secrets_previous_keys),
            audit=services.audit,
            public_url=settings.public_url,
            clock=clock,
        )
        client = OidcClient(
            session=lambda: app[HTTP],
            timeout=settings.oidc_http_timeout,
            discovery_ttl=settings.oidc_discovery_ttl,
            jwks_ttl=settings.jwks_cache_ttl,
            leeway=settings.jwt_leeway,
            clock=clock,
        )
        app[OIDC_PROVIDERS] = providers
        app[SIGN_IN] = SignInService(
            providers=providers,
            flows=FlowStore(store),
            identities=IdentityAccounts(
                store=IdentityStore(store), registrar=services.accounts, clock=clock
            ),
            client=client,
            accounts=services.accounts,
            sessions=services.sessions,
            roles=RbacStore(store),
            guard=services.admin.guard,
            limiter=RequestLimiter(RateLimitStore(store), window_s=settings.request_limit_window),
            audit=services.audit,
            redirect_allowlist=settings.oidc_redirect_allowlist,
            state_ttl=settings.oidc_state_ttl,
            provider_budget=settings.oidc_http_timeout,
            authorize_ip_limit=settings.oidc_authorize_ip_limit,
            default_roles=(settings.default_role,),
            secure_cookies=settings.public_url.startswith("https://"),
            clock=clock,
        )
        yield

    app.cleanup_ctx.append(oidc_ctx)


def _setup_devices(app: web.Application, settings: Settings, clock: Clock) -> None:
    """Guests of game clients (authsvc.devices), once the store is up."""

    async def devices_ctx(app: web.Application) -> AsyncIterator[None]:
        store, services = app[STORE], app[SERVICES]
        app[DEVICES] = DeviceService(
            identities=IdentityAccounts(
                store=IdentityStore(store), registrar=services.accounts, clock=clock
            ),
            sessions=services.sessions,
            limiter=RequestLimiter(RateLimitStore(store), window_s=settings.request_limit_window),
            audit=services.audit,
            ip_limit=settings.device_ip_limit,
            clock=clock,
        )
        yield

    app.cleanup_ctx.append(devices_ctx)


_OPENAPI: str | None = None


def openapi_document() -> str:
    """The OpenAPI document as JSON text; the routes are module-level, so build it once."""
    global _OPENAPI
    if _OPENAPI is None:
        _OPENAPI = dumps(openapi.build_spec(ROUTES))
    return _OPENAPI


def build_services(
    settings: Settings,
    store: redis.Redis,
    hasher: PasswordHasher,
    mailer: Mailer,
    tokens: TokenService,
    clock: Clock,
    authenticator: Authenticator | None = None,
    http: Callable[[], aiohttp.ClientSession] | None = None,
) -> Services:
    """Wire the domain services over one store client (also used by the CLI)."""
    authenticator = authenticator or Authenticator(
        verifiers={settings.jwt_issuer: LocalVerifier(tokens)}, clock=clock
    )
    audit = Audit(store, retention_days=settings.audit_retention_days, clock=clock)
    limits = RateLimitStore(store)
    account_store = AccountStore(store)
    session_store = SessionStore(store)
    rbac_store = RbacStore(store)
    accounts = AccountService(
        store=account_store,
        hasher=hasher,
        throttle=LoginThrottle(
            limits,
            account_ip_max=settings.login_max_failures,
            account_max=settings.login_account_max_failures,
            ip_max=settings.login_ip_max_failures,
            window_s=settings.login_failure_window,
        ),
        audit=audit,
        require_verified_email=settings.require_verified_email,
        default_roles=(settings.default_role,),
        users=UserStore(store),
        clock=clock,
    )
    lifecycle = LifecycleService(
        accounts=accounts,
        account_store=account_store,
        sessions=session_store,
        hasher=hasher,
        mail=MailQueue(mailer),
        limiter=RequestLimiter(limits, window_s=settings.request_limit_window),
        audit=audit,
        public_url=settings.public_url,
        verification_ttl=settings.email_verification_ttl,
        reset_ttl=settings.password_reset_ttl,
        mail_ip_limit=settings.mail_ip_limit,
        mail_account_limit=settings.mail_account_limit,
        register_ip_limit=settings.register_ip_limit,
        clock=clock,
    )
    authorizer = Authorizer(
        rbac_store,
        cache_ttl=settings.rbac_cache_ttl,
        role_mapping=settings.role_mapping,
        default_role=settings.default_role,
    )

    async def user_exists(user_id: str) -> bool:
        if user_id.isdigit():
            return await account_store.get(user_id) is not None
        return bool(await store.exists(keys.user_record(user_id)))

    api_keys = ApiKeyService(
        store=ApiKeyStore(store),
        authorizer=authorizer,
        limiter=RequestLimiter(limits, window_s=60),
        audit=audit,
        rate_limit=settings.apikey_rate_limit,
        clock=clock,
    )
    authenticator.api_keys = api_keys
    if settings.catalog_backend == "http" and http is not None:
        catalog = HttpCatalog(
            url_template=settings.catalog_url,
            session=http,
            timeout=settings.catalog_timeout,
            positive_ttl=settings.catalog_cache_ttl,
            negative_ttl=settings.catalog_negative_cache_ttl,
        )
    else:
        catalog = NoCatalog()
    favorites = {
        kind.name: FavoriteService(
            kind=kind,
            store=FavoriteStore(store, kind.name),
            catalog=catalog,
            audit=audit,
            user_exists=user_exists,
            clock=clock,
        )
        for kind in KINDS
    }
    audit_reader = AuditReader(store)
    guard = SuperuserGuard(store=rbac_store)
    admin = AdminService(
        accounts=account_store,
        rbac=rbac_store,
        lifecycle=lifecycle,
        audit=audit,
        users=UserStore(store),
        guard=guard,
        clock=clock,
    )
    admin.purgers.extend(f.purge for f in favorites.values())
    profile_store = ProfileStore(store)
    admin.purgers.append(profile_store.purge)
    characters = CharacterService(
        store=CharacterStore(store), cap=settings.max_characters_per_account, clock=clock
    )
    return Services(
        audit=audit,
        audit_reader=audit_reader,
        accounts=accounts,
        characters=characters,
        sessions=SessionService(
            accounts=accounts,
            store=session_store,
            tokens=tokens,
            audit=audit,
            refresh_ttl=settings.refresh_token_ttl,
            reuse_window=settings.refresh_reuse_interval,
            max_sessions=settings.max_sessions_per_account,
            clock=clock,
        ),
        lifecycle=lifecycle,
        authorizer=authorizer,
        roles=RoleService(
            store=rbac_store,
            authorizer=authorizer,
            audit=audit,
            user_exists=user_exists,
            guard=guard,
        ),
        admin=admin,
        favorites=favorites,
        profiles=ProfileService(
            store=profile_store,
            accounts=accounts,
            admin=admin,
            characters=characters,
            favorites=favorites,
            api_keys=api_keys,
            rbac=rbac_store,
            audit=audit,
            audit_reader=audit_reader,
            user_exists=user_exists,
            clock=clock,
        ),
        api_keys=api_keys,
        introspector=Introspector(
            authenticator=authenticator, accounts=account_store, authorizer=authorizer
        ),
        clock=clock,
    )


async def _warn_if_earlier_layout(store) -> None:
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
