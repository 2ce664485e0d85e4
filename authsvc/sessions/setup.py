"""Wiring of sessions and refresh tokens."""

from __future__ import annotations

from aiohttp import web

from ..appkeys import ACCOUNTS, AUDIT, SESSIONS, Deps
from ..store.sessions import SessionStore
from . import routes
from .service import SessionService


def setup(app: web.Application, deps: Deps) -> None:
    settings = deps.settings
    app[SESSIONS] = SessionService(
        accounts=app[ACCOUNTS],
        store=SessionStore(deps.store),
        tokens=deps.tokens,
        audit=app[AUDIT],
        refresh_ttl=settings.refresh_token_ttl,
        reuse_window=settings.refresh_reuse_interval,
        max_sessions=settings.max_sessions_per_account,
        clock=deps.clock,
    )
    routes.api.register(app)
