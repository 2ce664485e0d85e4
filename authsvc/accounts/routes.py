"""HTTP for accounts: the seed paths (/register, /login) and their /api/v1 twins, and
the account lifecycle (verification, password reset and change)."""

from __future__ import annotations

from aiohttp import web

from ..appkeys import LIFECYCLE, SESSIONS
from ..favorites.kinds import KINDS
from ..http.web import Api, Link, Seed, client_ip, json_response, links
from ..identity.principal import Principal
from . import schemas

api = Api()
TAGS = ("auth",)
ACCEPTED = {"status": "accepted"}

# What the new account's id and credentials lead to: logging in, and an administrator's
# view and handling of the account.
_ID = {"id": "$response.body#/id"}
REGISTERED = (
    Link(
        "POST /api/v1/auth/login",
        body={"username": "$request.body#/username", "password": "$request.body#/password"},
    ),
    *links("GET PATCH DELETE", "/api/v1/admin/users/{id}", **_ID),
    *links("POST", "/api/v1/admin/users/{id}/enable", **_ID),
    *links("POST", "/api/v1/admin/users/{id}/disable", **_ID),
    *links("POST", "/api/v1/admin/users/{id}/roles", **_ID),
    *links("POST DELETE", "/api/v1/social/follow/{user_id}", user_id="$response.body#/id"),
    *(
        link
        for kind in KINDS
        for link in links(
            "GET", f"/api/v1/admin/users/{{user_id}}/favorites/{kind.name}", user_id=_ID["id"]
        )
    ),
)
SEED_REGISTERED = (
    Link(
        "POST /login",
        body={"username": "$request.body#/username", "password": "$request.body#/password"},
    ),
)
LOGGED_IN = (
    Link("POST /api/v1/auth/refresh", body={"refresh_token": "$response.body#/refresh_token"}),
)


@api.route(
    "POST",
    "/api/v1/auth/register",
    summary="Register an account",
    tags=TAGS,
    body=schemas.RegisterRequest(),
    responses={201: schemas.Account},
    errors=(409, 429),
    auth=False,
    links=REGISTERED,
    seed=Seed("/register", links=SEED_REGISTERED),
)
async def register(request: web.Request, *, body: dict) -> web.Response:
    account = await request.app[LIFECYCLE].register(**body, ip=client_ip(request))
    return json_response(account, status=201)


@api.route(
    "POST",
    "/api/v1/auth/login",
    summary="Log in with username or email",
    tags=TAGS,
    body=schemas.LoginRequest(),
    responses={200: schemas.TokenResponse},
    errors=(401, 403, 429),
    auth=False,
    links=LOGGED_IN,
    seed=Seed("/login"),
)
async def login(request: web.Request, *, body: dict) -> web.Response:
    result = await request.app[SESSIONS].login(
        identifier=body["username"],
        password=body["password"],
        device_name=body["device_name"],
        ip=client_ip(request),
        user_agent=request.headers.get("User-Agent", ""),
    )
    return token_response(result)


def token_response(result) -> web.Response:
    return json_response(
        {
            "token": result.access.token,
            "access_token": result.access.token,
            "token_type": "Bearer",
            "expires_in": result.access.expires_in,
            "refresh_token": result.refresh_token,
            "refresh_expires_in": result.refresh_expires_in,
            "session_id": result.sid,
        },
        headers={"Cache-Control": "no-store"},
    )


@api.route(
    "POST",
    "/api/v1/auth/verify-email",
    summary="Confirm an email address",
    tags=TAGS,
    body=schemas.TokenRequest(),
    responses={200: schemas.Accepted},
    auth=False,
)
async def verify_email(request: web.Request, *, body: dict) -> web.Response:
    await request.app[LIFECYCLE].verify_email(body["token"], ip=client_ip(request))
    return json_response({"status": "verified"})


@api.route(
    "POST",
    "/api/v1/auth/resend-verification",
    summary="Send the verification message again (always 202)",
    tags=TAGS,
    body=schemas.EmailRequest(),
    responses={202: schemas.Accepted},
    errors=(429,),
    auth=False,
)
async def resend_verification(request: web.Request, *, body: dict) -> web.Response:
    await request.app[LIFECYCLE].resend_verification(body["email"], ip=client_ip(request))
    return json_response(ACCEPTED, status=202)


@api.route(
    "POST",
    "/api/v1/auth/forgot-password",
    summary="Mail a password-reset link (always 202)",
    tags=TAGS,
    body=schemas.EmailRequest(),
    responses={202: schemas.Accepted},
    errors=(429,),
    auth=False,
)
async def forgot_password(request: web.Request, *, body: dict) -> web.Response:
    await request.app[LIFECYCLE].forgot_password(body["email"], ip=client_ip(request))
    return json_response(ACCEPTED, status=202)


@api.route(
    "POST",
    "/api/v1/auth/reset-password",
    summary="Set a new password with a reset link's token; revokes every session",
    tags=TAGS,
    body=schemas.ResetPasswordRequest(),
    responses={200: schemas.Accepted},
    auth=False,
)
async def reset_password(request: web.Request, *, body: dict) -> web.Response:
    await request.app[LIFECYCLE].reset_password(
        body["token"], body["new_password"], ip=client_ip(request)
    )
    return json_response({"status": "password_reset"})


@api.route(
    "POST",
    "/api/v1/users/me/change-password",
    summary="Change the password; revokes every other session",
    tags=("users",),
    body=schemas.ChangePasswordRequest(),
    responses={200: schemas.RevokedCount},
    permission="profile:write",
)
async def change_password(
    request: web.Request, *, principal: Principal, body: dict
) -> web.Response:
    revoked = await request.app[LIFECYCLE].change_password(
        principal, body["current_password"], body["new_password"], ip=client_ip(request)
    )
    return json_response({"revoked": revoked})


@api.route(
    "POST",
    "/api/v1/users/me/credentials",
    summary="Give an account without a password (a guest, a provider sign-in) a username, "
    "email and password; its id, characters and favorites stay",
    tags=("users",),
    body=schemas.RegisterRequest(),
    responses={200: schemas.Account},
    errors=(409, 429),  # 429: registration's per-address limit
    permission="profile:write",
)
async def set_credentials(
    request: web.Request, *, principal: Principal, body: dict
) -> web.Response:
    account = await request.app[LIFECYCLE].set_credentials(principal, **body, ip=client_ip(request))
    return json_response(account, headers={"Cache-Control": "no-store"})
