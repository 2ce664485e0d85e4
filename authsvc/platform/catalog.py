"""The media catalog (DMM) that favorites point into: does an item exist?

Backends: `CATALOG_BACKEND=none` (no check: any well-formed id is accepted) and
`CATALOG_BACKEND=http` with `CATALOG_URL`, a template such as
`https://catalog.example/api/{kind}s/{id}`: 200 means the item exists, 404 that it does
not, anything else (or a timeout) that the catalog is unavailable. Answers are cached
in process, positive ones for CATALOG_CACHE_TTL and negative ones briefly."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol
from urllib.parse import quote

import aiohttp

from ..errors import Code, DomainError


class CatalogUnavailable(DomainError):
    code = Code.CATALOG_UNAVAILABLE
    message = "the media catalog is unavailable; nothing was stored, retry shortly"


class Catalog(Protocol):
    async def exists(self, kind: str, item_id: str) -> bool: ...


class NoCatalog:
    async def exists(self, kind: str, item_id: str) -> bool:
        return True


class HttpCatalog:
    def __init__(
        self,
        *,
        url_template: str,
        session: Callable[[], aiohttp.ClientSession],
        timeout: float = 2.0,
        positive_ttl: float = 60.0,
        negative_ttl: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        max_entries: int = 50_000,
    ) -> None:
        self._template = url_template
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._ttl = {True: positive_ttl, False: negative_ttl}
        self._clock = clock
        self._cache: dict[tuple[str, str], tuple[float, bool]] = {}
        self._max = max_entries
        self.requests = 0

    async def exists(self, kind: str, item_id: str) -> bool:
        now = self._clock()
        hit = self._cache.get((kind, item_id))
        if hit is not None and hit[0] > now:
            return hit[1]
        url = self._template.format(kind=quote(kind, safe=""), id=quote(item_id, safe=""))
        self.requests += 1
        try:
            async with self._session().get(url, timeout=self._timeout) as resp:
                status = resp.status
        except (aiohttp.ClientError, TimeoutError):
            raise CatalogUnavailable() from None
        if status == 200:
            found = True
        elif status == 404:
            found = False
        else:
            raise CatalogUnavailable()
        if len(self._cache) >= self._max:
            del self._cache[next(iter(self._cache))]
        self._cache[(kind, item_id)] = (now + self._ttl[found], found)
        return found
