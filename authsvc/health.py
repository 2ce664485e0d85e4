"""Liveness (/healthz: the process answers) and readiness (/readyz: the store answers)."""

from __future__ import annotations

from aiohttp import web

from .app_keys import STORE
from .errors import StoreUnavailable
from .store.connection import ping
from .web import Api, json_response

api = Api()


@api.route("GET", "/healthz", summary="The process is up", tags=("health",), auth=False)
async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


@api.route("GET", "/readyz", summary="The store is reachable", tags=("health",), auth=False)
async def readyz(request: web.Request) -> web.Response:
    if not await ping(request.app[STORE]):
        raise StoreUnavailable("the data store does not answer")
    return json_response({"status": "ready", "store": "ok"})
