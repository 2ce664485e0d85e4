"""What the sign-in routes read and answer."""

from __future__ import annotations

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate

from ..accounts.schemas import TokenResponse
from ..http.schemas import StrictBoolean, Text, Timestamp

SLUG_RE = r"[a-z0-9][a-z0-9-]{0,31}"
# https anywhere; plain http only on a loopback address (development, tests). The pattern
# is the whole rule, so what the document promises is exactly what is accepted.
PORT_RE = r"([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
ISSUER_RE = (
    r"^(https://[A-Za-z0-9.-]+|http://(127(\.[0-9]{1,3}){3}|localhost|\[::1\]))"
    r"(:" + PORT_RE + r")?(/[A-Za-z0-9._~%!$&'()*+,;=:@-]+)*/?\Z"
)  # (a port from 1 to 65535: one past it could never be reached)
SCOPE_RE = r"^[\x21\x23-\x5b\x5d-\x7e]{1,64}\Z"  # RFC 6749 scope-token
CLAIM_RE = r"^[\x21-\x7e]{1,200}\Z"  # a claim name (or a dotted path into one)
CLIENT_ID_RE = r"^[\x20-\x7e]{1,255}\Z"
ROLE_RE = r"^[a-z][a-z0-9_.-]{0,63}\Z"
AUTH_METHODS = ("auto", "client_secret_basic", "client_secret_post")
# A URL (any scheme: a game's `mygame:/login` too) the allow-list must also permit.
REDIRECT_RE = r"^[A-Za-z][A-Za-z0-9+.-]{0,31}:[\x21-\x7e]{1,2000}\Z"


MAX_MAPPED = 50


def _few_entries(value: dict) -> None:
    if len(value) > MAX_MAPPED:
        raise ValidationError(f"At most {MAX_MAPPED} entries.")


def _mapping(**kw) -> fields.Dict:
    return fields.Dict(
        # Provider roles are only compared with what the provider asserts: any string.
        keys=fields.String(),
        values=fields.String(validate=validate.Regexp(ROLE_RE)),
        validate=_few_entries,
        metadata={
            "maxProperties": MAX_MAPPED,
            "description": "provider role -> local role; only the roles named here become "
            "local roles (a local role that does not exist gives nothing)",
        },
        **kw,
    )


def _slug(**kw) -> fields.String:
    return fields.String(
        validate=validate.Regexp(
            "^" + SLUG_RE + r"\Z", error="Lowercase letters, digits and '-'; up to 32."
        ),
        **kw,
    )


def _claim(default: str) -> fields.String:
    return fields.String(load_default=default, validate=validate.Regexp(CLAIM_RE))


class ProviderFields(Schema):
    """Every field but the slug; each optional (a PATCH)."""

    name = Text(min_len=1, max_len=100)
    issuer = fields.String(
        validate=validate.Regexp(
            ISSUER_RE, error="An https URL (plain http only on a loopback address)."
        )
    )
    client_id = fields.String(validate=validate.Regexp(CLIENT_ID_RE))
    client_secret = fields.String(
        load_only=True,
        validate=validate.Regexp(r"^[\x20-\x7e]{1,1024}\Z"),
        metadata={"description": "write-only: stored sealed (AES-GCM), never returned"},
    )
    scopes = fields.List(
        fields.String(validate=validate.Regexp(SCOPE_RE)),
        validate=validate.Length(max=20),
        metadata={"description": "asked for at the provider; `openid` is always added"},
    )
    auto_register = StrictBoolean(
        metadata={"description": "a first sign-in of an unknown identity creates an account"}
    )
    enabled = StrictBoolean()
    username_claim = fields.String(validate=validate.Regexp(CLAIM_RE))
    email_claim = fields.String(validate=validate.Regexp(CLAIM_RE))
    roles_claim = fields.String(
        validate=validate.Regexp(CLAIM_RE),
        metadata={"description": "a claim name, or a dotted path (`realm_access.roles`)"},
    )
    role_mapping = _mapping()
    token_auth_method = fields.String(
        validate=validate.OneOf(AUTH_METHODS),
        metadata={"description": "auto: the first of basic and post that discovery offers"},
    )


