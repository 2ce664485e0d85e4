from marshmallow import Schema, fields, validate

from ..schemas import Email, NewPassword, Timestamp, Username


class RegisterRequest(Schema):
    username = Username(required=True)
    email = Email(required=True)
    password = NewPassword(required=True)


class LoginRequest(Schema):
    # Username or email; no format rules here, so a malformed name is an ordinary miss.
    username = fields.String(required=True, validate=validate.Length(min=1, max=254))
    password = fields.String(required=True, validate=validate.Length(min=1, max=1024))


class Account(Schema):
    id = fields.Integer(required=True)
    username = fields.String(required=True)
    email = fields.String(required=True)
    created_at = Timestamp(required=True)
    updated_at = Timestamp()
    last_login_at = Timestamp(allow_none=True)
    is_active = fields.Boolean()
    email_verified = fields.Boolean()


class TokenResponse(Schema):
    token = fields.String(required=True)
    access_token = fields.String(required=True)
    token_type = fields.String(required=True)
    expires_in = fields.Integer(required=True)
