"""The audit trail: security events appended to a Redis Stream (`audit:events`).

Writes never fail the request they describe (a store error is logged, not raised) and
never carry secrets: fields whose names look like secrets are dropped before writing.
Entries older than AUDIT_RETENTION_DAYS are trimmed by the XADD itself (MINID), so
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

from ..platform.clock import Clock, iso
from ..platform.metrics import count_event
from ..store import keys
from ..store.connection import OUTAGE_ERRORS

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
        self._buffer: list[tuple[dict[str, str], bool]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._writes: set[asyncio.Task] = set()
        self._last: asyncio.Task | None = None

    async def record(
        self,
        action: str,
        *,
        user_id: str | int | None = None,
        username: str | None = None,
        ip: str | None = None,
        personal: bool = True,
        **details: object,
    ) -> None:
        """Append one event: who (user id, preferred_username), what, targets, where.
        personal=False keeps it out of the users' own activity streams (the event of an
        account's deletion must not recreate the stream the deletion removed)."""
        self.record_nowait(
            action, user_id=user_id, username=username, ip=ip, personal=personal, **details
        )

    def record_nowait(
        self,
        action: str,
        *,
        user_id: str | int | None = None,
        username: str | None = None,
        ip: str | None = None,
        personal: bool = True,
        **details: object,
    ) -> None:
        """`record`, from code that is not a coroutine (a loop callback)."""
        count_event(action)
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
        self._buffer.append((fields, personal))
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
        # Each write waits for the one before it, so the stream keeps recording order.
        previous = self._last if self._last is not None and not self._last.done() else None
        task = self._last = asyncio.ensure_future(self._write(batch, previous))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def flush(self) -> None:
        """Write everything recorded so far (at shutdown, and in tests)."""
        await asyncio.sleep(0)  # events recorded by callbacks already scheduled, too
        self._start_flush()
        if self._writes:
            await asyncio.wait(list(self._writes))

    async def _write(
        self, batch: list[tuple[dict[str, str], bool]], previous: asyncio.Future | None
    ) -> None:
        if previous is not None:
            await asyncio.wait([previous])
        minid_ms = int(self._clock() * 1000) - self._retention_ms
        try:
            async with asyncio.timeout(5):
                pipe = self._r.pipeline(transaction=False)
                for fields, _ in batch:
                    # Exact MINID: an event past retention is gone, not "mostly gone".
                    pipe.xadd(keys.AUDIT_STREAM, fields, minid=str(minid_ms), approximate=False)
                ids = await pipe.execute()
                # The owners' indexes name the entries the stream gave ids to: a second
                # round trip, off the request path. (One script cannot do both: the
                # stream and a user's index live in different cluster slots.)
                pipe = self._r.pipeline(transaction=False)
                for (fields, personal), entry_id in zip(batch, ids, strict=True):
                    owners = {fields.get("user_id"), fields.get("target_user")} - {None}
                    for uid in owners if personal else ():
                        index = keys.user_activity(uid)
                        pipe.zadd(index, {activity_member(entry_id): 0})
                        pipe.zremrangebylex(index, "-", f"({minid_ms:013d}")
                if len(pipe):
                    await pipe.execute()
        except (*OUTAGE_ERRORS, redis.RedisError, TimeoutError):
            log.warning(
                "audit write of %d events failed (actions: %s)",
                len(batch),
                ",".join(sorted({f["action"] for f, _ in batch})),
                exc_info=True,
            )


# Stream ids are "<ms>-<seq>", and activity members pad the ms to 13 digits, so the
# layout covers 1970 to 2286. Bounds from clients are clamped into that range: a date
# before 1970 (or after 2286) is a fair question with an empty (or complete) answer,
# never a stream id the store refuses (`Invalid stream ID`: a 500).
MAX_MS = 10**13 - 1
MAX_SEQ = 2**64 - 1


def clamp_ms(ms: int) -> int:
    return min(max(ms, 0), MAX_MS)


def _clamp_cursor(cursor: str) -> str | None:
    """A client's "<ms>-<seq>" cursor (exclusive, newest first) as a bound the store
    accepts: "" when nothing can be older (0-0), None when everything is (past 2286)."""
    ms_text, _, seq_text = cursor.partition("-")
    ms, seq = int(ms_text), int(seq_text or 0)
    if ms > MAX_MS:
        return None
    if ms == 0 and seq == 0:
        return ""
    return f"{ms}-{min(seq, MAX_SEQ)}"


def activity_member(entry_id: str) -> str:
    """A stream id as a member of a user's activity index: zero-padded, so the index's
    lex order is the stream's order ("…980-10" sorts after "…980-9")."""
    ms, _, seq = entry_id.partition("-")
    return f"{int(ms):013d}-{int(seq or 0):06d}"


def _entry_id(member: str) -> str:
    ms, _, seq = member.partition("-")
    return f"{int(ms)}-{int(seq)}"


