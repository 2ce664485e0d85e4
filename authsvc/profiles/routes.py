"""HTTP for the user's own data: account and profile, preferences, follows, export and
deletion."""

from __future__ import annotations

from aiohttp import web
from marshmallow import Schema, fields, validate

from ..appkeys import PROFILES
from ..http.schemas import HttpUrl, QueryInteger, Text
from ..http.web import Api, json_response, links, read_json
from ..identity.principal import Principal
from .service import CURSOR

api = Api()
ME = "/api/v1/users/me"
USER_ID = "{user_id:[0-9A-Za-z-]{1,64}}"


class ProfilePatch(Schema):
    display_name = Text(max_len=100, allow_none=True, metadata={"example": "Aria"})
    bio = Text(
        max_len=1000, multiline=True, allow_none=True, metadata={"example": "Plays on weekends."}
    )
    avatar_url = HttpUrl(allow_none=True)
    location = Text(max_len=100, allow_none=True, metadata={"example": "Lisbon"})
    website = HttpUrl(allow_none=True, metadata={"example": "https://example.com/"})
    privacy = fields.String(
        validate=validate.OneOf(["public", "followers", "private"]), allow_none=True
    )


class Profile(Schema):
    display_name = fields.String(allow_none=True)
    bio = fields.String(allow_none=True)
    avatar_url = fields.String(allow_none=True)
    location = fields.String(allow_none=True)
    website = fields.String(allow_none=True)
    privacy = fields.String(required=True)


class Me(Schema):
    """A local account's fields (`is_active` ... `last_login_at`) or a Keycloak user's
    (`kind`, `display_name`), plus the profile."""

    id = fields.Raw(required=True)  # an integer (local account) or a UUID (Keycloak)
    kind = fields.String()
    username = fields.String(required=True, allow_none=True)  # null: a guest has none
    display_name = fields.String()
    email = fields.String(allow_none=True)
    created_at = fields.String(allow_none=True)
    updated_at = fields.String(allow_none=True)
    last_login_at = fields.String(allow_none=True)
    is_active = fields.Boolean()
    email_verified = fields.Boolean()
    credentials_set = fields.Boolean()  # a local account with a password
    profile = fields.Nested(Profile, required=True)


class FollowPage(Schema):
    cursor = fields.String(
        load_default="",
        validate=validate.Regexp(f"^(?:{CURSOR})?\\Z", error="Not a cursor from this API."),
    )
    limit = QueryInteger(load_default=50, validate=validate.Range(min=1, max=200))


class Follows(Schema):
    items = fields.List(fields.Dict(), required=True)
    next_cursor = fields.String(allow_none=True, required=True)


class Followed(Schema):
    following = fields.Boolean(required=True)
    changed = fields.Boolean(required=True)


@api.route(
    "GET",
    ME,
    summary="The caller's account (or Keycloak user) and profile",
    tags=("users",),
    responses={200: Me},
    permission="profile:read",
    guarded=True,
)
async def get_me(request: web.Request, *, principal: Principal):
    return json_response(await request.app[PROFILES].me(principal))


@api.route(
    "PATCH",
    ME,
    summary="Change the caller's profile (null clears a field)",
    tags=("users",),
    body=ProfilePatch(),
    responses={200: Me},
    permission="profile:write",
)
async def patch_me(request: web.Request, *, principal: Principal, body: dict):
    return json_response(await request.app[PROFILES].update_profile(principal, body))


@api.route(
    "DELETE",
    ME,
    summary="Delete the caller's account and everything about it",
    tags=("users",),
    responses={204: None},
    errors=(409,),  # the last holder of '*' cannot leave
    permission="profile:write",
)
async def delete_me(request: web.Request, *, principal: Principal):
    await request.app[PROFILES].delete_me(principal)
    return web.Response(status=204)


@api.route(
    "GET",
    ME + "/export",
    summary="Everything stored about the caller",
    tags=("users",),
    responses={200: None},
    permission="profile:read",
)
async def export(request: web.Request, *, principal: Principal):
    doc = await request.app[PROFILES].export(principal)
    return json_response(
        doc,
        headers={
            "Content-Disposition": 'attachment; filename="authsvc-export.json"',
            "Cache-Control": "no-store",
        },
    )


@api.route(
    "GET",
    ME + "/preferences",
    summary="The caller's preferences (a JSON object)",
    tags=("users",),
    responses={200: None},
    permission="profile:read",
)
async def get_preferences(request: web.Request, *, principal: Principal):
    return json_response(await request.app[PROFILES].preferences(principal))


@api.route(
    "PATCH",
    ME + "/preferences",
    summary="Merge into the preferences (top-level keys; null deletes one; 16 KiB)",
    tags=("users",),
    responses={200: None},
    doc_body={"application/json": {"schema": {"type": "object", "additionalProperties": True}}},
    permission="profile:write",
)
async def patch_preferences(request: web.Request, *, principal: Principal):
    # Free-form by design: any JSON object, bounded by size in the service.
    patch = await read_json(request)
    return json_response(await request.app[PROFILES].merge_preferences(principal, patch))


@api.route(
    "POST",
    "/api/v1/social/follow/" + USER_ID,
    summary="Follow a user (idempotent)",
    tags=("social",),
    responses={200: Followed},
    links=links("DELETE", "/api/v1/social/follow/{user_id}", user_id="$request.path.user_id"),
    permission="social:write",
)
async def follow(request: web.Request, *, principal: Principal):
    changed = await request.app[PROFILES].follow(principal, request.match_info["user_id"])
    return json_response({"following": True, "changed": changed})


@api.route(
    "DELETE",
    "/api/v1/social/follow/" + USER_ID,
    summary="Unfollow (idempotent)",
    tags=("social",),
    responses={200: Followed},
    permission="social:write",
)
async def unfollow(request: web.Request, *, principal: Principal):
    changed = await request.app[PROFILES].unfollow(principal, request.match_info["user_id"])
    return json_response({"following": False, "changed": changed})


@api.route(
    "GET",
    "/api/v1/social/following",
    summary="Whom the caller follows",
    tags=("social",),
    query=FollowPage(),
    responses={200: Follows},
    permission="social:read",
    direction="following",
)
@api.route(
    "GET",
    "/api/v1/social/followers",
    summary="Who follows the caller",
    tags=("social",),
    query=FollowPage(),
    responses={200: Follows},
    permission="social:read",
    direction="followers",
)
async def follows(request: web.Request, *, principal: Principal, query: dict, direction: str):
    page = await request.app[PROFILES].follows(
        principal, direction=direction, cursor=query["cursor"], limit=query["limit"]
    )
    return json_response(page)
