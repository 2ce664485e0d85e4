"""HTTP for accounts: the seed paths (/register, /login) and their /api/v1 twins."""

from __future__ import annotations

from aiohttp import web

from ..app_keys import SERVICES
from ..auth import Principal
from ..web import Api, client_ip, json_response
from . import schemas

api = Api()
TAGS = ("auth",)


@api.route(
    "POST",
    "/register",
    summary="Register an account (seed path)",
    tags=TAGS,
    body=schemas.RegisterRequest(),
    responses={201: schemas.Account},
    auth=False,
)
@api.route(
    "POST",
    "/api/v1/auth/register",
    summary="Register an account",
    tags=TAGS,
    body=schemas.RegisterRequest(),
    responses={201: schemas.Account},
    auth=False,
)
async def register(request: web.Request, *, body: dict) -> web.Response:
    account = await request.app[SERVICES].accounts.register(**body, ip=client_ip(request))
    return json_response(account, status=201)


@api.route(
    "POST",
    "/login",
    summary="Log in with username or email (seed path)",
    tags=TAGS,
    body=schemas.LoginRequest(),
    responses={200: schemas.TokenResponse},
    auth=False,
)
@api.route(
    "POST",
    "/api/v1/auth/login",
    summary="Log in with username or email",
    tags=TAGS,
    body=schemas.LoginRequest(),
    responses={200: schemas.TokenResponse},
    auth=False,
)
async def login(request: web.Request, *, body: dict) -> web.Response:
    issued = await request.app[SERVICES].accounts.login(
        identifier=body["username"], password=body["password"], ip=client_ip(request)
    )
    return json_response(
        {
            "token": issued.token,
            "access_token": issued.token,
            "token_type": "Bearer",
            "expires_in": issued.expires_in,
        },
        headers={"Cache-Control": "no-store"},
    )


@api.route(
    "GET",
    "/api/v1/users/me",
    summary="The caller's account",
    tags=("users",),
    responses={200: schemas.Account},
)
async def me(request: web.Request, *, principal: Principal) -> web.Response:
    return json_response(await request.app[SERVICES].accounts.me(principal.account_id))
