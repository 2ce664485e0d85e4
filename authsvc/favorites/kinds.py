"""The favorite kinds. Adding one is a declaration here: the keys, the Lua, the service,
the schemas and the routes are all derived from it."""

from __future__ import annotations

from dataclasses import dataclass, field

from marshmallow import fields, validate

from ..http.schemas import Text


@dataclass(frozen=True)
class FavoriteKind:
    name: str  # URL segment and key part: /api/v1/favorites/<name>
    target_field: str  # the referenced item's id field, e.g. "video_id"
    uuid_field: str  # the favorite's own id field, e.g. "favorite_video_uuid"
    catalog_kind: str | None  # what the catalog calls it; None: no catalog check
    extra: dict[str, fields.Field] = field(default_factory=dict)  # more stored fields


KINDS: tuple[FavoriteKind, ...] = (
    FavoriteKind("videos", "video_id", "favorite_video_uuid", catalog_kind="video"),
    FavoriteKind("actors", "actor_id", "favorite_actor_uuid", catalog_kind="actor"),
    # The music profile design's track favorites, with a rating and notes.
    FavoriteKind(
        "tracks",
        "track_id",
        "favorite_track_uuid",
        catalog_kind=None,
        extra={
            "rating": fields.Integer(
                strict=True,
                validate=validate.Range(min=1, max=5),
                allow_none=True,
                load_default=None,
            ),
            "notes": Text(max_len=2000, multiline=True, allow_none=True, load_default=None),
        },
    ),
)

BY_NAME = {k.name: k for k in KINDS}
