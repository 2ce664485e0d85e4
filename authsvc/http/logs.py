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
from aiohttp.abc import AbstractAccessLogger
from aiohttp.http_exceptions import HttpProcessingError

from ..platform.metrics import observe_request
from .web import client_ip

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


# One encoder for every line (json.dumps with options builds a new one per call).
_encode = json.JSONEncoder(ensure_ascii=False, default=str).encode


class JsonFormatter(logging.Formatter):
    _second: tuple[int, str] = (-1, "")  # the last whole second, formatted (a cache)

    def _ts(self, created: float, msecs: float) -> str:
        second = int(created)
        if second != self._second[0]:
            self._second = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
        return f"{self._second[1]}.{int(msecs):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": self._ts(record.created, record.msecs),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        request_id = REQUEST_ID.get()
        if request_id:
            entry["request_id"] = request_id
        fields = getattr(record, "fields", None)  # logger.info(..., extra={"fields": {...}})
        if fields:
            entry.update(fields)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return _encode(entry)


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
    # The logging HOWTO's "Optimization": no record needs the caller's file and line,
    # thread, process or multiprocessing name (the formats above use none of them), and
    # gathering them is a fifth of an access log line's cost.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logging.getLogger("aiohttp.server").addFilter(_MalformedRequests())


# Request ids need to be unique, not secret: a per-process random prefix and a counter
# cost far less per request than fresh randomness.
_PREFIX = secrets.token_hex(4)
_counter = itertools.count(1)


def new_request_id() -> str:
    return f"{_PREFIX}{next(_counter):08x}"


@web.middleware
async def edge_middleware(request: web.Request, handler) -> web.StreamResponse:
    """The outermost layer: the request id (context for the logs, header for the
    caller), the headers every answer carries, and the request metrics, in one
    middleware because each layer costs a little on every request."""
    start = time.perf_counter()
    given = request.headers.get(REQUEST_ID_HEADER, "")
    request_id = given if given and _SANE_ID.match(given) else new_request_id()
    token = REQUEST_ID.set(request_id)
    status = 500
    try:
        try:
            response = await handler(request)
        except web.HTTPException as exc:  # the error middleware lets redirects through
            edge_headers(exc.headers, request_id)
            status = exc.status
            raise
        edge_headers(response.headers, request_id)
        status = response.status
        return response
    finally:
        REQUEST_ID.reset(token)
        observe_request(request, status, time.perf_counter() - start)


def edge_headers(headers, request_id: str) -> None:
    """What every answer carries: its request id, EDGE_HEADERS, and no-store unless the
    route chose its own Cache-Control."""
    headers[REQUEST_ID_HEADER] = request_id
    headers.update(EDGE_HEADERS)
    if "Cache-Control" not in headers:
        headers["Cache-Control"] = DEFAULT_CACHE_CONTROL


ACCESS_LOGGER = "authsvc.access"


class AccessLogger(AbstractAccessLogger):
    """The access log: one line per answered request, with the method, the route
    template (never the raw path: ids and query strings stay out), the status, the
    duration, the request id and the client's address as the rate limits see it. Never
    a header, a token, a query or a body.

    aiohttp calls it (`access_log_class`) after the answer is written, also for the
    requests it answered itself because it could not parse them (route `unparsed`)."""

    def log(self, request, response, time: float) -> None:
        try:
            info = request.match_info
        except AssertionError:  # aiohttp could not parse the request: it never matched
            info = None
        if info is None:
            route, client = "unparsed", request.remote
        else:
            resource = info.route.resource if info.http_exception is None else None
            route = resource.canonical if resource is not None else "unmatched"
            client = client_ip(request)
        fields = {
            "method": request.method,
            "route": route,
            "status": response.status,
            "duration_ms": round(time * 1000, 3),
            "request_id": response.headers.get(REQUEST_ID_HEADER, ""),
            "client": client,
        }
        self.logger.info(  # the fields for JSON lines; the message for LOG_FORMAT=text
            "%s %s %s %.1f ms",
            fields["method"],
            route,
            fields["status"],
            fields["duration_ms"],
            extra={"fields": fields},
        )


def access_log_args(enabled: bool) -> dict[str, object]:
    """The handler arguments (web.Application(handler_args=...)) that switch the access
    log on or off, whichever runner serves the app. On, its logger says INFO whatever
    LOG_LEVEL is: ACCESS_LOG alone decides."""
    if not enabled:
        return {"access_log": None}
    logger = logging.getLogger(ACCESS_LOGGER)
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)
    return {"access_log_class": AccessLogger, "access_log": logger}
