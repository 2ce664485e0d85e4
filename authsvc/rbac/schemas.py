"""Fields for role and permission names, shared by role administration and API keys."""

from __future__ import annotations

from marshmallow import fields, validate

from ..http.schemas import example
from .service import PERMISSION, ROLE_NAME


def RoleName(**kw) -> fields.String:
    return fields.String(
        validate=validate.Regexp(
            ROLE_NAME, error="Lowercase letters, digits, '_', '-', '.'; up to 64."
        ),
        **example("moderator", kw),
    )


def Permission(**kw) -> fields.String:
    return fields.String(
        validate=[
            validate.Length(max=128),
            validate.Regexp(PERMISSION, error="Not a permission (resource:action)."),
        ],
        **example("characters:read", kw),
    )
