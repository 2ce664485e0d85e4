"""HTTP for administration: users, roles, the activity trail."""

from __future__ import annotations

from aiohttp import web
from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from ..accounts.schemas import Account
from ..appkeys import ADMIN, AUDIT_READER, CLOCK, ROLES
from ..http.schemas import Email, QueryInteger, StrictBoolean, Text, Timestamp, Username
from ..http.web import Api, json_response, links
from ..identity.principal import Principal
from ..rbac.schemas import Permission, RoleName

api = Api()
USERS = "/api/v1/admin/users"
USER = USERS + "/{id:[0-9A-Za-z-]{1,64}}"  # a local account's id or a Keycloak user's sub
ROLE_PATH = "{role:[a-z][a-z0-9_.-]{0,63}}"


class Page(Schema):
    cursor = fields.String(load_default="", validate=validate.Length(max=600))
    limit = QueryInteger(load_default=50, validate=validate.Range(min=1, max=200))


class UserQuery(Page):
    # One index answers a page, so the filters exclude each other (the document says
    # so: at most one of them).
    exclusive = ("username", "email", "role")
    kind = fields.String(
        load_default=None,
        validate=validate.OneOf(["local", "keycloak"]),
        metadata={"description": "local accounts or Keycloak users only (default: both)"},
    )
    username = fields.String(load_default=None, validate=validate.Length(min=1, max=50))
    email = fields.String(load_default=None, validate=validate.Length(min=1, max=254))
    role = fields.String(load_default=None, validate=validate.Length(min=1, max=64))

    @validates_schema
    def _one_filter(self, data: dict, **kwargs) -> None:
        if sum(data.get(name) is not None for name in self.exclusive) > 1:
            raise ValidationError("Use one filter at a time.", "_query")


class UserPatch(Schema):
    username = Username()
    email = Email()
    email_verified = StrictBoolean()
    is_active = StrictBoolean()


class AdminUser(Account):
    """A local account, or a Keycloak user (`id` its sub, `username` its display name;
    no `email_verified`, `credentials_set` or last login)."""

    id = fields.Raw(
        required=True,
        metadata={"oneOf": [{"type": "integer"}, {"type": "string"}]},
    )
    kind = fields.String(required=True, validate=validate.OneOf(["local", "keycloak"]))
    created_at = Timestamp(required=True, allow_none=True)


class AdminAccount(AdminUser):
    roles = fields.List(fields.String(), required=True)


class AccountPage(Schema):
    items = fields.List(fields.Nested(AdminUser), required=True)
    next_cursor = fields.String(allow_none=True, required=True)


class RoleRequest(Schema):
    name = RoleName(required=True)
    permissions = fields.List(Permission(), required=True, validate=validate.Length(max=200))
    inherits = fields.List(RoleName(), load_default=list, validate=validate.Length(max=50))
    description = Text(max_len=500, multiline=True, load_default="")


class Role(Schema):
    name = fields.String(required=True)
    description = fields.String(required=True)
    permissions = fields.List(fields.String(), required=True)
    inherits = fields.List(fields.String(), required=True)
    builtin = fields.Boolean(required=True)
    effective_permissions = fields.List(fields.String(), required=True)


class RoleList(Schema):
    roles = fields.List(fields.Nested(Role), required=True)


class GrantRequest(Schema):
    role = RoleName(required=True)


class Granted(Schema):
    roles = fields.List(fields.String(), required=True)


class IdPage(Schema):
    items = fields.List(fields.String(), required=True)
    next_cursor = fields.String(allow_none=True, required=True)


class ActivityPage(Page):
    # A cursor here is a stream entry id.
    cursor = fields.String(
        load_default="",
        validate=validate.Regexp(
            r"^([0-9]{1,20}-[0-9]{1,20})?\Z", error="Not a cursor from this API."
        ),
    )


class ActivityQuery(ActivityPage):
    user_id = fields.String(load_default=None, validate=validate.Length(min=1, max=64))
    action = fields.String(load_default=None, validate=validate.Length(min=1, max=64))
    since = fields.AwareDateTime(load_default=None)
    until = fields.AwareDateTime(load_default=None)


