"""Time as the service sees it: an injectable clock (seconds, like time.time) and the
one timestamp format of the API (ISO 8601, UTC, milliseconds)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], float]


def to_ms(seconds: float) -> int:
    return int(seconds * 1000)


def iso(ms: str | int | None) -> str | None:
    if ms is None or ms == "":
        return None
    dt = datetime.fromtimestamp(int(ms) / 1000, UTC)
    return dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")
