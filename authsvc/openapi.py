"""The OpenAPI 3 document, generated from the route declarations (`web.Api`) and their
marshmallow schemas with apispec, so it cannot drift from what the handlers validate.

What each operation may answer is derived from its declaration: authenticated routes
can answer 401/403/429 (API keys have their own rate), routes with a body 400/413/415/
422, routes with a query or path variables 422/404, and every route that touches the
store 503. A route adds what only it answers with `errors=(...)`."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from aiohttp import web
from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from marshmallow import Schema, fields

from . import __version__
from .errors import Code
from .web import Api, Endpoint, path_variables

BODY_ERRORS = (400, 413, 415, 422)
AUTH_ERRORS = (401, 403, 429)

_DESCRIPTIONS = {
    200: "OK",
    201: "Created",
    202: "Accepted",
    204: "No content",
    302: "Found: the browser goes on to the URL in Location",
    400: "Malformed request (not JSON, or a link token that is invalid or spent)",
    401: "Not authenticated (missing, invalid, expired or revoked credentials)",
    403: "Authenticated, but not allowed (missing permission, disabled account)",
    404: "No such resource (or not the caller's)",
    409: "Conflicts with existing data",
    413: "Body too large",
    415: "Body is not JSON",
    422: "Validation failed; `fields` says which and why",
    429: "Rate limited; see Retry-After",
    503: "The data store (or the media catalog) is unavailable; retry after Retry-After",
}


class ErrorDetail(Schema):
    code = fields.String(required=True, metadata={"enum": sorted(c.value for c in Code)})
    message = fields.String(required=True)
    field_messages = fields.Dict(
        keys=fields.String(),
        values=fields.List(fields.String()),
        data_key="fields",
        metadata={"description": "per-field messages; `_body` for the body as a whole"},
    )


class Error(Schema):
    """Every error, whatever the route and status."""

    error = fields.Nested(ErrorDetail, required=True)


def _schema_name(schema: Any) -> str:
    cls = schema if isinstance(schema, type) else type(schema)
    name = cls.__name__
    if name.endswith("Schema") and name != "Schema":
        name = name[: -len("Schema")]
    return name


def _operation_id(ep: Endpoint, path: str) -> str:
    words = re.sub(r"[^A-Za-z0-9]+", "_", path).strip("_")
    return f"{ep.method.lower()}_{words or 'root'}"


def _content(schema: Any, content_type: str) -> dict[str, Any]:
    if schema is None:
        schema = {"type": "object"} if content_type == "application/json" else {"type": "string"}
    return {content_type: {"schema": schema}}


def _responses(ep: Endpoint, has_path_vars: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    declared = ep.responses or {200: None}
    for status, schema in sorted(declared.items()):
        entry: dict[str, Any] = {"description": _DESCRIPTIONS.get(status, "OK")}
        if 300 <= status < 400:
            entry["headers"] = {"Location": {"schema": {"type": "string"}}}
        elif status != 204:
            entry["content"] = _content(schema, ep.produces)
        out[str(status)] = entry
    errors: set[int] = set(ep.errors)
    if ep.auth:
        errors.update(AUTH_ERRORS)
    if ep.body is not None or ep.doc_body is not None:
        errors.update(BODY_ERRORS)
    if ep.query is not None:
        errors.add(422)
    if has_path_vars:
        errors.add(404)
    if ep.uses_store:
        errors.add(503)
    for status in sorted(errors):
        out[str(status)] = {
            "description": _DESCRIPTIONS.get(status, "Error"),
            "content": {"application/json": {"schema": "Error"}},
        }
    return out


def _operation(ep: Endpoint, path: str, variables: list[tuple[str, str | None]]) -> dict:
    op: dict[str, Any] = {
        "operationId": _operation_id(ep, path),
        "summary": ep.summary,
        "tags": list(ep.tags),
        "responses": _responses(ep, bool(variables)),
    }
    if ep.permission:
        op["description"] = f"Requires the permission `{ep.permission}`."
    params: list[dict[str, Any]] = []
    for name, regex in variables:
        schema: dict[str, Any] = {"type": "string"}
        if regex:
            schema["pattern"] = f"^{regex}$"
        params.append({"in": "path", "name": name, "required": True, "schema": schema})
    if ep.query is not None:
        params.append({"in": "query", "schema": ep.query})
    if params:
        op["parameters"] = params
    if ep.body is not None:
        op["requestBody"] = {"required": True, "content": _content(ep.body, "application/json")}
    elif ep.doc_body is not None:
        op["requestBody"] = {"required": True, "content": ep.doc_body}
    op["security"] = [{"bearer": []}, {"apiKey": []}] if ep.auth else []
    return op


def build_spec(apis: Iterable[Api]) -> dict[str, Any]:
    spec = APISpec(
        title="authsvc",
        version=__version__,
        openapi_version="3.0.3",
        plugins=[MarshmallowPlugin(schema_name_resolver=_schema_name)],
        info={
            "description": "Accounts, game characters, sessions, roles, API keys, favorites "
            "and profiles on a KeyDB/Redis key layout. Errors always have the shape of "
            "the `Error` schema."
        },
    )
    spec.components.security_scheme(
        "bearer",
        {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "An authsvc access token (HS256) or a Keycloak access token (RS256)",
        },
    )
    spec.components.security_scheme(
        "apiKey",
        {
            "type": "apiKey",
            "in": "header",
            "name": "X-API-Key",
            "description": "An API key (`Authorization: ApiKey <key>` works too)",
        },
    )
    spec.components.schema("Error", schema=Error)
    paths: dict[str, dict[str, Any]] = {}
    for api in apis:
        for ep in api.endpoints:
            path, variables = path_variables(ep.path)
            paths.setdefault(path, {})[ep.method.lower()] = _operation(ep, path, variables)
    for path, operations in paths.items():
        spec.path(path=path, operations=operations)
    return spec.to_dict()


api = Api()
OPENAPI_JSON = web.AppKey("openapi_json", str)


@api.route(
    "GET",
    "/api/v1/openapi.json",
    summary="This document",
    tags=("meta",),
    auth=False,
    uses_store=False,
)
async def openapi_json(request: web.Request) -> web.Response:
    return web.Response(
        text=request.app[OPENAPI_JSON],
        content_type="application/json",
        headers={"Cache-Control": "public, max-age=300"},
    )
