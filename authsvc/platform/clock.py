"""Time as the service sees it: an injectable clock (seconds, like time.time) and the
one timestamp format of the API (ISO 8601, UTC, milliseconds)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

Clock = Callable[[], float]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# The last millisecond the API's timestamp format can show (9999-12-31T23:59:59.999Z):
# a client's date past it (year 9999 with a negative offset is year 10000 in UTC) is
# clamped to it rather than stored and then failing to print.
LAST_MS = 253_402_300_799_999


def to_ms(seconds: float) -> int:
    return int(seconds * 1000)


def iso(ms: str | int | None) -> str | None:
    if ms is None or ms == "":
        return None
    dt = _EPOCH + timedelta(milliseconds=int(ms))  # exact: no float on the way
    return dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")
