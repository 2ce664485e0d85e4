"""Wiring of user administration (and the role administration routes it declares)."""

from __future__ import annotations

from aiohttp import web

from ..appkeys import ADMIN, AUDIT, FAVORITES, GUARD, LIFECYCLE, Deps
from ..store.accounts import AccountStore
from ..store.profiles import ProfileStore
from ..store.rbac import RbacStore
from ..store.users import UserStore
from . import routes
from .service import AdminService


def setup(app: web.Application, deps: Deps) -> None:
    store = deps.store
    app[ADMIN] = AdminService(
        accounts=AccountStore(store),
        rbac=RbacStore(store),
        lifecycle=app[LIFECYCLE],
        audit=app[AUDIT],
        users=UserStore(store),
        guard=app[GUARD],
        # What features keep about a user outside the account's own keys, deleted
        # with it.
        purgers=(*(f.purge for f in app[FAVORITES].values()), ProfileStore(store).purge),
        clock=deps.clock,
    )
    routes.api.register(app)
