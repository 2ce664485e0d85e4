"""Wiring of game characters."""

from __future__ import annotations

from aiohttp import web

from ..appkeys import CHARACTERS, Deps
from ..store.characters import CharacterStore
from . import routes
from .service import CharacterService


def setup(app: web.Application, deps: Deps) -> None:
    app[CHARACTERS] = CharacterService(
        store=CharacterStore(deps.store),
        cap=deps.settings.max_characters_per_account,
        clock=deps.clock,
    )
    routes.api.register(app)