class ProviderCreate(ProviderFields):
    slug = _slug(required=True)
    name = Text(min_len=1, max_len=100, required=True)
    issuer = fields.String(
        required=True,
        validate=validate.Regexp(
            ISSUER_RE, error="An https URL (plain http only on a loopback address)."
        ),
    )
    client_id = fields.String(required=True, validate=validate.Regexp(CLIENT_ID_RE))
    client_secret = fields.String(
        required=True,
        load_only=True,
        validate=validate.Regexp(r"^[\x20-\x7e]{1,1024}\Z"),
        metadata={"description": "write-only: stored sealed (AES-GCM), never returned"},
    )
    scopes = fields.List(
        fields.String(validate=validate.Regexp(SCOPE_RE)),
        validate=validate.Length(max=20),
        load_default=lambda: ["openid", "email", "profile"],
    )
    auto_register = StrictBoolean(load_default=False)
    enabled = StrictBoolean(load_default=True)
    username_claim = _claim("preferred_username")
    email_claim = _claim("email")
    roles_claim = _claim("roles")
    role_mapping = _mapping(load_default=dict)
    token_auth_method = fields.String(validate=validate.OneOf(AUTH_METHODS), load_default="auto")


class ProviderPatch(ProviderFields):
    pass


class Provider(Schema):
    slug = fields.String(required=True)
    name = fields.String(required=True)
    issuer = fields.String(required=True)
    client_id = fields.String(required=True)
    client_secret_set = fields.Boolean(required=True)
    scopes = fields.List(fields.String(), required=True)
    auto_register = fields.Boolean(required=True)
    enabled = fields.Boolean(required=True)
    username_claim = fields.String(required=True)
    email_claim = fields.String(required=True)
    roles_claim = fields.String(required=True)
    role_mapping = fields.Dict(keys=fields.String(), values=fields.String(), required=True)
    token_auth_method = fields.String(required=True)
    redirect_uri = fields.String(
        required=True, metadata={"description": "register this at the provider"}
    )
    created_at = Timestamp(required=True)
    updated_at = Timestamp(required=True)


class ProviderList(Schema):
    providers = fields.List(fields.Nested(Provider), required=True)


class PublicProvider(Schema):
    slug = fields.String(required=True)
    name = fields.String(required=True)


class PublicProviderList(Schema):
    providers = fields.List(fields.Nested(PublicProvider), required=True)


class RedirectQuery(Schema):
    redirect_to = fields.String(
        load_default=None,
        validate=validate.Regexp(REDIRECT_RE),
        metadata={
            "description": "where to send the browser back (OIDC_REDIRECT_ALLOWLIST must "
            "permit it; 403 otherwise), with a single-use `code` for POST "
            "/api/v1/auth/oidc/exchange"
        },
    )


class CallbackQuery(Schema):
    """What the provider sends the browser back with. Other parameters some providers
    add (`session_state`, `scope`, ...) are ignored."""

    class Meta:
        unknown = EXCLUDE

    # ASCII, as RFC 6749 writes them, and short enough that a request line with all of
    # them percent-encoded stays within what the HTTP server reads (8190 bytes).
    state = fields.String(required=True, validate=validate.Regexp(r"^[A-Za-z0-9_-]{1,128}\Z"))
    code = fields.String(load_default=None, validate=validate.Regexp(r"^[\x20-\x7e]{1,1024}\Z"))
    iss = fields.String(load_default=None, validate=validate.Regexp(r"^[\x21-\x7e]{1,500}\Z"))
    error = fields.String(
        load_default=None, validate=validate.Regexp(r"^[\x20-\x21\x23-\x5b\x5d-\x7e]{1,64}\Z")
    )
    error_description = fields.String(
        load_default=None, validate=validate.Regexp(r"^[\x20-\x21\x23-\x5b\x5d-\x7e]{0,300}\Z")
    )


class ExchangeRequest(Schema):
    code = fields.String(required=True, validate=validate.Length(min=1, max=200))


class OidcLink(Schema):
    slug = fields.String(required=True)
    name = fields.String(required=True)
    issuer = fields.String(required=True)
    sub = fields.String(required=True)
    linked_at = Timestamp(required=True)
    last_used_at = Timestamp(allow_none=True, required=True)


class OidcLinked(Schema):
    status = fields.String(required=True, validate=validate.OneOf(["linked"]))
    link = fields.Nested(OidcLink, required=True)


class OidcLinks(Schema):
    links = fields.List(fields.Nested(OidcLink), required=True)


class AuthorizeUrl(Schema):
    authorize_url = fields.String(required=True)


CALLBACK_ANSWER = {"oneOf": [TokenResponse, OidcLinked]}
