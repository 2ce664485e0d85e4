"""Every typed application key in one place (aiohttp-demos' `typedefs.py` habit): what
the wiring puts on the application, and what handlers and later features read.

Each feature's `setup(app, deps)` (authsvc/<feature>/setup.py) builds its stores and
services from `Deps` and from the keys earlier features set, and puts its own service
under its key here; serve/app.py calls the setups in dependency order. The keys the HTTP
edge itself needs (the authenticator, the permission check, liveness, trusted proxies)
are declared in http/web.py, which must not depend on the features, and re-exported."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp
import redis.asyncio as redis
from aiohttp import web

from .accounts.lifecycle import LifecycleService
from .accounts.service import AccountService
from .admin.service import AdminService
from .apikeys.service import ApiKeyService
from .audit.service import Audit, AuditReader
from .characters.service import CharacterService
from .config import Settings
from .devices.service import DeviceService
from .favorites.service import FavoriteService
from .federation.providers import ProviderService
from .federation.service import SignInService
from .http.web import AUTHENTICATOR, AUTHORIZER, LIVENESS, TRUSTED_PROXIES
from .identity.introspect import Introspector
from .identity.passwords import PasswordHasher
from .identity.tokens import TokenService
from .platform.clock import Clock
from .platform.mail import Mailer
from .profiles.service import ProfileService
from .rbac.guard import SuperuserGuard
from .rbac.service import Authorizer, RoleService
from .sessions.service import SessionService

__all__ = ["AUTHENTICATOR", "AUTHORIZER", "LIVENESS", "TRUSTED_PROXIES"]


@dataclass(frozen=True, kw_only=True)
class Deps:
    """What every feature's setup may use: the boot settings and the shared resources.
    The store client is handed only to store classes (authsvc/store/)."""

    settings: Settings
    clock: Clock
    store: redis.Redis
    http: Callable[[], aiohttp.ClientSession]  # outgoing HTTP, open while the app runs
    hasher: PasswordHasher
    mailer: Mailer
    tokens: TokenService


UserExists = Callable[[str], Awaitable[bool]]

# Resources
SETTINGS = web.AppKey("settings", Settings)
STORE = web.AppKey("store", redis.Redis)
HTTP = web.AppKey("http", aiohttp.ClientSession)  # outgoing HTTP (Keycloak, providers, catalog)
HASHER = web.AppKey("hasher", PasswordHasher)
MAILER = web.AppKey("mailer", Mailer)
CLOCK: web.AppKey[Clock] = web.AppKey("clock")
USER_EXISTS: web.AppKey[UserExists] = web.AppKey("user_exists")

# Services, in the order serve/app.py wires them
AUDIT = web.AppKey("audit", Audit)
AUDIT_READER = web.AppKey("audit_reader", AuditReader)
ACCOUNTS = web.AppKey("accounts", AccountService)
LIFECYCLE = web.AppKey("lifecycle", LifecycleService)
SESSIONS = web.AppKey("sessions", SessionService)
RBAC = web.AppKey("rbac", Authorizer)  # the same object as AUTHORIZER, typed
ROLES = web.AppKey("roles", RoleService)
GUARD = web.AppKey("guard", SuperuserGuard)
API_KEYS = web.AppKey("api_keys", ApiKeyService)
INTROSPECTOR = web.AppKey("introspector", Introspector)
CHARACTERS = web.AppKey("characters", CharacterService)
FAVORITES: web.AppKey[dict[str, FavoriteService]] = web.AppKey("favorites")  # by kind
ADMIN = web.AppKey("admin", AdminService)
PROFILES = web.AppKey("profiles", ProfileService)
OIDC_PROVIDERS = web.AppKey("oidc_providers", ProviderService)
SIGN_IN = web.AppKey("sign_in", SignInService)
DEVICES = web.AppKey("devices", DeviceService)
