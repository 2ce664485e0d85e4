"""The account lifecycle: email verification, password reset and change, disabling.

Link tokens (verification, reset) are `<account_id>.<256 random bits>`, stored only as
their SHA-256 in one key per account and purpose with its TTL, so they are single-use,
expire by themselves, and a newer link (or a password change) voids the older one.
Requests that take an email address always answer the same way, whether or not an
account has it, and after the same work: the same store round trips (to account:{0},
which never exists, when there is no account to mail), the same token generated and
hashed. What differs, the audit event and queueing the mail, runs after the answer
is written (a loop callback), off the request path."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
import secrets
import time

from ..audit.service import Audit
from ..errors import Code, Conflict, DomainError, InvalidToken, NotFound
from ..identity.passwords import PasswordHasher
from ..identity.principal import Principal
from ..identity.throttle import RequestLimiter
from ..platform.clock import Clock, to_ms
from ..platform.mail import MailQueue, Message
from ..store import keys
from ..store.accounts import AccountStore
from ..store.sessions import SessionStore
from .service import AccountService

_LINK_RE = re.compile(r"^([1-9][0-9]{0,15})\.([A-Za-z0-9_-]{43})\Z")


def _digest(token: str) -> str:
    """What the store keeps of a link token: its SHA-256, base64url (43 characters, so
    the account field stays short), never the token."""
    return base64.urlsafe_b64encode(hashlib.sha256(token.encode()).digest()).decode()[:43]


def _parse_link(token: str) -> tuple[str, str]:
    m = _LINK_RE.match(token)
    if m is None:
        raise _bad_link()
    return m.group(1), _digest(token)


def _bad_link() -> DomainError:
    return DomainError(
        "this link is invalid, used or expired; ask for a new one", code=Code.INVALID_LINK_TOKEN
    )


class LifecycleService:
    def __init__(
        self,
        *,
        accounts: AccountService,
        account_store: AccountStore,
        sessions: SessionStore,
        hasher: PasswordHasher,
        mail: MailQueue,
        limiter: RequestLimiter,
        audit: Audit,
        public_url: str,
        verification_ttl: int,
        reset_ttl: int,
        mail_ip_limit: int,
        mail_account_limit: int,
        register_ip_limit: int,
        clock: Clock = time.time,
    ) -> None:
        self._accounts = accounts
        self._store = account_store
        self._sessions = sessions
        self._hasher = hasher
        self.mail = mail
        self._limiter = limiter
        self._audit = audit
        self._public_url = public_url.rstrip("/")
        self._verification_ttl = verification_ttl
        self._reset_ttl = reset_ttl
        self._mail_ip_limit = mail_ip_limit
        self._mail_account_limit = mail_account_limit
        self._register_ip_limit = register_ip_limit
        self._clock = clock

    async def register(
        self, *, username: str, email: str, password: str, ip: str | None = None
    ) -> dict:
        """A new account, limited per address, with a verification message on its way."""
        await self._limiter.hit_ip("register", self._register_ip_limit, ip)
        account = await self._accounts.register(
            username=username, email=email, password=password, ip=ip
        )
        await self.send_verification(account["id"], email)
        return account

    async def set_credentials(
        self, principal: Principal, *, username: str, email: str, password: str, ip: str | None
    ) -> dict:
        """An account without a password gains username, email and password (see
        AccountService.set_credentials); a new email gets its verification message.
        It claims a username and an email as registration does, so it counts against
        registration's per-address limit too: otherwise a guest (free to make) could
        test addresses for `email_taken` at any rate."""
        await self._limiter.hit_ip("register", self._register_ip_limit, ip)
        account = await self._accounts.set_credentials(
            principal, username=username, email=email, password=password, ip=ip
        )
        if not account["email_verified"]:
            await self.send_verification(account["id"], email)
        return account

    # -- email verification -----------------------------------------------------------

    async def send_verification(self, account_id: str | int, email: str) -> None:
        token = await self._put_link(str(account_id), keys.VERIFY_LINK, self._verification_ttl)
        if token is not None:  # (None: deleted meanwhile, no mail for an account gone)
            self._mail_verification(email, token)

    async def _put_link(self, account_id: str, field: str, ttl: int) -> str | None:
        """A new single-use link token, its digest stored in the account (replacing any
        earlier one); None when there is no such account. For keys.NO_ACCOUNT the same
        work is done and nothing is stored."""
        token = f"{account_id}.{secrets.token_urlsafe(32)}"
        expires_ms = to_ms(self._clock()) + ttl * 1000
        if not await self._store.put_link(account_id, field, _digest(token), expires_ms=expires_ms):
            return None
        return token

    async def _mailable(self, email: str, kind: str, wanted) -> dict[str, str] | None:
        """The account to mail a link of `kind` ("verify", "reset") to, if one has the
        address, `wanted(account)` holds and its per-account limit allows; the same
        round trips in every case (resolve, then one counter hit: the account's, or
        keys.NO_ACCOUNT's)."""
        acc = await self._accounts.find_by_email(email)
        if acc is not None and not wanted(acc):
            acc = None
        # Mail-bombing guard: a few mails of each kind per account and window. Over it,
        # the request still answers 202 and simply sends nothing.
        subject = acc["id"] if acc is not None else keys.NO_ACCOUNT
        if not await self._limiter.under(f"mail_{kind}", self._mail_account_limit, "acct", subject):
            return None
        return acc

    def _mail_verification(self, email: str, token: str) -> None:
        hours = self._verification_ttl // 3600
        self.mail.send(
            Message(
                to=email,
                subject="Verify your email address",
                body=(
                    "Confirm this address for your account by opening:\n\n"
                    f"{self._public_url}/verify-email?token={token}\n\n"
                    f'or POST {{"token": "{token}"}} to /api/v1/auth/verify-email.\n'
                    f"The link works once, for {hours} hours.\n"
                ),
            )
        )

    async def verify_email(self, token: str, *, ip: str | None = None) -> None:
        account_id, digest = _parse_link(token)
        if not await self._store.verify_email(account_id, digest, now_ms=to_ms(self._clock())):
            raise _bad_link()
        await self._audit.record("email_verified", user_id=account_id, ip=ip)

    async def resend_verification(self, email: str, *, ip: str | None = None) -> None:
        await self._limiter.hit_ip("mail", self._mail_ip_limit, ip)
        acc = await self._mailable(email, "verify", _unverified)
        target = acc["id"] if acc is not None else keys.NO_ACCOUNT
        token = await self._put_link(target, keys.VERIFY_LINK, self._verification_ttl)
        asyncio.get_running_loop().call_soon(self._verification_requested, acc, token)

    def _verification_requested(self, acc: dict[str, str] | None, token: str | None) -> None:
        if acc is not None and token is not None:
            self._mail_verification(acc["email"], token)

    # -- password reset and change ------------------------------------------------------

    async def forgot_password(self, email: str, *, ip: str | None = None) -> None:
        await self._limiter.hit_ip("mail", self._mail_ip_limit, ip)
        acc = await self._mailable(email, "reset", _active)
        target = acc["id"] if acc is not None else keys.NO_ACCOUNT
        token = await self._put_link(target, keys.RESET_LINK, self._reset_ttl)
        # (Scheduled for either outcome: the answer must not wait on which.)
        asyncio.get_running_loop().call_soon(self._reset_requested, acc, token, ip)

    def _reset_requested(
        self, acc: dict[str, str] | None, token: str | None, ip: str | None
    ) -> None:
        """After the answer: the audit event and the mail of a reset link."""
        if acc is None or token is None:
            return
        self._audit.record_nowait(
            "password_reset_requested", user_id=acc["id"], username=acc["username"], ip=ip
        )
        minutes = self._reset_ttl // 60
        self.mail.send(
            Message(
                to=acc["email"],
                subject="Reset your password",
                body=(
                    "Someone (hopefully you) asked to reset the password of your account.\n"
                    f"Open {self._public_url}/reset-password?token={token}\n"
                    f'or POST {{"token": "{token}", "new_password": "..."}} to '
                    "/api/v1/auth/reset-password.\n"
                    f"The link works once, for {minutes} minutes. If it was not you, ignore "
                    "this message: your password is unchanged.\n"
                ),
            )
        )

    async def reset_password(self, token: str, new_password: str, *, ip: str | None = None) -> None:
        account_id, digest = _parse_link(token)
        new_hash = await self._hasher.hash(new_password)
        revoked = await self._sessions.set_password(
            account_id, new_hash, now_ms=to_ms(self._clock()), reset_digest=digest
        )
        if revoked is None:
            raise _bad_link()
        await self._audit.record(
            "password_reset", user_id=account_id, ip=ip, sessions_revoked=revoked
        )

    async def change_password(
        self, principal: Principal, current: str, new: str, *, ip: str | None = None
    ) -> int:
        acc = await self._store.get_for_caller(principal.account_id, sid=principal.sid)
        if acc is None:
            raise InvalidToken("the account or session behind this token is gone")
        if not acc.get("password"):
            raise Conflict(
                "this account has no password yet; set one with POST /api/v1/users/me/credentials",
                code=Code.NO_PASSWORD,
            )
        if not await self._hasher.verify(current, acc["password"]):
            raise DomainError(
                "the current password is wrong",
                code=Code.WRONG_PASSWORD,
                fields={"current_password": ["Wrong password."]},
            )
        new_hash = await self._hasher.hash(new)
        revoked = await self._sessions.set_password(
            acc["id"], new_hash, now_ms=to_ms(self._clock()), keep_sid=principal.sid
        )
        if revoked is None:
            raise InvalidToken("the account behind this token is gone")
        await self._audit.record(
            "password_changed",
            user_id=acc["id"],
            username=acc["username"],
            ip=ip,
            sessions_revoked=revoked,
        )
        return revoked

    # -- enabling and disabling ---------------------------------------------------------

    async def set_active(
        self, account_id: str | int, active: bool, *, actor: str | None = None
    ) -> int:
        """Disabling revokes every session and refresh token at once."""
        revoked = await self._sessions.set_active(
            str(account_id), active, now_ms=to_ms(self._clock())
        )
        if revoked is None:
            raise NotFound("account not found")
        await self._audit.record(
            "account_enabled" if active else "account_disabled",
            user_id=account_id,
            actor=actor,
            sessions_revoked=revoked,
        )
        return revoked


def _active(acc: dict[str, str]) -> bool:
    return acc.get("is_active") == "1"


def _unverified(acc: dict[str, str]) -> bool:
    return acc.get("is_active") == "1" and acc.get("email_verified") != "1"
