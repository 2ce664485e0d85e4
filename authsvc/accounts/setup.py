"""Wiring of accounts: registration and login (AccountService), the account lifecycle
(verification, reset, password change) with its mail queue, and `USER_EXISTS`, which
later features use to check a user id."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from ..appkeys import ACCOUNTS, AUDIT, LIFECYCLE, USER_EXISTS, Deps
from ..identity.throttle import LoginThrottle, RequestLimiter
from ..platform.mail import MailQueue
from ..store import keys
from ..store.accounts import AccountStore
from ..store.ratelimits import RateLimitStore
from ..store.sessions import SessionStore
from ..store.users import UserStore
from . import routes
from .lifecycle import LifecycleService
from .service import AccountService


def setup(app: web.Application, deps: Deps) -> None:
    settings, store = deps.settings, deps.store
    limits = RateLimitStore(store)
    account_store = AccountStore(store)
    accounts = AccountService(
        store=account_store,
        hasher=deps.hasher,
        throttle=LoginThrottle(
            limits,
            account_ip_max=settings.login_max_failures,
            account_max=settings.login_account_max_failures,
            ip_max=settings.login_ip_max_failures,
            window_s=settings.login_failure_window,
        ),
        audit=app[AUDIT],
        require_verified_email=settings.require_verified_email,
        default_roles=(settings.default_role,),
        users=UserStore(store),
        clock=deps.clock,
    )
    app[ACCOUNTS] = accounts
    app[LIFECYCLE] = LifecycleService(
        accounts=accounts,
        account_store=account_store,
        sessions=SessionStore(store),
        hasher=deps.hasher,
        mail=MailQueue(deps.mailer),
        limiter=RequestLimiter(limits, window_s=settings.request_limit_window),
        audit=app[AUDIT],
        public_url=settings.public_url,
        verification_ttl=settings.email_verification_ttl,
        reset_ttl=settings.password_reset_ttl,
        mail_ip_limit=settings.mail_ip_limit,
        mail_account_limit=settings.mail_account_limit,
        register_ip_limit=settings.register_ip_limit,
        clock=deps.clock,
    )

    async def user_exists(user_id: str) -> bool:
        if user_id.isdigit():
            return await account_store.get(user_id) is not None
        return bool(await store.exists(keys.user_record(user_id)))

    app[USER_EXISTS] = user_exists
    routes.api.register(app)

    async def mail_queue(app: web.Application) -> AsyncIterator[None]:
        yield
        await app[LIFECYCLE].mail.close()  # queued mail gets a few seconds to go out

    app.cleanup_ctx.append(mail_queue)
