"""HTTP for sessions: refresh, logout, listing and revoking."""

from __future__ import annotations

from aiohttp import web
from marshmallow import Schema

from ..accounts import schemas
from ..accounts.routes import LOGGED_IN, token_response
from ..appkeys import SESSIONS
from ..http.schemas import QueryBoolean
from ..http.web import Api, client_ip, json_response, links
from ..identity.principal import Principal

api = Api()
TAGS = ("sessions",)


class RevokeAllQuery(Schema):
    all = QueryBoolean(load_default=False)


@api.route(
    "POST",
    "/api/v1/auth/refresh",
    summary="Rotate a refresh token: a new access and refresh token",
    tags=("auth",),
    body=schemas.RefreshRequest(),
    responses={200: schemas.TokenResponse},
    errors=(401, 403),
    auth=False,
    links=LOGGED_IN,
)
async def refresh(request: web.Request, *, body: dict) -> web.Response:
    result = await request.app[SESSIONS].refresh(body["refresh_token"], ip=client_ip(request))
    return token_response(result)


@api.route(
    "POST",
    "/api/v1/auth/logout",
    summary="End the current session",
    tags=("auth",),
    responses={204: None},
    permission="sessions:manage",
)
async def logout(request: web.Request, *, principal: Principal) -> web.Response:
    await request.app[SESSIONS].logout(principal, ip=client_ip(request))
    return web.Response(status=204)


@api.route(
    "GET",
    "/api/v1/sessions",
    summary="The caller's sessions, the current marked",
    tags=TAGS,
    responses={200: schemas.SessionList},
    links=links("DELETE", "/api/v1/sessions/{id}", id="$response.body#/sessions/0/id"),
    permission="sessions:manage",
)
async def list_sessions(request: web.Request, *, principal: Principal) -> web.Response:
    return json_response({"sessions": await request.app[SESSIONS].list(principal)})


@api.route(
    "DELETE",
    "/api/v1/sessions/{id:[A-Za-z0-9_-]{1,64}}",
    summary="Revoke one of the caller's sessions",
    tags=TAGS,
    responses={204: None},
    permission="sessions:manage",
)
async def revoke_session(request: web.Request, *, principal: Principal) -> web.Response:
    await request.app[SESSIONS].revoke(principal, request.match_info["id"], ip=client_ip(request))
    return web.Response(status=204)


@api.route(
    "DELETE",
    "/api/v1/sessions",
    summary="Revoke the caller's other sessions (?all=true: the current one too)",
    tags=TAGS,
    query=RevokeAllQuery(),
    responses={200: schemas.RevokedCount},
    permission="sessions:manage",
)
async def revoke_sessions(
    request: web.Request, *, principal: Principal, query: dict
) -> web.Response:
    n = await request.app[SESSIONS].revoke_all(
        principal, include_current=query["all"], ip=client_ip(request)
    )
    return json_response({"revoked": n})
