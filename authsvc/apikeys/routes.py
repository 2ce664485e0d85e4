"""HTTP for API keys and for token verification by other services."""

from __future__ import annotations

from aiohttp import web
from marshmallow import Schema, fields, validate

from ..appkeys import API_KEYS, INTROSPECTOR
from ..http.schemas import Text
from ..http.web import Api, json_response, links, read_json
from ..http.web import validate as validate_body
from ..identity.principal import Principal
from ..rbac.schemas import Permission

api = Api()
KEYS = "/api/v1/users/me/api-keys"
KEY = KEYS + "/{key_id:[0-9a-f]{12}}"


def Scopes(**kw) -> fields.List:
    return fields.List(Permission(), validate=validate.Length(min=1, max=100), **kw)


class CreateKey(Schema):
    name = Text(min_len=1, max_len=100, required=True, metadata={"example": "ci deploy"})
    scopes = Scopes(required=True)
    expires_at = fields.AwareDateTime(
        load_default=None,
        allow_none=True,
        metadata={
            "x-inFuture": True,
            "description": "A moment in the future; null: never",
            "example": "2099-01-01T00:00:00Z",
        },
    )


class UpdateKey(Schema):
    name = Text(min_len=1, max_len=100)
    scopes = Scopes()


class KeyView(Schema):
    id = fields.String(required=True)
    name = fields.String(required=True)
    scopes = fields.List(fields.String(), required=True)
    created_at = fields.String(required=True)
    expires_at = fields.String(allow_none=True)
    last_used_at = fields.String(allow_none=True)
    prefix = fields.String(required=True)


class NewKey(KeyView):
    key = fields.String(required=True)


class KeyList(Schema):
    api_keys = fields.List(fields.Nested(KeyView), required=True)


class IntrospectRequest(Schema):
    token = fields.String(required=True, validate=validate.Length(min=1, max=8192))
    token_type_hint = fields.String(load_default=None, validate=validate.Length(max=64))


class Introspection(Schema):
    active = fields.Boolean(required=True)
    sub = fields.String()
    username = fields.String()
    scope = fields.String()
    exp = fields.Integer()
    iat = fields.Integer()
    iss = fields.String()
    aud = fields.Raw()
    token_type = fields.String()
    sid = fields.String(allow_none=True)
    client_id = fields.String(allow_none=True)


@api.route(
    "POST",
    KEYS,
    summary="Create an API key (the key is shown once)",
    tags=("api-keys",),
    body=CreateKey(),
    responses={201: NewKey},
    links=links("PATCH DELETE", KEYS + "/{key_id}", key_id="$response.body#/id"),
    permission="apikeys:manage",
)
async def create_key(request: web.Request, *, principal: Principal, body: dict):
    key = await request.app[API_KEYS].create(principal, **body)
    return json_response(key, status=201, headers={"Cache-Control": "no-store"})


@api.route(
    "GET",
    KEYS,
    summary="The caller's API keys, without secrets",
    tags=("api-keys",),
    responses={200: KeyList},
    permission="apikeys:manage",
)
async def list_keys(request: web.Request, *, principal: Principal):
    return json_response({"api_keys": await request.app[API_KEYS].list(principal)})


@api.route(
    "PATCH",
    KEY,
    summary="Rename or rescope an API key",
    tags=("api-keys",),
    body=UpdateKey(),
    responses={200: KeyView},
    permission="apikeys:manage",
)
async def update_key(request: web.Request, *, principal: Principal, body: dict):
    key = await request.app[API_KEYS].update(
        principal, request.match_info["key_id"], name=body.get("name"), scopes=body.get("scopes")
    )
    return json_response(key)


@api.route(
    "DELETE",
    KEY,
    summary="Revoke an API key",
    tags=("api-keys",),
    responses={204: None},
    permission="apikeys:manage",
)
async def delete_key(request: web.Request, *, principal: Principal):
    await request.app[API_KEYS].revoke(principal, request.match_info["key_id"])
    return web.Response(status=204)


@api.route(
    "POST",
    "/api/v1/tokens/introspect",
    summary="RFC 7662 token introspection (JSON or form body)",
    tags=("tokens",),
    responses={200: Introspection},
    doc_body={
        "application/json": {"schema": IntrospectRequest},
        "application/x-www-form-urlencoded": {"schema": IntrospectRequest},
    },
    permission="tokens:introspect",
)
async def introspect(request: web.Request, *, principal: Principal):
    if request.content_type == "application/x-www-form-urlencoded":
        data = dict(await request.post())
    else:
        data = await read_json(request)
    body = validate_body(IntrospectRequest(), data)
    answer = await request.app[INTROSPECTOR].introspect(body["token"])
    return json_response(answer, headers={"Cache-Control": "no-store"})
