"""Account rules: registration, password checks behind the brute-force limits, the
caller's own account. No HTTP here."""

from __future__ import annotations

import logging
import time

from ..audit.service import Audit
from ..errors import Code, Conflict, DomainError, Forbidden, InvalidToken, Unauthorized
from ..identity.passwords import PasswordHasher
from ..identity.principal import Principal
from ..identity.throttle import LoginThrottle
from ..platform.clock import Clock, iso, to_ms
from ..platform.ids import new_id
from ..platform.normalize import email_lc, username_lc
from ..store import keys
from ..store.accounts import AccountStore, ClaimTaken, NewAccount, RegistrationAbandoned
from ..store.records import Identity
from ..store.users import UserStore

log = logging.getLogger("authsvc.accounts")


def account_view(acc: dict[str, str]) -> dict:
    """The public shape of an account: never the password hash. An account may lack a
    username and email (a guest of a game client, a sign-in through a provider that
    asserted none): they are null, and `credentials_set` says whether a password is set."""
    return {
        "id": int(acc["id"]),
        "username": acc.get("username") or None,
        "email": acc.get("email") or None,
        "created_at": iso(acc["created_at"]),
        "updated_at": iso(acc.get("updated_at") or acc["created_at"]),
        "last_login_at": iso(acc.get("last_login_at")),
        "is_active": acc.get("is_active") == "1",
        "email_verified": acc.get("email_verified") == "1",
        "credentials_set": bool(acc.get("password")),
    }


def claim_for(identifier: str) -> tuple[str, str, str]:
    """(claim key, field, normalised value) a login name resolves through: email if it
    has an @, else username."""
    if "@" in identifier:
        value = email_lc(identifier)
        return keys.email_claim(value), "email", value
    value = username_lc(identifier)
    return keys.username_claim(value), "username", value


