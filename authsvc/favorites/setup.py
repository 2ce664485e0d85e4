"""Wiring of favorites: one service per declared kind, over the media catalog the
settings name."""

from __future__ import annotations

from aiohttp import web

from ..appkeys import AUDIT, FAVORITES, USER_EXISTS, Deps
from ..platform.catalog import Catalog, HttpCatalog, NoCatalog
from ..store.favorites import FavoriteStore
from . import routes
from .kinds import KINDS
from .service import FavoriteService


def setup(app: web.Application, deps: Deps) -> None:
    settings = deps.settings
    catalog: Catalog = NoCatalog()
    if settings.catalog_backend == "http":
        catalog = HttpCatalog(
            url_template=settings.catalog_url,
            session=deps.http,
            timeout=settings.catalog_timeout,
            positive_ttl=settings.catalog_cache_ttl,
            negative_ttl=settings.catalog_negative_cache_ttl,
        )
    app[FAVORITES] = {
        kind.name: FavoriteService(
            kind=kind,
            store=FavoriteStore(deps.store, kind.name),
            catalog=catalog,
            audit=app[AUDIT],
            user_exists=app[USER_EXISTS],
            clock=deps.clock,
        )
        for kind in KINDS
    }
    routes.api.register(app)
