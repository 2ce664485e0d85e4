"""Field types shared by several features' schemas."""

from __future__ import annotations

import re

from marshmallow import ValidationError, fields, validate

from .passwords import MAX_PASSWORD_BYTES

U32_MAX = 2**32 - 1
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _password_rules(value: str) -> None:
    size = len(value.encode("utf-8"))
    if size > MAX_PASSWORD_BYTES:
        raise ValidationError(
            f"Password must be at most {MAX_PASSWORD_BYTES} bytes in UTF-8 (bcrypt's limit); "
            f"this one is {size} bytes. Use a shorter passphrase."
        )
    if "\x00" in value:
        raise ValidationError("Password must not contain NUL characters.")


def _no_control_chars(value: str) -> None:
    if _CONTROL.search(value):
        raise ValidationError("Must not contain control characters.")


def Username(**kw) -> fields.String:
    return fields.String(
        validate=validate.Regexp(
            r"^[A-Za-z0-9_]{3,50}\Z",
            error="Username must be 3 to 50 characters of letters, digits and underscores.",
        ),
        **kw,
    )


def Email(**kw) -> fields.Email:
    return fields.Email(validate=validate.Length(max=254), **kw)


def NewPassword(**kw) -> fields.String:
    return fields.String(
        validate=[
            validate.Length(min=8, error="Password must be at least {min} characters."),
            _password_rules,
        ],
        **kw,
    )


def Text(*, max_len: int, min_len: int = 0, **kw) -> fields.String:
    return fields.String(
        validate=[validate.Length(min=min_len, max=max_len), _no_control_chars], **kw
    )


def U32(**kw) -> fields.Integer:
    return fields.Integer(strict=True, validate=validate.Range(min=0, max=U32_MAX), **kw)


class Timestamp(fields.String):
    """ISO 8601 UTC timestamp, as the API writes them."""
