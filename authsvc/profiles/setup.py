"""Wiring of profiles, preferences, follows and the data rights."""

from __future__ import annotations

from aiohttp import web

from ..appkeys import (
    ACCOUNTS,
    ADMIN,
    API_KEYS,
    AUDIT,
    AUDIT_READER,
    CHARACTERS,
    FAVORITES,
    PROFILES,
    USER_EXISTS,
    Deps,
)
from ..store.profiles import ProfileStore
from ..store.rbac import RbacStore
from . import routes
from .service import ProfileService


def setup(app: web.Application, deps: Deps) -> None:
    app[PROFILES] = ProfileService(
        store=ProfileStore(deps.store),
        accounts=app[ACCOUNTS],
        admin=app[ADMIN],
        characters=app[CHARACTERS],
        favorites=app[FAVORITES],
        api_keys=app[API_KEYS],
        rbac=RbacStore(deps.store),
        audit=app[AUDIT],
        audit_reader=app[AUDIT_READER],
        user_exists=app[USER_EXISTS],
        clock=deps.clock,
    )
    routes.api.register(app)
