"""HTTP for characters. The seed paths (/characters) keep the game clients' contract:
POST answers 200 and a character that is not the caller's answers 401. The /api/v1
twins answer 201 and 404."""

from __future__ import annotations

import contextlib

from aiohttp import web

from ..appkeys import CHARACTERS
from ..errors import Code, NotFound, Unauthorized
from ..http.web import Api, json_response, links
from ..identity.principal import Principal
from . import schemas

api = Api()
TAGS = ("characters",)
SEED = "/characters"
V1 = "/api/v1/characters"
ITEM = "/{id:[0-9]{1,20}}"
# A new character is read, changed and deleted by its id (on the path it was made on).
CREATED = links("GET PUT DELETE", V1 + "/{id}", id="$response.body#/id")
SEED_CREATED = links("GET PUT DELETE", SEED + "/{id}", id="$response.body#/id")


@contextlib.contextmanager
def _ownership(seed: bool):
    """On the seed paths a missing or foreign character is a 401, as the clients expect."""
    try:
        yield
    except NotFound:
        if seed:
            raise Unauthorized(
                "character does not exist or is not yours", code=Code.CHARACTER_NOT_OWNED
            ) from None
        raise


@api.route(
    "GET",
    SEED,
    summary="List the caller's characters (seed path)",
    tags=TAGS,
    responses={200: schemas.CharacterList},
    permission="characters:read",
    guarded=True,
)
@api.route(
    "GET",
    V1,
    summary="List the caller's characters",
    tags=TAGS,
    responses={200: schemas.CharacterList},
    permission="characters:read",
    guarded=True,
)
async def list_characters(request: web.Request, *, principal: Principal) -> web.Response:
    chars = await request.app[CHARACTERS].list(principal.account_id, sid=principal.sid)
    return json_response({"characters": chars})


@api.route(
    "POST",
    SEED,
    summary="Create a character (seed path)",
    tags=TAGS,
    body=schemas.CreateCharacterRequest(),
    responses={200: schemas.Character},
    errors=(409,),  # the per-account cap
    created=200,
    links=SEED_CREATED,
    permission="characters:write",
    guarded=True,
)
@api.route(
    "POST",
    V1,
    summary="Create a character",
    tags=TAGS,
    body=schemas.CreateCharacterRequest(),
    responses={201: schemas.Character},
    errors=(409,),
    created=201,
    links=CREATED,
    permission="characters:write",
    guarded=True,
)
async def create_character(
    request: web.Request, *, principal: Principal, body: dict, created: int
) -> web.Response:
    char = await request.app[CHARACTERS].create(principal.account_id, sid=principal.sid, **body)
    return json_response(char, status=created)


@api.route(
    "GET",
    SEED + ITEM,
    summary="Read a character (seed path)",
    tags=TAGS,
    responses={200: schemas.Character},
    seed=True,
    permission="characters:read",
    guarded=True,
)
@api.route(
    "GET",
    V1 + ITEM,
    summary="Read a character",
    tags=TAGS,
    responses={200: schemas.Character},
    seed=False,
    permission="characters:read",
    guarded=True,
)
async def get_character(request: web.Request, *, principal: Principal, seed: bool):
    with _ownership(seed):
        char = await request.app[CHARACTERS].get(
            principal.account_id, int(request.match_info["id"]), sid=principal.sid
        )
    return json_response(char)


@api.route(
    "PUT",
    SEED + ITEM,
    summary="Rename or redescribe a character (seed path)",
    tags=TAGS,
    body=schemas.UpdateCharacterRequest(),
    responses={200: schemas.Character},
    seed=True,
    permission="characters:write",
    guarded=True,
)
@api.route(
    "PUT",
    V1 + ITEM,
    summary="Rename or redescribe a character",
    tags=TAGS,
    body=schemas.UpdateCharacterRequest(),
    responses={200: schemas.Character},
    seed=False,
    permission="characters:write",
    guarded=True,
)
async def update_character(
    request: web.Request, *, principal: Principal, body: dict, seed: bool
) -> web.Response:
    with _ownership(seed):
        char = await request.app[CHARACTERS].update(
            principal.account_id, int(request.match_info["id"]), sid=principal.sid, **body
        )
    return json_response(char)


@api.route(
    "DELETE",
    SEED + ITEM,
    summary="Delete a character (seed path)",
    tags=TAGS,
    responses={200: schemas.Deleted},
    seed=True,
    permission="characters:write",
    guarded=True,
)
@api.route(
    "DELETE",
    V1 + ITEM,
    summary="Delete a character",
    tags=TAGS,
    responses={204: None},
    seed=False,
    permission="characters:write",
    guarded=True,
)
async def delete_character(request: web.Request, *, principal: Principal, seed: bool):
    cid = int(request.match_info["id"])
    with _ownership(seed):
        await request.app[CHARACTERS].delete(principal.account_id, cid, sid=principal.sid)
    if seed:
        return json_response({"id": cid, "deleted": True})
    return web.Response(status=204)
