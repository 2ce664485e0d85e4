"""bcrypt hashing in a thread pool, so the event loop never waits on a hash, and a
dummy check for unknown accounts, so a miss costs the same time as a wrong password."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import bcrypt

MAX_PASSWORD_BYTES = 72  # bcrypt ignores everything past this; we refuse instead
_COST_RE = re.compile(r"^\$2[aby]\$(\d\d)\$")


class PasswordHasher:
    """Owns the hash thread pool. `checkpw`/`hashpw` are injectable for tests."""

    def __init__(
        self,
        *,
        cost: int,
        threads: int,
        checkpw: Callable[[bytes, bytes], bool] = bcrypt.checkpw,
        hashpw: Callable[[bytes, bytes], bytes] = bcrypt.hashpw,
    ) -> None:
        if not 4 <= cost <= 31:
            raise ValueError("bcrypt cost must be between 4 and 31")
        self.cost = cost
        self._checkpw = checkpw
        self._hashpw = hashpw
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="bcrypt")
        self._dummy: bytes | None = None

    async def _run(self, fn: Callable, *args):
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def hash(self, password: str) -> str:
        pw = password.encode()
        if len(pw) > MAX_PASSWORD_BYTES:
            raise ValueError("password longer than 72 bytes")  # schemas refuse it first
        digest = await self._run(self._hashpw, pw, bcrypt.gensalt(self.cost))
        return digest.decode()

    async def verify(self, password: str, hashed: str | None) -> bool:
        """Constant work whatever the input: an unknown account (hashed=None), an
        account without a password (hashed="": a guest, a sign-in through a provider) or
        an over-long password still runs one bcrypt check of the configured cost, and
        only a real stored hash can match (never the dummy's own password)."""
        pw = password.encode()
        target = hashed.encode() if hashed else await self._dummy_hash()
        ok_input = bool(hashed) and len(pw) <= MAX_PASSWORD_BYTES
        try:
            matched = await self._run(self._checkpw, pw[:MAX_PASSWORD_BYTES], target)
        except ValueError:  # a corrupt stored hash: never a match
            return False
        return matched and ok_input

    async def _dummy_hash(self) -> bytes:
        if self._dummy is None:
            self._dummy = await self._run(
                bcrypt.hashpw, b"authsvc-dummy-password", bcrypt.gensalt(self.cost)
            )
        return self._dummy

    async def warm_up(self) -> None:
        """Compute the dummy hash before the first login, so the first miss is not cheap."""
        await self._dummy_hash()

    def needs_rehash(self, hashed: str) -> bool:
        m = _COST_RE.match(hashed)
        return m is None or int(m.group(1)) != self.cost

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
