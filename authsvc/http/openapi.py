"""The OpenAPI 3 document, generated from the route declarations (`web.Api`) and their
marshmallow schemas with apispec, so it cannot drift from what the handlers validate.

What each operation may answer is derived from its declaration: any route can answer
400 (HTTP the server cannot parse), authenticated routes
can answer 401/403/429 (API keys have their own rate), routes with a body 400/413/415/
422, routes with a query or path variables 422/404, and every route that touches the
store 503. A route adds what only it answers with `errors=(...)`, and the links from its
answer to what a client can do next with `links=(...)`.

Every rule a schema validates is stated: marshmallow's `Length`, `Range`, `OneOf` and
`Regexp` by apispec itself; the patterns with ECMA anchors (`$`, where Python's `re`
needs `\\Z`); a byte limit (`MaxBytes`) as `x-maxBytes` beside the `maxLength` it
implies; and a query whose filters exclude each other (`exclusive`) as one
form-exploded object parameter with `maxProperties: 1`."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from aiohttp import web
from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from marshmallow import Schema, fields

from .. import __version__
from ..errors import Code
from .schemas import MaxBytes
from .web import Api, Endpoint, path_variables

# Every route: a request the HTTP parser refuses (a request line or header past its
# limits) is a 400 before any route sees it.
ANY_ERRORS = (400,)
BODY_ERRORS = (400, 413, 415, 422)
AUTH_ERRORS = (401, 403, 429)

_DESCRIPTIONS = {
    200: "OK",
    201: "Created",
    202: "Accepted",
    204: "No content",
    302: "Found: the browser goes on to the URL in Location",
    400: "Malformed request (HTTP the server cannot parse, a body that is not JSON, "
    "or a link token that is invalid or spent)",
    401: "Not authenticated (missing, invalid, expired or revoked credentials)",
    403: "Authenticated, but not allowed (missing permission, disabled account)",
    404: "No such resource (or not the caller's)",
    409: "Conflicts with existing data",
    413: "Body too large",
    415: "Body is not JSON",
    422: "Validation failed; `fields` says which and why",
    429: "Rate limited; see Retry-After",
    503: "The data store (or the media catalog, or the OIDC provider signed in with) is "
    "unavailable; retry after Retry-After",
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


def _ecma_pattern(pattern: str) -> str:
    """A Python pattern as JSON Schema reads it (ECMA 262): `\\A`/`\\Z` are not anchors
    there, while `^`/`$` without the multiline flag mean the same ends of the string."""
    if pattern.startswith(r"\A"):
        pattern = "^" + pattern[2:]
    if pattern.endswith(r"\Z") and not pattern.endswith(r"\\Z"):
        pattern = pattern[:-2] + "$"
    return pattern


def _stated_rules(self, field: fields.Field, ret: dict, **kwargs: Any) -> dict:
    """An apispec attribute function: what the built-in ones leave unsaid."""
    out: dict[str, Any] = {}
    if isinstance(ret.get("pattern"), str):
        out["pattern"] = _ecma_pattern(ret["pattern"])
    for rule in field.validators:
        if isinstance(rule, MaxBytes):
            # No JSON Schema keyword counts bytes; a text of n bytes has at most n
            # characters, so maxLength says what it can.
            out["x-maxBytes"] = rule.max_bytes
            out["maxLength"] = min(ret.get("maxLength", rule.max_bytes), rule.max_bytes)
    return out


def _schema_name(schema: Any) -> str:
    cls = schema if isinstance(schema, type) else type(schema)
    name = cls.__name__
    if name.endswith("Schema") and name != "Schema":
        name = name[: -len("Schema")]
    return name


def _operation_id(ep: Endpoint, path: str) -> str:
    words = re.sub(r"[^A-Za-z0-9]+", "_", path).strip("_")
    return f"{ep.method.lower()}_{words or 'root'}"


def _content(schema: Any, content_types: str | tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for ctype in (content_types,) if isinstance(content_types, str) else content_types:
        if schema is None:
            out[ctype] = {
                "schema": {"type": "object"} if ctype == "application/json" else {"type": "string"}
            }
        else:
            out[ctype] = {"schema": schema}
    return out


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
    errors: set[int] = set(ep.errors) | set(ANY_ERRORS)
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


def _query_value(converter: Any, field: fields.Field) -> dict[str, Any]:
    # A query value is a string, never null: an absent parameter is how a field without
    # a value (`load_default=None`) is left out.
    prop = converter.field2property(field)
    prop.pop("nullable", None)
    if prop.get("default", "") is None:
        del prop["default"]
    if "enum" in prop:  # (apispec lists None among the choices of a nullable field)
        prop["enum"] = [choice for choice in prop["enum"] if choice is not None]
    return prop


def _query_parameters(query: Any, plugin: MarshmallowPlugin) -> list[dict[str, Any]]:
    """A query schema's parameters, one a field. Fields named in its `exclusive` (filters
    that cannot be combined) become one object parameter instead, form-exploded (each
    property is its own `name=value` in the URL, as before) with at most one property."""
    converter = plugin.converter
    assert converter is not None
    exclusive = tuple(getattr(query, "exclusive", ()))
    params: list[dict[str, Any]] = [
        {
            "in": "query",
            "name": field.data_key or name,
            "required": field.required,
            "schema": _query_value(converter, field),
        }
        for name, field in query.fields.items()
        if name not in exclusive and not field.dump_only
    ]
    if not exclusive:
        return params
    group = {name: _query_value(converter, query.fields[name]) for name in exclusive}
    return [
        *params,
        {
            "in": "query",
            "name": "filter",
            "style": "form",
            "explode": True,
            "description": "At most one of " + ", ".join(f"`{n}`" for n in exclusive),
            "schema": {
                "type": "object",
                "properties": group,
                "additionalProperties": False,
                "maxProperties": 1,
            },
        },
    ]


def _operation(
    ep: Endpoint, path: str, variables: list[tuple[str, str | None]], plugin: MarshmallowPlugin
) -> dict:
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
        params += _query_parameters(ep.query, plugin)
    if params:
        op["parameters"] = params
    if ep.body is not None:
        op["requestBody"] = {"required": True, "content": _content(ep.body, "application/json")}
    elif ep.doc_body is not None:
        op["requestBody"] = {"required": True, "content": ep.doc_body}
    op["security"] = [{"bearer": []}, {"apiKey": []}] if ep.auth else []
    return op


def _link(ep: Endpoint, link: Any, operation_ids: dict[str, str]) -> tuple[str, dict]:
    try:
        target = operation_ids[link.target]
    except KeyError:
        raise ValueError(f"{ep.method} {ep.path}: a link to {link.target}, no such route") from None
    out: dict[str, Any] = {"operationId": target}
    if link.parameters:
        out["parameters"] = dict(link.parameters)
    if link.body is not None:
        out["requestBody"] = link.body
    return target, out


def build_spec(apis: Iterable[Api]) -> dict[str, Any]:
    plugin = MarshmallowPlugin(schema_name_resolver=_schema_name)
    spec = APISpec(
        title="authsvc",
        version=__version__,
        openapi_version="3.0.3",
        plugins=[plugin],
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
    assert plugin.converter is not None
    plugin.converter.add_attribute_function(_stated_rules)
    spec.components.schema("Error", schema=Error)
    paths: dict[str, dict[str, Any]] = {}
    endpoints = [ep for api in apis for ep in api.endpoints]
    operation_ids: dict[str, str] = {}
    for ep in endpoints:
        path, variables = path_variables(ep.path)
        op = _operation(ep, path, variables, plugin)
        paths.setdefault(path, {})[ep.method.lower()] = op
        operation_ids[f"{ep.method} {path}"] = op["operationId"]
    for ep in endpoints:
        if not ep.links:
            continue
        path, _ = path_variables(ep.path)
        op = paths[path][ep.method.lower()]
        named = dict(_link(ep, link, operation_ids) for link in ep.links)
        for status, response in op["responses"].items():
            if status.startswith("2") and "content" in response:
                response["links"] = named
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
