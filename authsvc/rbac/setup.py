"""Wiring of roles and permissions: the Authorizer every route's permission check uses
(and its change feed, one background task while the app runs), role administration
and the last-admin guard."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from aiohttp import web

from ..appkeys import AUDIT, AUTHORIZER, GUARD, RBAC, ROLES, USER_EXISTS, Deps
from ..store.rbac import RbacStore
from .guard import SuperuserGuard
from .service import Authorizer, RoleService


def setup(app: web.Application, deps: Deps) -> None:
    settings = deps.settings
    rbac_store = RbacStore(deps.store)
    authorizer = Authorizer(
        rbac_store,
        cache_ttl=settings.rbac_cache_ttl,
        role_mapping=settings.role_mapping,
        default_role=settings.default_role,
    )
    app[RBAC] = authorizer
    app[AUTHORIZER] = authorizer
    app[GUARD] = SuperuserGuard(store=rbac_store)
    app[ROLES] = RoleService(
        store=rbac_store,
        authorizer=authorizer,
        audit=app[AUDIT],
        user_exists=app[USER_EXISTS],
        guard=app[GUARD],
    )
    # The routes of role administration are declared with the admin routes.

    async def change_feed(app: web.Application) -> AsyncIterator[None]:
        stop = asyncio.Event()
        feed = asyncio.ensure_future(authorizer.listen(deps.store, stop))
        yield
        stop.set()
        feed.cancel()
        await asyncio.wait({feed}, timeout=1)

    app.cleanup_ctx.append(change_feed)
