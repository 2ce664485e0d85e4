"""The audit trail: security events appended to a Redis Stream (`audit:events`).

Writes never fail the request they describe (a store error is logged, not raised) and
never carry secrets: fields whose names look like secrets are dropped before writing.
Entries older than AUDIT_RETENTION_DAYS are trimmed by the XADD itself (MINID ~), so
no sweeper is needed.

Writes are buffered: `record` returns at once, and the buffer goes to the store in one
pipeline every FLUSH_INTERVAL (5 ms) or at FLUSH_MAX events, whichever comes first, and
at shutdown. A refresh then costs a share of one round trip instead of a whole one; the
price is that a crash loses at most the last few milliseconds of events."""

from __future__ import annotations

import asyncio
import logging
import time

import redis.asyncio as redis

from .clock import Clock
from .store import keys
from .store.connection import OUTAGE_ERRORS

log = logging.getLogger("authsvc.audit")

FLUSH_INTERVAL = 0.005  # seconds an event may wait in the buffer
FLUSH_MAX = 256  # events that trigger a write at once

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
        self._buffer: list[dict[str, str]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._writes: set[asyncio.Task] = set()

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
        self._buffer.append(fields)
        if len(self._buffer) >= FLUSH_MAX:
            self._start_flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(FLUSH_INTERVAL, self._start_flush)

    def _start_flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._buffer:
            return
        batch, self._buffer = self._buffer, []
        task = asyncio.ensure_future(self._write(batch))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def flush(self) -> None:
        """Write everything recorded so far (at shutdown, and in tests)."""
        self._start_flush()
        if self._writes:
            await asyncio.wait(list(self._writes))

    async def _write(self, batch: list[dict[str, str]]) -> None:
        minid = str(int(self._clock() * 1000) - self._retention_ms)
        try:
            async with asyncio.timeout(5):
                pipe = self._r.pipeline(transaction=False)
                for fields in batch:
                    pipe.xadd(keys.AUDIT_STREAM, fields, minid=minid, approximate=True)
                await pipe.execute()
        except (*OUTAGE_ERRORS, redis.RedisError, TimeoutError):
            log.warning(
                "audit write of %d events failed (actions: %s)",
                len(batch),
                ",".join(sorted({f["action"] for f in batch})),
                exc_info=True,
            )
