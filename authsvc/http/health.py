"""Operational endpoints: liveness (/healthz: the process answers), readiness (/readyz:
the store answers) and Prometheus metrics (/metrics)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.core import GaugeMetricFamily

from ..appkeys import STORE
from ..errors import StoreUnavailable
from ..platform import metrics
from ..store import connection, keys
from ..store.connection import OUTAGE_ERRORS, ping
from .web import Api, json_response

log = logging.getLogger("authsvc.health")

api = Api()


@api.route(
    "GET", "/healthz", summary="The process is up", tags=("health",), auth=False, uses_store=False
)
async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


@api.route("GET", "/readyz", summary="The store is reachable", tags=("health",), auth=False)
async def readyz(request: web.Request) -> web.Response:
    # Bounded like every store step (STORE_TIMEOUT), not by ping's own default.
    if not await ping(request.app[STORE], wait=connection.COMMAND_TIMEOUT):
        raise StoreUnavailable("the data store does not answer")
    return json_response({"status": "ready", "store": "ok"})


class ActiveSessions:
    """`authsvc_sessions_active`: live login sessions, counted in the store.

    Sessions are spread over every account's slot, so no one key holds their number:
    the count is a SCAN of the session hashes (in batches, safe on a live store),
    refreshed at most every `interval` seconds and only when /metrics is scraped. A
    scrape never waits for it; it shows the last count (none before the first). Under
    --workers, each worker counts on its own scrapes, and every scrape shows the latest
    count of any worker (metrics.SESSIONS_ACTIVE)."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.value: float | None = None
        self._at = 0.0
        self._task: asyncio.Task | None = None

    def collect(self):
        # Under --workers, metrics.SESSIONS_ACTIVE's shared files carry it instead.
        if self.value is not None and not metrics.MULTIPROCESS:
            gauge = GaugeMetricFamily(metrics.SESSIONS_ACTIVE_NAME, metrics.SESSIONS_ACTIVE_HELP)
            gauge.add_metric([], self.value)
            yield gauge

    def maybe_refresh(self, store) -> None:
        if self.interval <= 0 or (self._task is not None and not self._task.done()):
            return
        if self.value is not None and time.monotonic() - self._at < self.interval:
            return
        self._at = time.monotonic()
        self._task = asyncio.ensure_future(self._count(store))

    async def _count(self, store) -> None:
        n = 0
        try:
            async with asyncio.timeout(60):
                async for key in store.scan_iter(match=keys.SESSION_HASH_GLOB, count=1000):
                    if not key.endswith(keys.SESSION_REFRESH_SUFFIX):
                        n += 1
        except (*OUTAGE_ERRORS, TimeoutError) as exc:
            log.warning("could not count the live sessions: %r", exc)
            return
        self.value = float(n)
        metrics.SESSIONS_ACTIVE.set(n)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


ACTIVE_SESSIONS = web.AppKey("active_sessions", ActiveSessions)


@api.route(
    "GET",
    "/metrics",
    summary="Prometheus metrics (text exposition format)",
    tags=("health",),
    auth=False,
    uses_store=False,
    produces="text/plain",
)
async def prometheus_metrics(request: web.Request) -> web.Response:
    sessions = request.app[ACTIVE_SESSIONS]
    sessions.maybe_refresh(request.app[STORE])
    return web.Response(
        body=metrics.exposition(sessions), headers={"Content-Type": CONTENT_TYPE_LATEST}
    )
