"""Wiring of sign-in through OIDC providers: providers as data, and the login and link
flows over the shared accounts, sessions, roles and outgoing HTTP."""

from __future__ import annotations

from aiohttp import web

from ..accounts.identities import IdentityAccounts
from ..appkeys import ACCOUNTS, AUDIT, GUARD, OIDC_PROVIDERS, SESSIONS, SIGN_IN, Deps
from ..identity.throttle import RequestLimiter
from ..platform.crypto import SecretBox
from ..store.federation import FlowStore, ProviderStore
from ..store.identities import IdentityStore
from ..store.ratelimits import RateLimitStore
from ..store.rbac import RbacStore
from . import routes
from .client import OidcClient
from .providers import ProviderService
from .service import SignInService


def setup(app: web.Application, deps: Deps) -> None:
    settings, store, clock = deps.settings, deps.store, deps.clock
    providers = ProviderService(
        store=ProviderStore(store),
        box=SecretBox.from_text(settings.secrets_key, settings.secrets_previous_keys),
        audit=app[AUDIT],
        public_url=settings.public_url,
        clock=clock,
    )
    app[OIDC_PROVIDERS] = providers
    app[SIGN_IN] = SignInService(
        providers=providers,
        flows=FlowStore(store),
        identities=IdentityAccounts(
            store=IdentityStore(store), registrar=app[ACCOUNTS], clock=clock
        ),
        client=OidcClient(
            session=deps.http,
            timeout=settings.oidc_http_timeout,
            discovery_ttl=settings.oidc_discovery_ttl,
            jwks_ttl=settings.jwks_cache_ttl,
            leeway=settings.jwt_leeway,
            clock=clock,
        ),
        accounts=app[ACCOUNTS],
        sessions=app[SESSIONS],
        roles=RbacStore(store),
        guard=app[GUARD],
        limiter=RequestLimiter(RateLimitStore(store), window_s=settings.request_limit_window),
        audit=app[AUDIT],
        redirect_allowlist=settings.oidc_redirect_allowlist,
        state_ttl=settings.oidc_state_ttl,
        provider_budget=settings.oidc_http_timeout,
        authorize_ip_limit=settings.oidc_authorize_ip_limit,
        default_roles=(settings.default_role,),
        secure_cookies=settings.public_url.startswith("https://"),
        clock=clock,
    )
    routes.api.register(app)
