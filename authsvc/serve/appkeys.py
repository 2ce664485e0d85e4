"""Typed application keys: what create_app puts on the app for handlers to use."""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp
import redis.asyncio as redis
from aiohttp import web

from ..accounts.lifecycle import LifecycleService
from ..accounts.service import AccountService
from ..admin.service import AdminService
from ..apikeys.service import ApiKeyService
from ..audit.service import Audit, AuditReader
from ..characters.service import CharacterService
from ..config import Settings
from ..devices.service import DeviceService
from ..favorites.service import FavoriteService
from ..federation.providers import ProviderService
from ..federation.service import SignInService
from ..identity.introspect import Introspector
from ..identity.passwords import PasswordHasher
from ..platform.clock import Clock
from ..platform.mail import Mailer
from ..profiles.service import ProfileService
from ..rbac.service import Authorizer, RoleService
from ..sessions.service import SessionService


@dataclass(frozen=True)
class Services:
    accounts: AccountService
    characters: CharacterService
    sessions: SessionService
    lifecycle: LifecycleService
    audit: Audit
    audit_reader: AuditReader
    authorizer: Authorizer
    roles: RoleService
    admin: AdminService
    api_keys: ApiKeyService
    introspector: Introspector
    favorites: dict[str, FavoriteService]
    profiles: ProfileService
    clock: Clock


SETTINGS = web.AppKey("settings", Settings)
STORE = web.AppKey("store", redis.Redis)
HASHER = web.AppKey("hasher", PasswordHasher)
SERVICES = web.AppKey("services", Services)
MAILER = web.AppKey("mailer", Mailer)
HTTP = web.AppKey("http", aiohttp.ClientSession)  # outgoing HTTP (Keycloak, the catalog)
OIDC_PROVIDERS = web.AppKey("oidc_providers", ProviderService)  # authsvc.federation
SIGN_IN = web.AppKey("sign_in", SignInService)  # authsvc.federation
DEVICES = web.AppKey("devices", DeviceService)  # authsvc.devices
