"""What the device routes read and answer."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from ..http.schemas import Text, Timestamp

DEVICE_ID = fields.String(
    required=True,
    load_only=True,
    validate=validate.Regexp(
        r"^[\x21-\x7e]{16,128}\Z", error="16 to 128 visible ASCII characters."
    ),
    metadata={"description": "a secret the client keeps; stored only as its SHA-256"},
)
HANDLE_RE = r"[0-9a-f]{16}"


class DeviceSignIn(Schema):
    device_id = DEVICE_ID
    device_name = Text(max_len=64, allow_none=True, load_default=None)


class DeviceLink(Schema):
    device_id = DEVICE_ID
    name = Text(max_len=64, allow_none=True, load_default=None)


class Device(Schema):
    id = fields.String(required=True, metadata={"description": "the handle to unlink it by"})
    name = fields.String(required=True, allow_none=True)
    linked_at = Timestamp(required=True)
    last_used_at = Timestamp(required=True, allow_none=True)


class DeviceList(Schema):
    devices = fields.List(fields.Nested(Device), required=True)
