"""Wiring of API keys."""

from __future__ import annotations

from aiohttp import web

from ..appkeys import API_KEYS, AUDIT, RBAC, Deps
from ..identity.throttle import RequestLimiter
from ..store.apikeys import ApiKeyStore
from ..store.ratelimits import RateLimitStore
from . import routes
from .service import ApiKeyService


def setup(app: web.Application, deps: Deps) -> None:
    app[API_KEYS] = ApiKeyService(
        store=ApiKeyStore(deps.store),
        authorizer=app[RBAC],
        limiter=RequestLimiter(RateLimitStore(deps.store), window_s=60),
        audit=app[AUDIT],
        rate_limit=deps.settings.apikey_rate_limit,
        clock=deps.clock,
    )
    routes.api.register(app)
