"""HTTP for signing in through OIDC providers: the public provider list, authorize and
callback, the exchange code, the caller's links, and the providers' administration."""

from __future__ import annotations

from aiohttp import web

from ..accounts.routes import token_response
from ..accounts.schemas import TokenResponse
from ..appkeys import OIDC_PROVIDERS, SIGN_IN
from ..http.web import Api, client_ip, json_response, links
from ..identity.principal import Principal
from . import schemas
from .service import CALLBACK_COOKIE_PATH, CallbackResult, Started

api = Api()
TAGS = ("oidc",)
SLUG = "{slug:" + schemas.SLUG_RE + "}"
ADMIN = "/api/v1/admin/oidc/providers"
# What a new provider enables (the stateful phase of schemathesis follows these): its
# administration, and signing in or linking through it.
PROVIDER_CREATED = (
    *links("GET PATCH DELETE", ADMIN + "/{slug}", slug="$response.body#/slug"),
    *links("GET", "/api/v1/auth/oidc/{slug}/authorize", slug="$response.body#/slug"),
    *links("POST", "/api/v1/users/me/oidc/link/{slug}", slug="$response.body#/slug"),
)
NO_STORE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


def _redirect(url: str) -> web.Response:
    return web.Response(status=302, headers={"Location": url, **NO_STORE})


def _started(started: Started) -> web.Response:
    resp = _redirect(started.url)
    b = started.binding
    if b is not None:
        resp.set_cookie(
            b.name,
            b.value,
            max_age=b.max_age,
            path=CALLBACK_COOKIE_PATH,
            httponly=True,
            samesite="Lax",
            secure=b.secure,
        )
    return resp


def _answer(result: CallbackResult) -> web.Response:
    if result.login is not None:
        resp = token_response(result.login)
        resp.headers["Referrer-Policy"] = "no-referrer"
    elif result.redirect is not None:
        resp = _redirect(result.redirect)
    else:
        resp = json_response({"status": "linked", "link": result.linked}, headers=NO_STORE)
    if result.clear_cookie:
        resp.del_cookie(result.clear_cookie, path=CALLBACK_COOKIE_PATH)
    return resp


# -- signing in ------------------------------------------------------------------------


@api.route(
    "GET",
    "/api/v1/auth/oidc/providers",
    summary="The providers one can sign in with (slug and display name)",
    tags=TAGS,
    responses={200: schemas.PublicProviderList},
    auth=False,
)
async def public_providers(request: web.Request) -> web.Response:
    return json_response({"providers": await request.app[OIDC_PROVIDERS].public_list()})


@api.route(
    "GET",
    f"/api/v1/auth/oidc/{SLUG}/authorize",
    summary="Start signing in: 302 to the provider (state, nonce, PKCE S256)",
    tags=TAGS,
    query=schemas.RedirectQuery(),
    responses={302: None},
    errors=(403, 429),
    auth=False,
)
async def authorize(request: web.Request, *, query: dict) -> web.Response:
    started = await request.app[SIGN_IN].authorize(
        request.match_info["slug"], redirect_to=query["redirect_to"], ip=client_ip(request)
    )
    return _started(started)


@api.route(
    "GET",
    f"/api/v1/auth/oidc/{SLUG}/callback",
    summary="Where the provider sends the browser back: the /login answer, a 302 to "
    "redirect_to with an exchange code, or (link mode) the new link",
    tags=TAGS,
    query=schemas.CallbackQuery(),
    responses={200: schemas.CALLBACK_ANSWER, 302: None},
    errors=(401, 403, 409),
    auth=False,
)
async def callback(request: web.Request, *, query: dict) -> web.Response:
    result = await request.app[SIGN_IN].callback(
        request.match_info["slug"],
        {k: v for k, v in query.items() if v is not None},
        cookies=dict(request.cookies),
        ip=client_ip(request),
        user_agent=request.headers.get("User-Agent", ""),
    )
    return _answer(result)


@api.route(
    "POST",
    "/api/v1/auth/oidc/exchange",
    summary="Redeem the single-use code of a redirect_to sign-in (60 s) for the /login body",
    tags=TAGS,
    body=schemas.ExchangeRequest(),
    responses={200: TokenResponse},
    errors=(401,),
    auth=False,
)
async def exchange(request: web.Request, *, body: dict) -> web.Response:
    result = await request.app[SIGN_IN].exchange(
        body["code"], ip=client_ip(request), user_agent=request.headers.get("User-Agent", "")
    )
    return token_response(result)


