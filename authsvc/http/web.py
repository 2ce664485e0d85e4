"""The HTTP edge shared by every feature: route declarations that carry their schemas
(so the OpenAPI document and the permission table are generated from them), request
body parsing, and the one error middleware that maps every failure to the JSON shape
`{"error": {"code", "message", "fields"}}`."""

from __future__ import annotations

import functools
import ipaddress
import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from aiohttp import web
from marshmallow import Schema, ValidationError

from ..errors import Code, DomainError, InvalidToken
from ..identity.principal import LOCAL, Authenticator, Principal

log = logging.getLogger("authsvc.web")


class PermissionCheck(Protocol):
    """What the route wrapper needs of authorization (rbac.service.Authorizer)."""

    async def require(self, principal: Principal, permission: str) -> None: ...


# async (Principal) -> bool: is the caller's account (and session) still live?
Liveness = Callable[[Principal], Awaitable[bool]]

# The keys the edge itself reads; authsvc/appkeys.py re-exports them beside the rest.
AUTHENTICATOR = web.AppKey("authenticator", Authenticator)
AUTHORIZER: web.AppKey[PermissionCheck] = web.AppKey("authorizer")
LIVENESS: web.AppKey[Liveness] = web.AppKey("liveness")

STATUS: dict[Code, int] = {
    Code.MALFORMED_REQUEST: 400,
    Code.INVALID_JSON: 400,
    Code.UNSUPPORTED_MEDIA_TYPE: 415,
    Code.BODY_TOO_LARGE: 413,
    Code.VALIDATION_FAILED: 422,
    Code.USERNAME_TAKEN: 409,
    Code.EMAIL_TAKEN: 409,
    Code.CONFLICT: 409,
    Code.LAST_ADMIN: 409,
    Code.SELF_LOCKOUT: 409,
    Code.INVALID_CREDENTIALS: 401,
    Code.WRONG_PASSWORD: 403,
    Code.ACCOUNT_DISABLED: 403,
    Code.FORBIDDEN: 403,
    Code.EMAIL_NOT_VERIFIED: 403,
    Code.TOO_MANY_REQUESTS: 429,
    Code.INVALID_REFRESH_TOKEN: 401,
    Code.REFRESH_TOKEN_REUSED: 401,
    Code.INVALID_LINK_TOKEN: 400,
    Code.CATALOG_UNAVAILABLE: 503,
    Code.UNKNOWN_ITEM: 422,
    Code.MISSING_TOKEN: 401,
    Code.INVALID_TOKEN: 401,
    Code.NOT_FOUND: 404,
    Code.CHARACTER_NOT_OWNED: 401,
    Code.CHARACTER_LIMIT: 409,
    Code.METHOD_NOT_ALLOWED: 405,
    Code.STORE_UNAVAILABLE: 503,
    Code.SECRETS_KEY_MISSING: 409,
    Code.PROVIDER_UNAVAILABLE: 503,
    Code.INVALID_OIDC_STATE: 401,
    Code.INVALID_OIDC_CODE: 401,
    Code.REDIRECT_NOT_ALLOWED: 403,
    Code.INVALID_ID_TOKEN: 401,
    Code.PROVIDER_DENIED: 401,
    Code.ACCOUNT_EXISTS: 409,
    Code.IDENTITY_NOT_LINKED: 403,
    Code.IDENTITY_LINKED_ELSEWHERE: 409,
    Code.PROVIDER_ALREADY_LINKED: 409,
    Code.IDENTITY_TAKEN: 409,
    Code.LAST_SIGN_IN_METHOD: 409,
    Code.INVALID_EXCHANGE_CODE: 401,
    Code.CREDENTIALS_EXIST: 409,
    Code.NO_PASSWORD: 409,
    Code.INTERNAL: 500,
}

_HTTP_CODES = {
    404: (Code.NOT_FOUND, "no such resource"),
    405: (Code.METHOD_NOT_ALLOWED, "method not allowed on this resource"),
    413: (Code.BODY_TOO_LARGE, "the request body is too large"),
}


def dumps(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None):
    return web.Response(
        text=dumps(data), status=status, content_type="application/json", headers=headers
    )


