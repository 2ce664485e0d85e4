"""The OpenAPI document, browsable at /api/v1/docs: Swagger UI from the copy the
swagger-ui-py package installs, served by this process (no CDN: the page works
offline), started by our own `static/docs.js`.

Only the four files the page loads are served, each with its content type,
`X-Content-Type-Options: nosniff`, and for the page a Content-Security-Policy that
lets it load scripts, styles and data from this origin only."""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

from aiohttp import web

from .web import Api

api = Api()
PAGE = "/api/v1/docs"

# script, style, images and the document (fetched by the UI) from this origin; the
# stylesheet's icons are data: URIs; nothing else, no framing.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
JS = "text/javascript"  # RFC 9239
OURS = Path(__file__).with_name("static")
# name -> (content type, directory it comes from: swagger-ui-py's or ours)
ASSETS: dict[str, tuple[str, str]] = {
    "swagger-ui.css": ("text/css", "swagger-ui"),
    "swagger-ui-bundle.js": (JS, "swagger-ui"),
    "favicon-32x32.png": ("image/png", "swagger-ui"),
    "docs.js": (JS, "ours"),
}
ASSET_NAME = "|".join(name.replace(".", r"\.") for name in ASSETS)


def swagger_ui_dir() -> Path:
    """swagger-ui-py's static files, found without importing the package (its
    `__init__` loads jinja2 and its framework adapters, which we do not use)."""
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("swagger-ui-py is not installed (pip install swagger-ui-py)")
    return Path(next(iter(spec.submodule_search_locations))) / "static"


@functools.cache
def _read(name: str) -> bytes:
    _, origin = ASSETS[name]
    return ((swagger_ui_dir() if origin == "swagger-ui" else OURS) / name).read_bytes()


@functools.cache
def _page() -> str:
    return (OURS / "docs.html").read_text(encoding="utf-8")


def _headers(**extra: str) -> dict[str, str]:
    return {"X-Content-Type-Options": "nosniff", "Cache-Control": "public, max-age=3600", **extra}


@api.route(
    "GET",
    PAGE,
    summary="This document, browsable (Swagger UI)",
    tags=("meta",),
    auth=False,
    uses_store=False,
    responses={200: {"type": "string"}},
    produces=("text/html",),
)
async def docs_page(request: web.Request) -> web.Response:
    return web.Response(
        text=_page(),
        content_type="text/html",
        headers=_headers(**{"Content-Security-Policy": CSP, "Referrer-Policy": "no-referrer"}),
    )


@api.route(
    "GET",
    PAGE + "/{asset:" + ASSET_NAME + "}",
    summary="A file the browsable document loads",
    tags=("meta",),
    auth=False,
    uses_store=False,
    responses={200: {"type": "string"}},
    produces=tuple(sorted({ctype for ctype, _ in ASSETS.values()})),
)
async def docs_asset(request: web.Request) -> web.Response:
    name = request.match_info["asset"]
    ctype, _ = ASSETS[name]
    charset = None if ctype.startswith("image/") else "utf-8"
    return web.Response(body=_read(name), content_type=ctype, charset=charset, headers=_headers())
