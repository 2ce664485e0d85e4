"""Field types shared by several features' schemas.

Each rule is a marshmallow validator that the OpenAPI document can state: `Length`,
`Range`, `OneOf` and `Regexp` translate as they are, and the few rules JSON Schema has no
keyword for (`MaxBytes`) are validators of their own that `openapi.py` states as
vendor extensions beside the nearest standard keyword."""

from __future__ import annotations

import re

from marshmallow import ValidationError, fields, validate

from ..identity.passwords import MAX_PASSWORD_BYTES

U32_MAX = 2**32 - 1

# Control characters (Unicode category Cc: C0, DEL, C1). A name is one line, so it has
# none; a longer text (a description, a bio, notes) may break lines and indent (TAB, LF,
# CR) and has no other. The patterns hold the same characters for Python and for a
# client's ECMA regex; `\Z` is stated as `$` in the document.
SINGLE_LINE = r"^[^\x00-\x1f\x7f-\x9f]*\Z"
MULTI_LINE = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]*\Z"
NO_NUL = r"^[^\x00]*\Z"

# An http(s) URL: a host name (labels of letters, digits and inner hyphens), an IPv4 or
# a bracketed IPv6 address, an optional port, then a path, query or fragment of the
# characters RFC 3986 allows unencoded (anything else is percent-encoded).
HTTP_URL = (
    r"^https?://"
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
    r"|\[[0-9A-Fa-f:.]{2,45}\])"
    r"(?::[0-9]{1,5})?"
    r"(?:[/?#][A-Za-z0-9._~!$&'()*+,;=:@/?#%-]*)?\Z"
)


class MaxBytes(validate.Validator):
    """At most `max` bytes in UTF-8. The document states it as `x-maxBytes` (and a
    `maxLength` of as many characters, which no longer text can fit in)."""

    def __init__(self, max: int, *, error: str | None = None) -> None:
        self.max_bytes = max
        self.error = error or "Must be at most {max} bytes in UTF-8; this is {size} bytes."

    def __call__(self, value: str) -> str:
        size = len(value.encode("utf-8"))
        if size > self.max_bytes:
            raise ValidationError(self.error.format(max=self.max_bytes, size=size))
        return value


def _pattern(regex: str, error: str) -> validate.Regexp:
    return validate.Regexp(re.compile(regex), error=error)


def example(value, kw: dict, **metadata) -> dict:
    """`kw` for a field, with `value` as the document's example (shown by the browsable
    document, sent by schemathesis's examples phase) unless the caller gave one."""
    merged = {"example": value, **metadata, **kw.pop("metadata", {})}
    return {**kw, "metadata": merged}


def Username(**kw) -> fields.String:
    return fields.String(
        validate=_pattern(
            r"^[A-Za-z0-9_]{3,50}\Z",
            "Username must be 3 to 50 characters of letters, digits and underscores.",
        ),
        **example("aria_01", kw),
    )


def Email(**kw) -> fields.Email:
    return fields.Email(validate=validate.Length(max=254), **example("aria@example.com", kw))


def NewPassword(**kw) -> fields.String:
    return fields.String(
        validate=[
            validate.Length(min=8, error="Password must be at least {min} characters."),
            MaxBytes(
                MAX_PASSWORD_BYTES,
                error="Password must be at most {max} bytes in UTF-8 (bcrypt's limit); "
                "this one is {size} bytes. Use a shorter passphrase.",
            ),
            _pattern(NO_NUL, "Password must not contain NUL characters."),
        ],
        **example("correct horse battery staple", kw, format="password"),
    )


def Text(*, max_len: int, min_len: int = 0, multiline: bool = False, **kw) -> fields.String:
    """Text a person writes: one line (a name), or with `multiline` several (TAB, LF and
    CR allowed); no other control characters either way."""
    if multiline:
        rule = _pattern(MULTI_LINE, "Must not contain control characters other than TAB, LF, CR.")
    else:
        rule = _pattern(SINGLE_LINE, "Must be one line without control characters.")
    return fields.String(validate=[validate.Length(min=min_len, max=max_len), rule], **kw)


def HttpUrl(*, max_len: int = 2048, **kw) -> fields.String:
    return fields.String(
        validate=[validate.Length(max=max_len), _pattern(HTTP_URL, "Not a valid http(s) URL.")],
        **example(
            "https://example.com/aria.png",
            kw,
            description="An http or https URL (other characters percent-encoded)",
        ),
    )


def U32(**kw) -> fields.Integer:
    return fields.Integer(strict=True, validate=validate.Range(min=0, max=U32_MAX), **kw)


class StrictBoolean(fields.Boolean):
    """JSON `true` or `false`, nothing else: marshmallow's Boolean also takes 1, "yes",
    "on"..., which the document (type boolean) does not allow."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, bool):
            raise self.make_error("invalid", input=value)
        return value


class QueryInteger(fields.Integer):
    """An integer query parameter: ASCII digits with an optional minus, as OpenAPI
    serialises one (Python's int() also takes " 5", "+5", "1_0" and other scripts'
    digits)."""

    _DIGITS = re.compile(r"-?[0-9]{1,18}")

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, str) or not self._DIGITS.fullmatch(value):
            raise self.make_error("invalid", input=value)
        return super()._deserialize(value, attr, data, **kwargs)


class QueryBoolean(fields.Boolean):
    """A boolean query parameter: `true` or `false`, as OpenAPI serialises it."""

    def __init__(self, **kw) -> None:
        super().__init__(truthy={"true"}, falsy={"false"}, **kw)

    def _deserialize(self, value, attr, data, **kwargs):
        if value not in ("true", "false"):
            raise self.make_error("invalid", input=value)
        return value == "true"


class Timestamp(fields.String):
    """ISO 8601 UTC timestamp, as the API writes them."""