class AccountService:
    def __init__(
        self,
        *,
        store: AccountStore,
        hasher: PasswordHasher,
        throttle: LoginThrottle,
        audit: Audit,
        require_verified_email: bool = False,
        default_roles: tuple[str, ...] = ("user",),
        users: UserStore | None = None,
        clock: Clock = time.time,
    ) -> None:
        self._users = users
        self._default_roles = default_roles
        self._store = store
        self._hasher = hasher
        self._throttle = throttle
        self._audit = audit
        self._require_verified = require_verified_email
        self._clock = clock

    async def register(
        self,
        *,
        username: str,
        email: str,
        password: str,
        ip: str | None = None,
        roles: tuple[str, ...] | None = None,
        email_verified: bool = False,
    ) -> dict:
        password_hash = await self._hasher.hash(password)
        for _ in range(3):  # a fresh id on the (2**-53-rare) id collision
            now_ms = to_ms(self._clock())
            acc = NewAccount(
                id=new_id(),
                username=username,
                email=email,
                username_lc=username_lc(username),
                email_lc=email_lc(email),
                password_hash=password_hash,
                created_at_ms=now_ms,
                roles=self._default_roles if roles is None else roles,
                email_verified=email_verified,
            )
            try:
                created = await self._store.create(acc, now_ms=now_ms)
            except ClaimTaken as taken:
                code = Code.USERNAME_TAKEN if taken.field == "username" else Code.EMAIL_TAKEN
                raise Conflict(
                    f"that {taken.field} is already registered",
                    code=code,
                    fields={taken.field: [f"This {taken.field} is already taken."]},
                ) from None
            except RegistrationAbandoned:
                raise Conflict("registration timed out; please retry") from None
            if created:
                log.info("account registered id=%s", acc.id)
                await self._audit.record("register", user_id=acc.id, username=username, ip=ip)
                return {
                    "id": acc.id,
                    "username": username,
                    "email": email,
                    "created_at": iso(now_ms),
                    "updated_at": iso(now_ms),
                    "last_login_at": None,
                    "is_active": True,
                    "email_verified": email_verified,
                    "credentials_set": True,
                }
        raise DomainError("could not allocate an account id")

    async def register_federated(
        self,
        *,
        username: str,
        email: str,
        email_verified: bool,
        identity: Identity,
        roles: tuple[str, ...] | None = None,
        ip: str | None = None,
    ) -> str:
        """A new account that signs in with `identity` (an OIDC identity, a device) and
        no password; `username` and `email` may be empty. Returns its id. Conflict with
        USERNAME_TAKEN, EMAIL_TAKEN or IDENTITY_TAKEN (a concurrent registration of the
        same identity won)."""
        for _ in range(3):  # a fresh id on the (2**-53-rare) id collision
            now_ms = to_ms(self._clock())
            acc = NewAccount(
                id=new_id(),
                username=username,
                email=email,
                username_lc=username_lc(username),
                email_lc=email_lc(email),
                password_hash="",
                created_at_ms=now_ms,
                roles=self._default_roles if roles is None else roles,
                email_verified=email_verified and bool(email),
                identity=identity,
            )
            try:
                created = await self._store.create(acc, now_ms=now_ms)
            except ClaimTaken as taken:
                code = {
                    "username": Code.USERNAME_TAKEN,
                    "email": Code.EMAIL_TAKEN,
                }.get(taken.field, Code.IDENTITY_TAKEN)
                raise Conflict(f"that {taken.field} is already registered", code=code) from None
            except RegistrationAbandoned:
                raise Conflict("registration timed out; please retry") from None
            if created:
                log.info("account registered id=%s via %s", acc.id, identity.kind)
                await self._audit.record(
                    "register",
                    user_id=acc.id,
                    username=username,
                    ip=ip,
                    method=f"oidc:{identity.slug}" if identity.kind == "oidc" else identity.kind,
                )
                return str(acc.id)
        raise DomainError("could not allocate an account id")

    async def set_credentials(
        self, principal: Principal, *, username: str, email: str, password: str, ip: str | None
    ) -> dict:
        """Give an account without a password (a guest, a sign-in through a provider) a
        username, email and password, claimed as registration claims them; its id,
        characters, favorites and identities stay. The email is unverified unless it is
        the verified one the account had."""
        acc = await self._store.get_for_caller(principal.account_id, sid=principal.sid)
        if acc is None:
            raise InvalidToken("the account or session behind this token is gone")
        if acc.get("password"):
            raise Conflict(
                "this account has a password already; change it with "
                "/api/v1/users/me/change-password",
                code=Code.CREDENTIALS_EXIST,
            )
        password_hash = await self._hasher.hash(password)
        keep_verified = acc.get("email_verified") == "1" and email_lc(
            acc.get("email", "")
        ) == email_lc(email)
        try:
            status = await self._store.set_credentials(
                acc["id"],
                sid=principal.sid,
                old_username=acc.get("username", ""),
                old_email=acc.get("email", ""),
                username=username,
                email=email,
                password_hash=password_hash,
                email_verified=keep_verified,
                now_ms=to_ms(self._clock()),
            )
        except ClaimTaken as taken:
            code = Code.USERNAME_TAKEN if taken.field == "username" else Code.EMAIL_TAKEN
            raise Conflict(
                f"that {taken.field} is already registered",
                code=code,
                fields={taken.field: [f"This {taken.field} is already taken."]},
            ) from None
        if status == "credentials_set":
            raise Conflict("this account has a password already", code=Code.CREDENTIALS_EXIST)
        if status != "ok":
            raise Conflict("the account changed meanwhile; retry")
        await self._audit.record("credentials_set", user_id=acc["id"], username=username, ip=ip)
        return await self.me(principal.account_id, sid=principal.sid)

    async def authenticate(
        self, *, identifier: str, password: str, ip: str | None = None
    ) -> dict[str, str]:
        """The account for a username-or-email and password.

        The brute-force limits are checked first, before any bcrypt work. Every miss
        then costs one bcrypt check and answers the same error, so neither the message
        nor the time tells whether the account exists."""
        claim, field, value = claim_for(identifier)
        acc = await self._store.resolve(claim, field=field, value_lc=value)
        subject = acc["id"] if acc else "u:" + value
        known = await self._throttle.is_known(subject, ip)  # same work for unknown names
        await self._throttle.check(subject, ip, known_ip=known)
        ok = await self._hasher.verify(password, acc["password"] if acc else None)
        if not ok or acc is None:
            await self._throttle.failed(subject, ip)
            await self._audit.record(
                "login_failure",
                user_id=acc["id"] if acc else None,
                ip=ip,
                identifier=identifier[:64],
            )
            raise Unauthorized("invalid username or password")
        # Only said after the right password: these reveal nothing to a guesser.
        if acc.get("is_active") != "1":
            raise Forbidden("this account is disabled", code=Code.ACCOUNT_DISABLED)
        if self._require_verified and acc.get("email_verified") != "1":
            raise Forbidden(
                "verify your email address first (see the message we sent, or POST "
                "/api/v1/auth/resend-verification)",
                code=Code.EMAIL_NOT_VERIFIED,
            )
        now_ms = to_ms(self._clock())
        await self._throttle.succeeded(subject, ip, now_ms=now_ms)
        stamp = {"last_login_at": str(now_ms)}
        if self._hasher.needs_rehash(acc["password"]):
            # BCRYPT_COST changed since this hash was made: upgrade it while we know
            # the password.
            stamp["password"] = await self._hasher.hash(password)
        await self._store.update_fields(acc["id"], stamp)
        return acc

    async def me(self, account_id: int, *, sid: str = "") -> dict:
        """The caller's own account; a token outliving its account or session is refused."""
        acc = await self._store.get_for_caller(account_id, sid=sid)
        if acc is None:
            raise InvalidToken("the account or session behind this token is gone")
        return account_view(acc)

    async def external_me(self, principal: Principal) -> dict:
        """A Keycloak user's own record (upserted from their token's claims)."""
        user = await self._users.get(principal.user_id)
        if user is None:
            raise InvalidToken("the user behind this token is gone")
        return {
            "id": principal.user_id,
            "kind": principal.kind,
            "username": principal.username,
            "display_name": user.get("display_name", ""),
            "email": user.get("email") or None,
            "created_at": iso(user.get("created_at")),
            "updated_at": iso(user.get("updated_at")),
        }

    async def find_by_email(self, email: str) -> dict[str, str] | None:
        value = email_lc(email)
        return await self._store.resolve(keys.email_claim(value), field="email", value_lc=value)
