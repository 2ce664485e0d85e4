from marshmallow import Schema, fields, validate

from ..http.schemas import Email, NewPassword, Text, Timestamp, Username


class RegisterRequest(Schema):
    username = Username(required=True)
    email = Email(required=True)
    password = NewPassword(required=True)


class LoginRequest(Schema):
    # Username or email; no format rules here, so a malformed name is an ordinary miss.
    username = fields.String(
        required=True, validate=validate.Length(min=1, max=254), metadata={"example": "aria_01"}
    )
    password = fields.String(
        required=True,
        validate=validate.Length(min=1, max=1024),
        metadata={"example": "correct horse battery staple", "format": "password"},
    )
    device_name = Text(
        max_len=64, allow_none=True, load_default=None, metadata={"example": "Aria's phone"}
    )


class Account(Schema):
    id = fields.Integer(required=True)
    # null for an account that has none (a game client's guest, a sign-in through a
    # provider that asserted none)
    username = fields.String(required=True, allow_none=True)
    email = fields.String(required=True, allow_none=True)
    created_at = Timestamp(required=True)
    updated_at = Timestamp()
    last_login_at = Timestamp(allow_none=True)
    is_active = fields.Boolean()
    email_verified = fields.Boolean()
    credentials_set = fields.Boolean()


class TokenResponse(Schema):
    token = fields.String(required=True)
    access_token = fields.String(required=True)
    token_type = fields.String(required=True)
    expires_in = fields.Integer(required=True)
    refresh_token = fields.String(required=True)
    refresh_expires_in = fields.Integer(required=True)
    session_id = fields.String(required=True)


class RefreshRequest(Schema):
    refresh_token = fields.String(required=True, validate=validate.Length(min=1, max=200))


class TokenRequest(Schema):
    token = fields.String(required=True, validate=validate.Length(min=1, max=200))


class EmailRequest(Schema):
    email = Email(required=True)


class ResetPasswordRequest(Schema):
    token = fields.String(required=True, validate=validate.Length(min=1, max=200))
    new_password = NewPassword(required=True)


class ChangePasswordRequest(Schema):
    current_password = fields.String(required=True, validate=validate.Length(min=1, max=1024))
    new_password = NewPassword(required=True)


class Accepted(Schema):
    status = fields.String(required=True)


class Session(Schema):
    id = fields.String(required=True)
    created_at = Timestamp(required=True)
    last_seen_at = Timestamp(required=True)
    user_agent = fields.String(required=True)
    ip = fields.String(required=True)
    device_name = fields.String(allow_none=True)
    current = fields.Boolean(required=True)


class SessionList(Schema):
    sessions = fields.List(fields.Nested(Session), required=True)


class RevokedCount(Schema):
    revoked = fields.Integer(required=True)