class StatsQuery(Schema):
    since = fields.AwareDateTime(load_default=None)
    until = fields.AwareDateTime(load_default=None)


class Event(Schema):
    id = fields.String(required=True)
    action = fields.String(required=True)
    ts = fields.String(required=True)


class EventPage(Schema):
    items = fields.List(fields.Dict(), required=True)
    next_cursor = fields.String(allow_none=True, required=True)


class Stats(Schema):
    since = fields.String(required=True)
    until = fields.String(required=True)
    total = fields.Integer(required=True)
    by_action = fields.Dict(keys=fields.String(), values=fields.Integer(), required=True)
    truncated = fields.Boolean(required=True)


# -- users -----------------------------------------------------------------------------


@api.route(
    "GET",
    USERS,
    summary="List local accounts and Keycloak users (kind; one filter: username or email "
    "prefix, or role)",
    tags=("admin",),
    query=UserQuery(),
    responses={200: AccountPage},
    permission="users:read",
)
async def list_users(request: web.Request, *, principal: Principal, query: dict):
    page = await request.app[ADMIN].list_users(
        kind=query["kind"],
        username_prefix=query["username"],
        email_prefix=query["email"],
        role=query["role"],
        cursor=query["cursor"],
        limit=query["limit"],
    )
    return json_response(page)


@api.route(
    "GET",
    USER,
    summary="One account or Keycloak user, with its roles",
    tags=("admin",),
    responses={200: AdminAccount},
    permission="users:read",
)
async def get_user(request: web.Request, *, principal: Principal):
    return json_response(await request.app[ADMIN].get_user(request.match_info["id"]))


@api.route(
    "PATCH",
    USER,
    summary="Change username, email, verification or activity (a Keycloak user's activity)",
    tags=("admin",),
    body=UserPatch(),
    responses={200: AdminAccount},
    errors=(409,),  # identity taken; what Keycloak manages; the last-admin guard
    permission="users:write",
)
async def patch_user(request: web.Request, *, principal: Principal, body: dict):
    user = await request.app[ADMIN].update_user(request.match_info["id"], body, actor=principal)
    return json_response(user)


@api.route(
    "DELETE",
    USER,
    summary="Delete an account (or what is kept about a Keycloak user) and everything it owns",
    tags=("admin",),
    responses={204: None},
    errors=(409,),  # the last-admin guard
    permission="users:write",
)
async def delete_user(request: web.Request, *, principal: Principal):
    await request.app[ADMIN].delete_user(request.match_info["id"], actor=principal)
    return web.Response(status=204)


@api.route(
    "POST",
    USER + "/disable",
    summary="Disable: revokes every session (a Keycloak user's tokens) at once",
    tags=("admin",),
    responses={200: AdminAccount},
    errors=(409,),  # the last-admin guard
    permission="users:write",
    active=False,
)
@api.route(
    "POST",
    USER + "/enable",
    summary="Enable a disabled account",
    tags=("admin",),
    responses={200: AdminAccount},
    permission="users:write",
    active=True,
)
async def set_active(request: web.Request, *, principal: Principal, active: bool):
    user = await request.app[ADMIN].set_active(request.match_info["id"], active, actor=principal)
    return json_response(user)


# -- roles -----------------------------------------------------------------------------


@api.route(
    "GET",
    "/api/v1/admin/roles",
    summary="Roles with their effective permissions",
    tags=("roles",),
    responses={200: RoleList},
    permission="roles:read",
)
async def list_roles(request: web.Request, *, principal: Principal):
    return json_response({"roles": await request.app[ROLES].list()})


@api.route(
    "POST",
    "/api/v1/admin/roles",
    summary="Create (201) or redefine (200) a role; inheritance cycles are refused",
    tags=("roles",),
    body=RoleRequest(),
    responses={201: Role, 200: Role},
    errors=(409,),  # cycles, built-ins, no such role to inherit from; the last-admin guard
    links=(
        *links("DELETE", "/api/v1/admin/roles/{role}", role="$response.body#/name"),
        *links("GET", "/api/v1/admin/roles/{role}/users", role="$response.body#/name"),
    ),
    permission="roles:write",
)
async def create_role(request: web.Request, *, principal: Principal, body: dict):
    role = await request.app[ROLES].create(**body, actor=principal)
    created = role.pop("created")
    return json_response(role, status=201 if created else 200)


