"""What a long walk over the store (check, migrate) has done so far, told as it goes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Tally:
    scanned: int = 0
    phase: str = ""  # the part of the walk under way ("claims", "accounts", ...)
    # Called after every batch (and every bounded read of an index): the caller decides
    # how often to tell someone. Never called with the store in a half-written state.
    on_progress: Callable[[Tally], None] | None = field(default=None, repr=False, compare=False)

    def scan(self, n: int = 0) -> None:
        """`n` more keys were read (0: some other bounded step is done)."""
        self.scanned += n
        if self.on_progress is not None:
            self.on_progress(self)

    def start(self, phase: str) -> None:
        self.phase = phase
        self.scan()

    def summary(self) -> str:
        return f"{self.scanned} keys scanned"
