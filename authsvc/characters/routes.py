"""HTTP for characters. The seed paths (/characters) keep the game clients' contract:
POST answers 200 and a character that is not the caller's answers 401. The /api/v1
twins answer 201 and 404."""

from __future__ import annotations

import contextlib

from aiohttp import web

from ..appkeys import CHARACTERS
from ..errors import Code, NotFound, Unauthorized
from ..http.web import Api, Seed, json_response, links
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
def _ownership(on_seed_path: bool):
    """On the seed paths a missing or foreign character is a 401, as the clients expect."""
    try:
        yield
    except NotFound:
        if on_seed_path:
            raise Unauthorized(
                "character does not exist or is not yours", code=Code.CHARACTER_NOT_OWNED
            ) from None
        raise


@api.route(
    "GET",
    V1,
    summary="List the caller's characters",
    tags=TAGS,
    responses={200: schemas.CharacterList},
    permission="characters:read",
    guarded=True,
    seed=Seed(SEED),
)
async def list_characters(request: web.Request, *, principal: Principal) -> web.Response:
    chars = await request.app[CHARACTERS].list(principal.account_id, sid=principal.sid)
    return json_response({"characters": chars})


@api.route(
    "POST",
    V1,
    summary="Create a character",
    tags=TAGS,
    body=schemas.CreateCharacterRequest(),
    responses={201: schemas.Character},
    errors=(409,),  # the per-account cap
    created=201,
    links=CREATED,
    permission="characters:write",
    guarded=True,
    seed=Seed(
        SEED, responses={200: schemas.Character}, links=SEED_CREATED, options={"created": 200}
    ),
)
async def create_character(
    request: web.Request, *, principal: Principal, body: dict, created: int
) -> web.Response:
    char = await request.app[CHARACTERS].create(principal.account_id, sid=principal.sid, **body)
    return json_response(char, status=created)


@api.route(
    "GET",
    V1 + ITEM,
    summary="Read a character",
    tags=TAGS,
    responses={200: schemas.Character},
    on_seed_path=False,
    permission="characters:read",
    guarded=True,
    seed=Seed(SEED + ITEM, options={"on_seed_path": True}),
)
async def get_character(request: web.Request, *, principal: Principal, on_seed_path: bool):
    with _ownership(on_seed_path):
        char = await request.app[CHARACTERS].get(
            principal.account_id, int(request.match_info["id"]), sid=principal.sid
        )
    return json_response(char)


@api.route(
    "PUT",
    V1 + ITEM,
    summary="Rename or redescribe a character",
    tags=TAGS,
    body=schemas.UpdateCharacterRequest(),
    responses={200: schemas.Character},
    on_seed_path=False,
    permission="characters:write",
    guarded=True,
    seed=Seed(SEED + ITEM, options={"on_seed_path": True}),
)
async def update_character(
    request: web.Request, *, principal: Principal, body: dict, on_seed_path: bool
) -> web.Response:
    with _ownership(on_seed_path):
        char = await request.app[CHARACTERS].update(
            principal.account_id, int(request.match_info["id"]), sid=principal.sid, **body
        )
    return json_response(char)


@api.route(
    "DELETE",
    V1 + ITEM,
    summary="Delete a character",
    tags=TAGS,
    responses={204: None},
    on_seed_path=False,
    permission="characters:write",
    guarded=True,
    seed=Seed(SEED + ITEM, responses={200: schemas.Deleted}, options={"on_seed_path": True}),
)
async def delete_character(request: web.Request, *, principal: Principal, on_seed_path: bool):
    cid = int(request.match_info["id"])
    with _ownership(on_seed_path):
        await request.app[CHARACTERS].delete(principal.account_id, cid, sid=principal.sid)
    if on_seed_path:
        return json_response({"id": cid, "deleted": True})
    return web.Response(status=204)