def _lex_bound(stream_bound: str, *, upper: bool = False) -> str:
    """An XRANGE bound ("+", "-", "<ms>", "<ms>-<seq>", "(<id>") as a ZRANGEBYLEX bound
    on activity members."""
    if stream_bound in ("+", "-"):
        return stream_bound
    if "-" in stream_bound:
        exclusive = stream_bound.startswith("(")
        return ("(" if exclusive else "[") + activity_member(stream_bound.lstrip("("))
    # A bare time: every entry of that millisecond is in range, at either end.
    ms = int(stream_bound.lstrip("("))
    if upper and ms >= MAX_MS:
        return "+"  # (ms + 1 would need a 14th digit, which sorts wrong)
    return f"({ms + 1:013d}" if upper else f"[{ms:013d}"


def _event(entry_id: str, fields: dict[str, str]) -> dict:
    return {"id": entry_id, **fields, "ts": iso(fields.get("ts"))}


class AuditReader:
    """Queries over the trail, by stream id (which is the event's time in ms)."""

    SCAN_CHUNK = 500
    SCAN_MAX = 5_000  # entries one page may scan while filtering by action
    STATS_MAX = 200_000

    def __init__(self, client: redis.Redis) -> None:
        self._r = client

    async def page(
        self,
        *,
        user_id: str | None = None,
        action: str | None = None,
        since_ms: int | None = None,
        until_ms: int | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> dict:
        """Newest first; a cursor is the id of the last entry returned. With user_id,
        the entries that user's index names; otherwise the whole stream. Filtering by
        action scans at most SCAN_MAX entries per page, so a sparse action may answer
        fewer items with a next_cursor."""
        read = self._user_chunk if user_id else self._stream_chunk
        if cursor:
            cursor = _clamp_cursor(cursor)
            if cursor == "":
                return {"items": [], "next_cursor": None}
        since_ms = None if since_ms is None else clamp_ms(since_ms)
        until_ms = None if until_ms is None else clamp_ms(until_ms)
        high = f"({cursor}" if cursor else (str(until_ms) if until_ms is not None else "+")
        low = str(since_ms) if since_ms is not None else "-"
        # Without a filter, one entry past the page tells whether there is a next page.
        count = self.SCAN_CHUNK if action else limit + 1
        items: list[dict] = []
        scanned = 0
        last: str | None = None
        more = False
        while len(items) < limit and scanned < self.SCAN_MAX and high is not None:
            chunk, high = await read(user_id, high, low, count)
            for entry_id, fields in chunk:
                if len(items) == limit:
                    more = True
                    break
                scanned += 1
                last = entry_id
                if action is None or fields.get("action") == action:
                    items.append(_event(entry_id, fields))
        if not more and last is not None and high is not None:
            more = bool((await read(user_id, f"({last}", low, 1))[0])
        return {"items": items, "next_cursor": last if more else None}

    async def _stream_chunk(
        self, _user_id: str | None, high: str, low: str, count: int
    ) -> tuple[list, str | None]:
        """Up to `count` entries of the whole trail, newest first, and the bound to read
        on from (None at the end)."""
        chunk = await self._r.xrevrange(keys.AUDIT_STREAM, high, low, count=count)
        return chunk, f"({chunk[-1][0]}" if len(chunk) == count else None

    async def _user_chunk(
        self, user_id: str, high: str, low: str, count: int
    ) -> tuple[list, str | None]:
        """The same over the entries a user's index names: ids from the index, then the
        entries from the stream in one pipeline."""
        members = await self._r.zrevrangebylex(
            keys.user_activity(user_id), _lex_bound(high, upper=True), _lex_bound(low), 0, count
        )
        ids = [_entry_id(m) for m in members]
        pipe = self._r.pipeline(transaction=False)
        for entry_id in ids:
            pipe.xrange(keys.AUDIT_STREAM, entry_id, entry_id)
        found = await pipe.execute() if ids else []
        # An entry the stream has trimmed already is skipped; the owner's next event
        # trims its index entry.
        entries = [e[0] for e in found if e]
        return entries, f"({ids[-1]}" if len(ids) == count else None

    async def stats(self, *, since_ms: int, until_ms: int) -> dict:
        since_ms, until_ms = clamp_ms(since_ms), clamp_ms(until_ms)
        counts: dict[str, int] = {}
        low, total, truncated = str(since_ms), 0, False
        while True:
            chunk = await self._r.xrange(keys.AUDIT_STREAM, low, str(until_ms), count=5000)
            for _, fields in chunk:
                action = fields.get("action", "?")
                counts[action] = counts.get(action, 0) + 1
            total += len(chunk)
            if len(chunk) < 5000:
                break
            if total >= self.STATS_MAX:
                truncated = True
                break
            low = f"({chunk[-1][0]}"
        return {
            "since": iso(since_ms),
            "until": iso(until_ms),
            "total": total,
            "by_action": dict(sorted(counts.items())),
            "truncated": truncated,
        }
