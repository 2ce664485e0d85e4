"""Guests of game clients: `POST /api/v1/auth/device` signs in the account bound to a
device, creating it on first use; the caller's devices can be listed, linked and
unlinked like provider identities.

A device id is a secret the client keeps (16-128 characters): only its SHA-256 is
stored, as the claim key (`identity:device:<sha256>`) and the account's identity entry,
so the store never holds anything that signs in. Every request counts against a
per-address limit (DEVICE_IP_LIMIT per REQUEST_LIMIT_WINDOW), linking a device too (its
409 says another account holds it), so device ids cannot be guessed at scale from one
address."""

from __future__ import annotations

import hashlib
import time
from typing import Any, Protocol

from ..accounts.identities import IdentityAccounts
from ..identity.principal import Principal
from ..platform.clock import Clock, iso, to_ms
from ..store.records import Identity


class SessionsPort(Protocol):
    async def open(
        self,
        account_id: str,
        username: str,
        *,
        ip: str | None = None,
        user_agent: str = "",
        device_name: str | None = None,
        method: str = "password",
    ) -> Any: ...


class LimiterPort(Protocol):
    async def hit_ip(self, scope: str, limit: int, ip: str | None) -> None: ...


class AuditPort(Protocol):
    async def record(self, action: str, **fields: Any) -> None: ...


def device_digest(device_id: str) -> str:
    return hashlib.sha256(device_id.encode()).hexdigest()


def device_view(identity: Identity) -> dict:
    """A device as its owner sees it: a public handle (the digest's first 16 hex
    digits), never anything that signs in."""
    return {
        "id": identity.digest[:16],
        "name": identity.name or None,
        "linked_at": iso(identity.linked_at_ms),
        "last_used_at": iso(identity.last_used_ms),
    }


class DeviceService:
    def __init__(
        self,
        *,
        identities: IdentityAccounts,
        sessions: SessionsPort,
        limiter: LimiterPort,
        audit: AuditPort,
        ip_limit: int,
        clock: Clock = time.time,
    ) -> None:
        self._identities = identities
        self._sessions = sessions
        self._limiter = limiter
        self._audit = audit
        self._ip_limit = ip_limit
        self._clock = clock

    def _identity(self, device_id: str, name: str | None) -> Identity:
        return Identity(
            kind="device",
            digest=device_digest(device_id),
            linked_at_ms=to_ms(self._clock()),
            name=name or "",
        )

    async def sign_in(
        self, device_id: str, *, device_name: str | None, ip: str | None, user_agent: str
    ) -> Any:
        """The /login answer for the account bound to the device; on its first use a
        new guest account (default role, no username, email or password)."""
        await self._limiter.hit_ip("device", self._ip_limit, ip)
        identity = self._identity(device_id, device_name)
        found = await self._identities.find(identity)
        if found is None:
            found = await self._identities.register(identity, ip=ip)
        return await self._sessions.open(
            found.account_id,
            found.username,
            ip=ip,
            user_agent=user_agent,
            device_name=device_name,
            method="device",
        )

    async def list(self, principal: Principal) -> list[dict]:
        return [
            device_view(i)
            for i in await self._identities.of_kind(str(principal.account_id), "device")
        ]

    async def link(self, principal: Principal, device_id: str, *, name: str | None, ip) -> dict:
        """Bind another device to the caller's account (409 when another account has it).
        Counted against the same per-address limit as the sign-in: that 409 says a
        device id is known, so it must not be a faster way to guess them."""
        await self._limiter.hit_ip("device", self._ip_limit, ip)
        identity = self._identity(device_id, name)
        await self._identities.link(str(principal.account_id), identity, sid=principal.sid)
        await self._audit.record(
            "device_linked",
            user_id=principal.user_id,
            username=principal.username,
            ip=ip,
            device=identity.digest[:16],
        )
        return device_view(identity)

    async def unlink(self, principal: Principal, handle: str, *, ip: str | None) -> None:
        """Unbind a device by its handle; never the account's last way to sign in."""
        await self._identities.unlink(str(principal.account_id), "device", digest_prefix=handle)
        await self._audit.record(
            "device_unlinked",
            user_id=principal.user_id,
            username=principal.username,
            ip=ip,
            device=handle,
        )
