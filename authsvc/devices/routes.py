"""HTTP for guests of game clients: device sign-in, and the caller's devices."""

from __future__ import annotations

from aiohttp import web

from ..accounts.routes import token_response
from ..accounts.schemas import TokenResponse
from ..appkeys import DEVICES
from ..http.web import Api, client_ip, json_response, links
from ..identity.principal import Principal
from . import schemas

api = Api()
TAGS = ("devices",)
NO_STORE = {"Cache-Control": "no-store"}


@api.route(
    "POST",
    "/api/v1/auth/device",
    summary="Sign in as the guest account of a device (created on first use): the /login body",
    tags=("auth",),
    body=schemas.DeviceSignIn(),
    responses={200: TokenResponse},
    errors=(403, 429),
    auth=False,
)
async def device_sign_in(request: web.Request, *, body: dict) -> web.Response:
    result = await request.app[DEVICES].sign_in(
        body["device_id"],
        device_name=body["device_name"],
        ip=client_ip(request),
        user_agent=request.headers.get("User-Agent", ""),
    )
    return token_response(result)


@api.route(
    "GET",
    "/api/v1/users/me/devices",
    summary="The devices that sign in to this account",
    tags=TAGS,
    responses={200: schemas.DeviceList},
    permission="profile:read",
)
async def list_devices(request: web.Request, *, principal: Principal) -> web.Response:
    return json_response({"devices": await request.app[DEVICES].list(principal)}, headers=NO_STORE)


@api.route(
    "POST",
    "/api/v1/users/me/devices",
    summary="Link another device to this account",
    tags=TAGS,
    body=schemas.DeviceLink(),
    responses={201: schemas.Device},
    errors=(409, 429),  # 429: the device sign-in's per-address limit
    links=links("DELETE", "/api/v1/users/me/devices/{id}", id="$response.body#/id"),
    permission="profile:write",
)
async def link_device(request: web.Request, *, principal: Principal, body: dict):
    device = await request.app[DEVICES].link(
        principal, body["device_id"], name=body["name"], ip=client_ip(request)
    )
    return json_response(device, status=201, headers=NO_STORE)


@api.route(
    "DELETE",
    "/api/v1/users/me/devices/{id:" + schemas.HANDLE_RE + "}",
    summary="Unlink a device (never the last way to sign in)",
    tags=TAGS,
    responses={204: None},
    errors=(409,),
    permission="profile:write",
)
async def unlink_device(request: web.Request, *, principal: Principal):
    await request.app[DEVICES].unlink(principal, request.match_info["id"], ip=client_ip(request))
    return web.Response(status=204)