def error_response(
    code: Code,
    message: str,
    *,
    status: int | None = None,
    fields: dict | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    body: dict[str, Any] = {"code": str(code), "message": message}
    if fields:
        body["fields"] = fields
    status = status or STATUS.get(code, 500)
    headers = dict(headers or {})
    if status == 401 and "WWW-Authenticate" not in headers:
        if code == Code.INVALID_TOKEN:
            desc = message.replace('"', "'")
            headers["WWW-Authenticate"] = (
                f'Bearer realm="authsvc", error="invalid_token", error_description="{desc}"'
            )
        else:
            headers["WWW-Authenticate"] = 'Bearer realm="authsvc"'
    if status == 503:
        headers.setdefault("Retry-After", "1")
    return json_response({"error": body}, status=status, headers=headers)


@web.middleware
async def error_middleware(request: web.Request, handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except DomainError as exc:
        if exc.code == Code.STORE_UNAVAILABLE:
            log.warning("store unavailable: %s %s: %r", request.method, request.path, exc.__cause__)
        headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after else None
        return error_response(exc.code, exc.message, fields=exc.fields, headers=headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code, message = _HTTP_CODES.get(exc.status, (Code.INTERNAL, exc.reason))
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return error_response(code, message, status=exc.status, headers=headers)
    except Exception:
        log.exception("unhandled error: %s %s", request.method, request.path)
        return error_response(Code.INTERNAL, "unexpected failure", status=500)


TRUSTED_PROXIES: web.AppKey[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]] = web.AppKey(
    "trusted_proxies"
)


def client_ip(request: web.Request) -> str | None:
    """The caller's address as the audit trail and rate limits see it.

    X-Forwarded-For is believed only when the direct peer is a trusted proxy
    (TRUSTED_PROXIES); then the nearest address that is not a trusted proxy wins, so a
    client cannot choose its own address by sending the header."""
    remote = request.remote
    nets = request.app.get(TRUSTED_PROXIES) or ()
    if not nets or not _trusted(remote, nets):
        return remote
    hops = [h.strip() for h in request.headers.get("X-Forwarded-For", "").split(",")]
    for hop in reversed([h for h in hops if h]):
        if not _trusted(hop, nets):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return remote  # garbage in the header: fall back to the peer
    return remote


def _trusted(addr: str | None, nets: tuple) -> bool:
    try:
        ip = ipaddress.ip_address(addr or "")
    except ValueError:
        return False
    return any(ip in net for net in nets)


# A \uD800-\uDFFF escape: paired ones decode to one character, a lone one would stay a
# surrogate that no UTF-8 encoder (the store's, the JSON answer's) accepts.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _has_lone_surrogate(data: Any) -> bool:
    try:
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


async def read_json(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object, or a 400/413/415 DomainError."""
    ctype = request.content_type
    if ctype != "application/json" and not (
        ctype.startswith("application/") and ctype.endswith("+json")
    ):
        raise DomainError(
            "the body must be JSON (Content-Type: application/json)",
            code=Code.UNSUPPORTED_MEDIA_TYPE,
        )
    try:
        raw = await request.read()  # raises 413 past client_max_size
    except ConnectionResetError:
        # The client hung up mid-body: nobody is left to answer, and it is not our fault.
        raise web.HTTPBadRequest(reason="client disconnected") from None
    try:
        data = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        raise DomainError("the body is not valid JSON", code=Code.INVALID_JSON) from None
    if not isinstance(data, dict):
        raise DomainError("the body must be a JSON object", code=Code.INVALID_JSON)
    if _SURROGATE_ESCAPE.search(raw) and _has_lone_surrogate(data):
        raise DomainError(
            "the body is not valid JSON: an unpaired UTF-16 surrogate escape",
            code=Code.INVALID_JSON,
        )
    return data


def flatten_messages(messages: Any, prefix: str = "") -> dict[str, list[str]]:
    """marshmallow's nested messages as {"field.sub": ["message", ...]}."""
    out: dict[str, list[str]] = {}
    if isinstance(messages, dict):
        for key, value in messages.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            out.update(flatten_messages(value, name))
    elif isinstance(messages, list) and all(isinstance(m, str) for m in messages):
        out[prefix or "_body"] = list(messages)
    else:
        out[prefix or "_body"] = [str(messages)]
    return out


def validate(schema: Schema, data: Any) -> dict[str, Any]:
    try:
        return schema.load(data)
    except ValidationError as exc:
        raise DomainError(
            "the request is not valid; see fields",
            code=Code.VALIDATION_FAILED,
            fields=flatten_messages(exc.messages),
        ) from None


Handler = Callable[..., Awaitable[web.StreamResponse]]


def path_variables(path: str) -> tuple[str, list[tuple[str, str | None]]]:
    """A route path without its regular expressions, and its variables:
    `/x/{id:[0-9]+}` -> ("/x/{id}", [("id", "[0-9]+")])."""
    out: list[str] = []
    variables: list[tuple[str, str | None]] = []
    i = 0
    while i < len(path):
        if path[i] != "{":
            out.append(path[i])
            i += 1
            continue
        depth, j = 0, i
        while True:  # regexes may hold braces of their own: {1,20}
            depth += {"{": 1, "}": -1}.get(path[j], 0)
            if depth == 0:
                break
            j += 1
        name, _, regex = path[i + 1 : j].partition(":")
        variables.append((name, regex or None))
        out.append("{" + name + "}")
        i = j + 1
    return "".join(out), variables


@dataclass(frozen=True)
class Link:
    """An OpenAPI link from a route's success answer to an operation it enables: what a
    client (or schemathesis's stateful phase) does next with what it got, e.g. read,
    change and delete the character it created. `target` is "METHOD /path/{name}" as the
    document spells it; `parameters` map a parameter to a runtime expression
    (`$response.body#/id`, `$request.path.id`), `body` is a request body of them."""

    target: str
    parameters: dict[str, str] = field(default_factory=dict)
    body: dict[str, str] | None = None


def links(methods: str, path: str, body: dict[str, str] | None = None, **params: str):
    """Links to several methods on one path: `links("GET PUT DELETE", "/x/{id}", id=...)`."""
    return tuple(Link(f"{m} {path}", dict(params), body) for m in methods.split())


@dataclass(frozen=True)
class Endpoint:
    """One route as declared next to its handler: what it reads, what it answers."""

    method: str
    path: str
    handler: Handler
    summary: str
    tags: tuple[str, ...]
    body: Schema | None = None
    query: Schema | None = None
    responses: dict[int, Any] = field(default_factory=dict)
    auth: bool = True
    options: dict[str, Any] = field(default_factory=dict)
    permission: str | None = None
    guarded: bool = False
    # For the OpenAPI document only: statuses this route answers beyond those its
    # declaration implies (auth, body, query, path), a JSON schema for a body the
    # handler reads itself (an OpenAPI `content` map), and the content type(s) of its
    # success response.
    errors: tuple[int, ...] = ()
    doc_body: dict[str, Any] | None = None
    produces: str | tuple[str, ...] = "application/json"
    uses_store: bool = True  # False: never answers 503 (liveness, documents)
    links: tuple[Link, ...] = ()


@dataclass(frozen=True)
class Seed:
    """The seed design's path for the same operation (the game clients' contract, kept
    verbatim), declared in one route with its /api/v1 twin. The twin's declaration
    holds for the seed path too, but for what is given here: the seed path's own
    answers (`responses`), links and handler options (merged over the twin's)."""

    path: str
    responses: dict[int, Any] | None = None
    links: tuple[Link, ...] | None = None
    options: dict[str, Any] = field(default_factory=dict)


class Api:
    """Collects endpoint declarations; `register` wires them into an application.

    The wrapper does what every handler would otherwise repeat: authenticate the
    caller (when `auth`), check the caller is still live (unless the route's own store
    script does: `guarded=True`), check the permission the route declares, parse and validate
    the body and query with their schemas, then call the handler with keyword
    arguments `principal`, `body`, `query` and the endpoint's `options`. Every route
    that authenticates must name its permission: there is no unchecked default."""

    def __init__(self) -> None:
        self.endpoints: list[Endpoint] = []

    def route(
        self,
        method: str,
        path: str,
        *,
        summary: str,
        tags: tuple[str, ...] = (),
        body: Schema | None = None,
        query: Schema | None = None,
        responses: dict[int, Any] | None = None,
        auth: bool = True,
        permission: str | None = None,
        guarded: bool = False,
        errors: tuple[int, ...] = (),
        doc_body: dict[str, Any] | None = None,
        produces: str | tuple[str, ...] = "application/json",
        uses_store: bool = True,
        links: tuple[Link, ...] = (),
        seed: Seed | None = None,
        **options: Any,
    ) -> Callable[[Handler], Handler]:
        """Declare a route; with `seed`, also its seed-path twin (listed after it)."""
        if auth and not permission:
            raise TypeError(f"{method} {path}: an authenticated route must declare a permission")

        def decorate(handler: Handler) -> Handler:
            v1 = Endpoint(
                method,
                path,
                handler,
                summary,
                tags,
                body,
                query,
                responses or {},
                auth,
                options,
                permission,
                guarded,
                errors,
                doc_body,
                produces,
                uses_store,
                links,
            )
            self.endpoints.append(v1)
            if seed is not None:
                self.endpoints.append(
                    replace(
                        v1,
                        path=seed.path,
                        summary=f"{summary} (seed path)",
                        responses=v1.responses if seed.responses is None else seed.responses,
                        links=v1.links if seed.links is None else seed.links,
                        options={**options, **seed.options},
                    )
                )
            return handler

        return decorate

    def register(self, app: web.Application) -> None:
        for ep in self.endpoints:
            app.router.add_route(ep.method, ep.path, _wrap(ep))


def _wrap(ep: Endpoint) -> Handler:
    handler, body_schema, query_schema, auth, options, permission, guarded = (
        ep.handler,
        ep.body,
        ep.query,
        ep.auth,
        ep.options,
        ep.permission,
        ep.guarded,
    )

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        kw: dict[str, Any] = dict(options)
        if auth:
            principal = await request.app[AUTHENTICATOR].authenticate(request.headers)
            # Revocation (a logged-out session, a disabled account) holds on every
            # route: `guarded` routes check a local caller inside their own store
            # script, in the same round trip; the others pay one extra round trip here,
            # and so does every external (Keycloak) user, whom an administrator may have
            # disabled. (An API key's own step checks its owner.)
            if (
                (principal.kind != LOCAL or (principal.sid and not guarded))
                and principal.api_key_id is None
                and not await request.app[LIVENESS](principal)
            ):
                raise InvalidToken("the session or user behind this token is no longer active")
            await request.app[AUTHORIZER].require(principal, permission)
            kw["principal"] = principal
        if body_schema is not None:
            kw["body"] = validate(body_schema, await read_json(request))
        if query_schema is not None:
            kw["query"] = validate(query_schema, dict(request.query))
        return await handler(request, **kw)

    return wrapped
