"""Sessions and refresh-token rotation.

Every login is a session (`sid`, carried in the access token) with a refresh token.
Refresh tokens are opaque (`<account_id>.<256 random bits>`), stored only as their
SHA-256, and expire by their key's TTL. A refresh spends the token and issues a
successor in one Lua step. The successor is derived from the spent token with an HMAC
(keyed by the JWT secret), so within REFRESH_REUSE_INTERVAL the spent token yields the
same successor pair again (two tabs refreshing at once stay logged in) without ever
storing a token; after the window a spent token is theft, and the whole session goes."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
import secrets
import time
from dataclasses import dataclass

from ..accounts.service import AccountService
from ..audit.service import Audit
from ..errors import Code, InvalidToken, NotFound
from ..identity.principal import Principal
from ..identity.tokens import IssuedToken, TokenService
from ..platform.clock import Clock, iso, to_ms
from ..store.sessions import SessionStore

log = logging.getLogger("authsvc.sessions")

_REFRESH_RE = re.compile(r"^([1-9][0-9]{0,15})\.([A-Za-z0-9_-]{43})\Z")


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def successor_of(token: str, account_id: str, key: bytes) -> str:
    mac = hmac.new(key, token.encode(), hashlib.sha256).digest()
    return f"{account_id}." + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


@dataclass(frozen=True, slots=True)
class LoginResult:
    access: IssuedToken
    refresh_token: str
    refresh_expires_in: int
    sid: str


def _invalid_refresh(message: str = "the refresh token is invalid, expired or revoked"):
    return InvalidToken(message, code=Code.INVALID_REFRESH_TOKEN)


class SessionService:
    def __init__(
        self,
        *,
        accounts: AccountService,
        store: SessionStore,
        tokens: TokenService,
        audit: Audit,
        refresh_ttl: int,
        reuse_window: int,
        max_sessions: int,
        clock: Clock = time.time,
    ) -> None:
        self._accounts = accounts
        self._store = store
        self._tokens = tokens
        self._audit = audit
        self._refresh_ttl = refresh_ttl
        self._reuse_ms = reuse_window * 1000
        self._max_sessions = max_sessions
        self._clock = clock

    async def login(
        self,
        *,
        identifier: str,
        password: str,
        ip: str | None = None,
        user_agent: str = "",
        device_name: str | None = None,
    ) -> LoginResult:
        acc = await self._accounts.authenticate(identifier=identifier, password=password, ip=ip)
        return await self.open(
            acc["id"], acc["username"], ip=ip, user_agent=user_agent, device_name=device_name
        )

    async def open(
        self,
        account_id: str,
        username: str,
        *,
        ip: str | None = None,
        user_agent: str = "",
        device_name: str | None = None,
        method: str = "password",
    ) -> LoginResult:
        """A new session for an account whose owner has just proven who they are (a
        password, a provider's ID token, a device): the `/login` answer. `method` is
        audited ("password", "oidc:<slug>", "device")."""
        aid = str(account_id)
        sid = secrets.token_urlsafe(12)
        refresh = f"{aid}.{secrets.token_urlsafe(32)}"
        now_ms = to_ms(self._clock())
        fields = {
            "account_id": aid,
            "created_at": str(now_ms),
            "last_seen_at": str(now_ms),
            "user_agent": user_agent[:256],
            "ip": ip or "",
            "device_name": device_name or "",
        }
        evicted = await self._store.create(
            aid,
            sid,
            token_hash(refresh),
            fields,
            now_ms=now_ms,
            ttl_ms=self._refresh_ttl * 1000,
            max_sessions=self._max_sessions,
        )
        if evicted is None:  # disabled or deleted between the proof and now
            raise InvalidToken("the account is gone or disabled", code=Code.INVALID_CREDENTIALS)
        for old in evicted:
            await self._audit.record(
                "session_evicted", user_id=aid, username=username, ip=ip, session_id=old
            )
        extra = {} if method == "password" else {"method": method}
        await self._audit.record(
            "login_success", user_id=aid, username=username, ip=ip, session_id=sid, **extra
        )
        access = self._tokens.issue(subject=aid, username=username, extra={"sid": sid})
        return LoginResult(access, refresh, self._refresh_ttl, sid)

    async def refresh(self, refresh_token: str, *, ip: str | None = None) -> LoginResult:
        m = _REFRESH_RE.match(refresh_token)
        if m is None:
            raise _invalid_refresh()
        aid = m.group(1)
        presented = token_hash(refresh_token)
        successor = successor_of(refresh_token, aid, self._tokens.successor_keys[0])
        now = self._clock()
        iat, jti = int(now), secrets.token_urlsafe(16)  # of the successor access token
        rot = await self._store.rotate(
            aid,
            presented,
            token_hash(successor),
            now_ms=to_ms(now),
            ttl_ms=self._refresh_ttl * 1000,
            reuse_window_ms=self._reuse_ms,
            successor_iat=iat,
            successor_jti=jti,
        )
        if rot.outcome == "invalid":
            raise _invalid_refresh()
        if rot.outcome == "theft":
            log.warning(
                "refresh token reuse detected: session %s of account %s revoked", rot.sid, aid
            )
            await self._audit.record(
                "refresh_reuse_detected", user_id=aid, ip=ip, session_id=rot.sid
            )
            raise InvalidToken(
                "this refresh token was already used; the session has been revoked",
                code=Code.REFRESH_TOKEN_REUSED,
            )
        if rot.outcome == "reused":
            iat, jti = rot.successor_iat, rot.successor_jti
            # The successor that was stored: derived with whichever secret was current.
            for key in self._tokens.successor_keys:
                candidate = successor_of(refresh_token, aid, key)
                if hmac.compare_digest(token_hash(candidate), rot.successor_hash):
                    successor = candidate
                    break
        issued = self._tokens.issue(
            subject=aid, username=rot.username, extra={"sid": rot.sid}, iat=iat, jti=jti
        )
        await self._audit.record(
            "refresh" if rot.outcome == "rotated" else "refresh_reused",
            user_id=aid,
            username=rot.username,
            ip=ip,
            session_id=rot.sid,
        )
        return LoginResult(issued, successor, self._refresh_ttl, rot.sid)

    async def logout(self, principal: Principal, *, ip: str | None = None) -> None:
        if principal.sid:
            await self._store.revoke(str(principal.account_id), mode="one", sid=principal.sid)
        await self._audit.record(
            "logout",
            user_id=str(principal.account_id),
            username=principal.username,
            ip=ip,
            session_id=principal.sid,
        )

    async def list(self, principal: Principal) -> list[dict]:
        sessions = await self._store.list(str(principal.account_id), sid=principal.sid)
        if sessions is None:
            raise InvalidToken("the session behind this token is gone")
        return [
            {
                "id": s["id"],
                "created_at": iso(s.get("created_at")),
                "last_seen_at": iso(s.get("last_seen_at")),
                "user_agent": s.get("user_agent", ""),
                "ip": s.get("ip", ""),
                "device_name": s.get("device_name") or None,
                "current": s["id"] == principal.sid,
            }
            for s in sessions
        ]

    async def revoke(self, principal: Principal, sid: str, *, ip: str | None = None) -> None:
        if not await self._store.revoke(str(principal.account_id), mode="one", sid=sid):
            raise NotFound("session not found")
        await self._audit.record(
            "session_revoked",
            user_id=str(principal.account_id),
            username=principal.username,
            ip=ip,
            session_id=sid,
        )

    async def revoke_all(
        self, principal: Principal, *, include_current: bool, ip: str | None = None
    ) -> int:
        mode = "all" if include_current else "others"
        n = await self._store.revoke(str(principal.account_id), mode=mode, sid=principal.sid)
        await self._audit.record(
            "sessions_revoked",
            user_id=str(principal.account_id),
            username=principal.username,
            ip=ip,
            count=n,
            include_current=include_current,
        )
        return n
