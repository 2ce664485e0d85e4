"""Typed application keys: what create_app puts on the app for handlers to use."""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as redis
from aiohttp import web

from .accounts.lifecycle import LifecycleService
from .accounts.service import AccountService
from .audit import Audit
from .characters.service import CharacterService
from .config import Settings
from .mail import Mailer
from .passwords import PasswordHasher
from .sessions.service import SessionService


@dataclass(frozen=True)
class Services:
    accounts: AccountService
    characters: CharacterService
    sessions: SessionService
    lifecycle: LifecycleService
    audit: Audit


SETTINGS = web.AppKey("settings", Settings)
STORE = web.AppKey("store", redis.Redis)
HASHER = web.AppKey("hasher", PasswordHasher)
SERVICES = web.AppKey("services", Services)
MAILER = web.AppKey("mailer", Mailer)
