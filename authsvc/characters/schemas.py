from marshmallow import Schema, fields

from ..http.schemas import U32, Text, Timestamp

NAME = {"min_len": 1, "max_len": 64}
DESCRIPTION = {"max_len": 2000, "multiline": True}


class CreateCharacterRequest(Schema):
    name = Text(required=True, metadata={"example": "Aria"}, **NAME)
    description = Text(
        load_default="", metadata={"example": "A ranger of the northern woods."}, **DESCRIPTION
    )
    sex = U32(required=True, metadata={"example": 1})
    race = U32(required=True, metadata={"example": 3})


class UpdateCharacterRequest(Schema):
    # null is "leave as is": game clients serialise Option::None as null.
    name = Text(allow_none=True, **NAME)
    description = Text(allow_none=True, **DESCRIPTION)


class Character(Schema):
    id = fields.Integer(required=True)
    account_id = fields.Integer(required=True)
    name = fields.String(required=True)
    description = fields.String(required=True)
    sex = fields.Integer(required=True)
    race = fields.Integer(required=True)
    created_at = Timestamp(required=True)


class CharacterList(Schema):
    characters = fields.List(fields.Nested(Character), required=True)


class Deleted(Schema):
    id = fields.Integer(required=True)
    deleted = fields.Boolean(required=True)
