"""Running the application: aiohttp's runner and TCP site, with a protocol whose own
error answers have the one JSON error shape.

A request aiohttp cannot parse (a bad request line, a NUL in a header, a header that
is too long, a broken chunked body) never reaches the application, its middlewares or
its signals: aiohttp's protocol (`web.RequestHandler.handle_error`) answers it itself,
as `text/plain`. aiohttp offers no hook for that answer (aio-libs/aiohttp#3287, open
since 2018), so this module subclasses the two public classes involved, `web.RequestHandler`
(overriding `handle_error`, which builds that answer) and `web.Server` (its protocol
factory), and runs the app through a `web.AppRunner` whose server builds them. `run_app`
is aiohttp's `web.run_app` for one TCP site, on that runner: the same signal handling
(SIGINT/SIGTERM stop gracefully) and the same shutdown of the loop."""

from __future__ import annotations

import asyncio
import contextlib
from http import HTTPStatus
from typing import Any

from aiohttp import http_exceptions as hx
from aiohttp import web

from ..errors import Code
from ..http.logs import REQUEST_ID, edge_headers, new_request_id
from ..http.web import error_response

# What the client is told, by what aiohttp could not parse: never the offending bytes
# (aiohttp's own message quotes them, and a header may hold a token).
_MALFORMED: tuple[tuple[type[Exception], str], ...] = (
    (hx.LineTooLong, "a request line or header is too long"),
    (hx.BadStatusLine, "the request line is not valid HTTP"),
    (hx.InvalidHeader, "a request header is not valid"),
    (hx.InvalidURLError, "the request target is not a valid URL"),
    (hx.PayloadEncodingError, "the request body's length or encoding is not valid"),
)


def _describe(status: int, exc: BaseException | None) -> tuple[Code, str]:
    if status == 400:
        for kind, message in _MALFORMED:
            if isinstance(exc, kind):
                return Code.MALFORMED_REQUEST, message
        return Code.MALFORMED_REQUEST, "the request is not valid HTTP"
    if status == 500:
        return Code.INTERNAL, "unexpected failure"
    try:
        return Code.INTERNAL, HTTPStatus(status).phrase.lower()
    except ValueError:
        return Code.INTERNAL, "unexpected failure"


class RequestHandler(web.RequestHandler):
    """aiohttp's protocol, answering its own errors in the JSON error shape."""

    __slots__ = ()

    def handle_error(
        self,
        request: Any,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        request_id = new_request_id()
        token = REQUEST_ID.set(request_id)  # the log line aiohttp writes carries it
        try:
            # Logs the error, and raises ConnectionError when part of an answer was sent.
            super().handle_error(request, status, exc, message)
        finally:
            REQUEST_ID.reset(token)
        code, text = _describe(status, exc)
        response = error_response(code, text, status=status)
        edge_headers(response.headers, request_id)
        response.force_close()
        return response


class _Server(web.Server):
    """aiohttp's protocol factory, building our RequestHandler for each connection."""

    def __call__(self) -> web.RequestHandler:
        return RequestHandler(self, loop=self._loop, **self._kwargs)


class AppRunner(web.AppRunner):
    """web.AppRunner whose server speaks with our RequestHandler."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _Server  # the same server; only the protocol it builds differs
        return server


async def _serve(app: web.Application, host: str, port: int, reuse_port: bool | None) -> None:
    runner = AppRunner(app, handle_signals=True, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, reuse_port=reuse_port).start()
        await asyncio.Event().wait()  # until a signal raises GracefulExit in the loop
    finally:
        await runner.cleanup()


def run_app(app: web.Application, *, host: str, port: int, reuse_port: bool | None = None) -> None:
    """Serve `app` on host:port until SIGINT or SIGTERM, as web.run_app does."""
    loop = asyncio.new_event_loop()
    main = loop.create_task(_serve(app, host, port, reuse_port))
    try:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(main)
    except (web.GracefulExit, KeyboardInterrupt):
        pass
    finally:
        try:
            if not main.done():
                main.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    loop.run_until_complete(main)
        finally:
            _cancel_all(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
            asyncio.set_event_loop(None)


def _cancel_all(loop: asyncio.AbstractEventLoop) -> None:
    tasks = asyncio.all_tasks(loop)
    for task in tasks:
        task.cancel()
    if tasks:
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
