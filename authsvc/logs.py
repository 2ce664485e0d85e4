"""Structured logs: one JSON object per line, each carrying the id of the request it
belongs to (`X-Request-ID`, taken from the caller when it is sane, else made here, and
always returned in the response).

What gets logged never holds a secret: settings are logged masked, request bodies and
headers are never logged, and the error middleware logs the route, not the request."""

from __future__ import annotations

import contextvars
import itertools
import json
import logging
import re
import secrets
import sys
import time

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from .metrics import observe_request

REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")
REQUEST_ID_HEADER = "X-Request-ID"
# On every answer: no content sniffing, and no software version to look up exploits for
# (aiohttp's default Server header is "Python/3.x aiohttp/3.x").
EDGE_HEADERS = {"X-Content-Type-Options": "nosniff", "Server": "authsvc"}
# Answers carry personal data (accounts, sessions, tokens, keys...) unless a route says
# otherwise with a Cache-Control of its own (the OpenAPI document is public).
DEFAULT_CACHE_CONTROL = "no-store"
# A caller's id is kept only if it cannot smuggle anything into a log line or header.
_SANE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}\Z")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        request_id = REQUEST_ID.get()
        if request_id:
            entry["request_id"] = request_id
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class _MalformedRequests(logging.Filter):
    """aiohttp logs a request it cannot parse (a NUL in a header, say) as an ERROR with a
    traceback, after answering it 400 itself. That is the client's fault, not ours: one
    warning line, no traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.msg = "malformed request refused: %s"
            record.args = (str(exc.message).splitlines()[0] if exc.message else type(exc).__name__,)
            record.exc_info = record.exc_text = None
        return True


def configure(level: str, fmt: str = "json") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.server").addFilter(_MalformedRequests())


# Request ids need to be unique, not secret: a per-process random prefix and a counter
# cost far less per request than fresh randomness.
_PREFIX = secrets.token_hex(4)
_counter = itertools.count(1)


@web.middleware
async def edge_middleware(request: web.Request, handler) -> web.StreamResponse:
    """The outermost layer: the request id (context for the logs, header for the
    caller), the headers every answer carries, and the request metrics, in one
    middleware because each layer costs a little on every request."""
    start = time.perf_counter()
    given = request.headers.get(REQUEST_ID_HEADER, "")
    request_id = given if given and _SANE_ID.match(given) else f"{_PREFIX}{next(_counter):08x}"
    token = REQUEST_ID.set(request_id)
    status = 500
    try:
        try:
            response = await handler(request)
        except web.HTTPException as exc:  # the error middleware lets redirects through
            _edge_headers(exc.headers, request_id)
            status = exc.status
            raise
        _edge_headers(response.headers, request_id)
        status = response.status
        return response
    finally:
        REQUEST_ID.reset(token)
        observe_request(request, status, time.perf_counter() - start)


def _edge_headers(headers, request_id: str) -> None:
    headers[REQUEST_ID_HEADER] = request_id
    headers.update(EDGE_HEADERS)
    if "Cache-Control" not in headers:
        headers["Cache-Control"] = DEFAULT_CACHE_CONTROL