# -- the caller's links ----------------------------------------------------------------


@api.route(
    "POST",
    f"/api/v1/users/me/oidc/link/{SLUG}",
    summary="Start linking an identity at the provider to this account: the URL to open",
    tags=TAGS,
    query=schemas.RedirectQuery(),
    responses={200: schemas.AuthorizeUrl},
    permission="profile:write",
)
async def start_link(request: web.Request, *, principal: Principal, query: dict):
    url = await request.app[SIGN_IN].start_link(
        principal,
        request.match_info["slug"],
        redirect_to=query["redirect_to"],
        ip=client_ip(request),
    )
    return json_response({"authorize_url": url}, headers=NO_STORE)


@api.route(
    "GET",
    "/api/v1/users/me/oidc",
    summary="The provider identities linked to this account",
    tags=TAGS,
    responses={200: schemas.OidcLinks},
    permission="profile:read",
)
async def links(request: web.Request, *, principal: Principal):
    return json_response({"links": await request.app[SIGN_IN].links(principal)}, headers=NO_STORE)


@api.route(
    "DELETE",
    f"/api/v1/users/me/oidc/unlink/{SLUG}",
    summary="Unlink the identity linked through a provider (never the last way to sign in)",
    tags=TAGS,
    responses={204: None},
    errors=(409,),
    permission="profile:write",
)
async def unlink(request: web.Request, *, principal: Principal):
    await request.app[SIGN_IN].unlink(principal, request.match_info["slug"], ip=client_ip(request))
    return web.Response(status=204)


# -- administration --------------------------------------------------------------------


def _actor(principal: Principal) -> dict:
    return {"actor_id": principal.user_id, "actor_name": principal.username}


@api.route(
    "GET",
    ADMIN,
    summary="Every OIDC provider (client secrets are never shown)",
    tags=("admin",),
    responses={200: schemas.ProviderList},
    permission="oidc:manage",
)
async def list_providers(request: web.Request, *, principal: Principal):
    return json_response({"providers": await request.app[OIDC_PROVIDERS].list()})


@api.route(
    "POST",
    ADMIN,
    summary="Add an OIDC provider (its client secret is stored sealed)",
    tags=("admin",),
    body=schemas.ProviderCreate(),
    responses={201: schemas.Provider},
    errors=(409,),
    links=PROVIDER_CREATED,
    permission="oidc:manage",
)
async def create_provider(request: web.Request, *, principal: Principal, body: dict):
    provider = await request.app[OIDC_PROVIDERS].create(body, **_actor(principal))
    return json_response(provider, status=201, headers={"Location": f"{ADMIN}/{provider['slug']}"})


@api.route(
    "GET",
    f"{ADMIN}/{SLUG}",
    summary="One OIDC provider",
    tags=("admin",),
    responses={200: schemas.Provider},
    permission="oidc:manage",
)
async def get_provider(request: web.Request, *, principal: Principal):
    return json_response(await request.app[OIDC_PROVIDERS].get(request.match_info["slug"]))


@api.route(
    "PATCH",
    f"{ADMIN}/{SLUG}",
    summary="Change an OIDC provider (a new client_secret replaces the old)",
    tags=("admin",),
    body=schemas.ProviderPatch(),
    responses={200: schemas.Provider},
    errors=(409,),
    permission="oidc:manage",
)
async def patch_provider(request: web.Request, *, principal: Principal, body: dict):
    slug = request.match_info["slug"]
    return json_response(await request.app[OIDC_PROVIDERS].update(slug, body, **_actor(principal)))


@api.route(
    "DELETE",
    f"{ADMIN}/{SLUG}",
    summary="Delete an OIDC provider (linked identities stay on their accounts)",
    tags=("admin",),
    responses={204: None},
    permission="oidc:manage",
)
async def delete_provider(request: web.Request, *, principal: Principal):
    await request.app[OIDC_PROVIDERS].delete(request.match_info["slug"], **_actor(principal))
    return web.Response(status=204)