@api.route(
    "DELETE",
    "/api/v1/admin/roles/" + ROLE_PATH,
    summary="Delete an unused role (409 while granted, inherited from, or built in)",
    tags=("roles",),
    responses={204: None},
    errors=(409,),
    permission="roles:write",
)
async def delete_role(request: web.Request, *, principal: Principal):
    await request.app[ROLES].delete(request.match_info["role"], actor=principal)
    return web.Response(status=204)


@api.route(
    "GET",
    "/api/v1/admin/roles/" + ROLE_PATH + "/users",
    summary="Ids of the users holding a role",
    tags=("roles",),
    query=Page(),
    responses={200: IdPage},
    permission="roles:read",
)
async def role_users(request: web.Request, *, principal: Principal, query: dict):
    page = await request.app[ROLES].members(
        request.match_info["role"], cursor=query["cursor"], limit=query["limit"]
    )
    return json_response(page)


@api.route(
    "POST",
    "/api/v1/admin/users/{id:[0-9A-Za-z-]{1,64}}/roles",
    summary="Grant a role",
    tags=("roles",),
    body=GrantRequest(),
    responses={200: Granted},
    links=(
        *links(
            "DELETE",
            "/api/v1/admin/users/{id}/roles/{role}",
            id="$request.path.id",
            role="$request.body#/role",
        ),
        *links("GET", "/api/v1/admin/roles/{role}/users", role="$request.body#/role"),
    ),
    permission="roles:write",
)
async def grant_role(request: web.Request, *, principal: Principal, body: dict):
    roles = await request.app[ROLES].grant(request.match_info["id"], body["role"], actor=principal)
    return json_response({"roles": roles})


@api.route(
    "DELETE",
    "/api/v1/admin/users/{id:[0-9A-Za-z-]{1,64}}/roles/" + ROLE_PATH,
    summary="Remove a role (effective at once)",
    tags=("roles",),
    responses={204: None},
    errors=(409,),  # the last-admin guard
    permission="roles:write",
)
async def revoke_role(request: web.Request, *, principal: Principal):
    await request.app[ROLES].revoke(
        request.match_info["id"], request.match_info["role"], actor=principal
    )
    return web.Response(status=204)


# -- activity --------------------------------------------------------------------------


def _ms(dt) -> int | None:
    return None if dt is None else int(dt.timestamp() * 1000)


@api.route(
    "GET",
    "/api/v1/users/me/activity",
    summary="The caller's own audit events",
    tags=("activity",),
    query=ActivityPage(),
    responses={200: EventPage},
    permission="activity:read",
)
async def my_activity(request: web.Request, *, principal: Principal, query: dict):
    page = await request.app[AUDIT_READER].page(
        user_id=principal.user_id, cursor=query["cursor"] or None, limit=query["limit"]
    )
    return json_response(page)


@api.route(
    "GET",
    "/api/v1/admin/activity",
    summary="Audit events (user, action, time range)",
    tags=("activity",),
    query=ActivityQuery(),
    responses={200: EventPage},
    permission="audit:read",
)
async def admin_activity(request: web.Request, *, principal: Principal, query: dict):
    page = await request.app[AUDIT_READER].page(
        user_id=query["user_id"],
        action=query["action"],
        since_ms=_ms(query["since"]),
        until_ms=_ms(query["until"]),
        cursor=query["cursor"] or None,
        limit=query["limit"],
    )
    return json_response(page)


@api.route(
    "GET",
    "/api/v1/admin/activity/stats",
    summary="Event counts by action",
    tags=("activity",),
    query=StatsQuery(),
    responses={200: Stats},
    permission="audit:read",
)
async def activity_stats(request: web.Request, *, principal: Principal, query: dict):
    until = _ms(query["until"])
    if until is None:  # (not `or`: the epoch itself is a valid bound)
        until = int(request.app[CLOCK]() * 1000)
    since = _ms(query["since"])
    if since is None:
        since = until - 86_400_000
    return json_response(await request.app[AUDIT_READER].stats(since_ms=since, until_ms=until))
