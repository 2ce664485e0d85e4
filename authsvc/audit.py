"""The audit trail: security events appended to a Redis Stream (`audit:events`).

Writes never fail the request they describe (a store error is logged, not raised) and
never carry secrets: fields whose names look like secrets are dropped before writing.
Entries older than AUDIT_RETENTION_DAYS are trimmed by the XADD itself (MINID ~), so
no sweeper is needed."""

from __future__ import annotations

import logging
import time

import redis.asyncio as redis

from .clock import Clock
from .store import keys
from .store.connection import OUTAGE_ERRORS

log = logging.getLogger("authsvc.audit")

_SECRET_WORDS = ("password", "secret", "token", "api_key", "apikey", "hash")


def _is_secret(name: str) -> bool:
    low = name.lower()
    return any(word in low for word in _SECRET_WORDS)


class Audit:
    def __init__(
        self, client: redis.Redis, *, retention_days: int = 90, clock: Clock = time.time
    ) -> None:
        self._r = client
        self._retention_ms = retention_days * 86_400_000
        self._clock = clock

    async def record(
        self,
        action: str,
        *,
        user_id: str | int | None = None,
        username: str | None = None,
        ip: str | None = None,
        **details: object,
    ) -> None:
        """Append one event: who (user id, preferred_username), what, targets, where."""
        now_ms = int(self._clock() * 1000)
        fields: dict[str, str] = {"action": action, "ts": str(now_ms)}
        if user_id is not None:
            fields["user_id"] = str(user_id)
        if username:
            fields["username"] = username
        if ip:
            fields["ip"] = ip
        for name, value in details.items():
            if value is None or _is_secret(name):
                continue
            fields[name] = str(value)
        try:
            await self._r.xadd(
                keys.AUDIT_STREAM,
                fields,
                minid=str(now_ms - self._retention_ms),
                approximate=True,
            )
        except (*OUTAGE_ERRORS, redis.RedisError):
            log.warning(
                "audit write failed for action=%s user_id=%s", action, user_id, exc_info=True
            )
