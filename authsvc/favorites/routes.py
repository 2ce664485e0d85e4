"""HTTP for favorites, generated from the declared kinds: for each kind, POST/GET
/api/v1/favorites/<kind>, DELETE /api/v1/favorites/<kind>/{id}, and the admin listing
GET /api/v1/admin/users/{user_id}/favorites/<kind>."""

from __future__ import annotations

from aiohttp import web
from marshmallow import Schema, fields, validate

from ..appkeys import FAVORITES
from ..http.schemas import QueryInteger, example
from ..http.web import Api, json_response, links
from ..identity.principal import Principal
from .kinds import KINDS, FavoriteKind
from .service import CURSOR

api = Api()
TARGET_ID = r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}"


def TargetId(**kw) -> fields.String:
    return fields.String(
        validate=validate.Regexp(f"^{TARGET_ID}\\Z", error="1-64 letters, digits, _ . : -"),
        **example("item-42", kw),
    )


class FavoritePage(Schema):
    # A cursor is an index member: "<created_ms:013d>:<target id>".
    cursor = fields.String(
        load_default="",
        validate=validate.Regexp(f"^(?:{CURSOR})?\\Z", error="Not a cursor from this API."),
    )
    limit = QueryInteger(load_default=20, validate=validate.Range(min=1, max=100))


def _declare(kind: FavoriteKind) -> None:
    body = Schema.from_dict(
        {kind.target_field: TargetId(required=True), **kind.extra},
        name=f"Add{kind.name.title()}Favorite",
    )
    record = Schema.from_dict(
        {
            kind.uuid_field: fields.String(required=True),
            "user_id": fields.String(required=True),
            kind.target_field: fields.String(required=True),
            "created_at": fields.String(required=True),
            **{n: fields.Raw(allow_none=True) for n in kind.extra},
        },
        name=f"{kind.name.title()}Favorite",
    )
    page = Schema.from_dict(
        {
            "items": fields.List(fields.Nested(record), required=True),
            "next_cursor": fields.String(allow_none=True, required=True),
        },
        name=f"{kind.name.title()}FavoritePage",
    )
    base = f"/api/v1/favorites/{kind.name}"
    tags = ("favorites",)

    @api.route(
        "POST",
        base,
        summary=f"Add a favorite ({kind.name}); 200 if already there",
        tags=tags,
        body=body(),
        responses={201: record, 200: record},
        links=links("DELETE", base + "/{target}", target=f"$response.body#/{kind.target_field}"),
        permission="favorites:write",
        favorite=kind.name,
    )
    async def add(request: web.Request, *, principal: Principal, body: dict, favorite: str):
        service = request.app[FAVORITES][favorite]
        target = body.pop(service.kind.target_field)
        created, view = await service.add(principal, target, body)
        return json_response(view, status=201 if created else 200)

    @api.route(
        "DELETE",
        base + "/{target:" + TARGET_ID + "}",
        summary=f"Remove a favorite ({kind.name})",
        tags=tags,
        responses={204: None},
        permission="favorites:write",
        favorite=kind.name,
    )
    async def remove(request: web.Request, *, principal: Principal, favorite: str):
        await request.app[FAVORITES][favorite].remove(principal, request.match_info["target"])
        return web.Response(status=204)

    @api.route(
        "GET",
        base,
        summary=f"The caller's favorites ({kind.name}), newest first",
        tags=tags,
        query=FavoritePage(),
        responses={200: page},
        permission="favorites:read",
        favorite=kind.name,
    )
    async def mine(request: web.Request, *, principal: Principal, query: dict, favorite: str):
        return json_response(
            await request.app[FAVORITES][favorite].page(
                principal.user_id, cursor=query["cursor"], limit=query["limit"]
            )
        )

    @api.route(
        "GET",
        "/api/v1/admin/users/{user_id:[0-9A-Za-z-]{1,64}}/favorites/" + kind.name,
        summary=f"A user's favorites ({kind.name})",
        tags=("admin", "favorites"),
        query=FavoritePage(),
        responses={200: page},
        permission="favorites:read-all",
        favorite=kind.name,
    )
    async def theirs(request: web.Request, *, principal: Principal, query: dict, favorite: str):
        return json_response(
            await request.app[FAVORITES][favorite].page_of(
                request.match_info["user_id"], cursor=query["cursor"], limit=query["limit"]
            )
        )


for _kind in KINDS:
    _declare(_kind)
