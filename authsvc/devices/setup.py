"""Wiring of guest accounts bound to game-client devices."""

from __future__ import annotations

from aiohttp import web

from ..accounts.identities import IdentityAccounts
from ..appkeys import ACCOUNTS, AUDIT, DEVICES, SESSIONS, Deps
from ..identity.throttle import RequestLimiter
from ..store.identities import IdentityStore
from ..store.ratelimits import RateLimitStore
from . import routes
from .service import DeviceService


def setup(app: web.Application, deps: Deps) -> None:
    settings, store = deps.settings, deps.store
    app[DEVICES] = DeviceService(
        identities=IdentityAccounts(
            store=IdentityStore(store), registrar=app[ACCOUNTS], clock=deps.clock
        ),
        sessions=app[SESSIONS],
        limiter=RequestLimiter(RateLimitStore(store), window_s=settings.request_limit_window),
        audit=app[AUDIT],
        ip_limit=settings.device_ip_limit,
        clock=deps.clock,
    )
    routes.api.register(app)
