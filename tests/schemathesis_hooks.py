"""schemathesis hooks for tests/test_openapi.py: teach the generator the two rules the
document states as vendor extensions, since JSON Schema has no keyword for them.

- `x-maxBytes: n` (a bcrypt password): at most n bytes in UTF-8. `maxLength` bounds the
  characters, so a schema-valid password of multi-byte characters may still be too long.
- `x-inFuture: true` (an API key's `expires_at`): a moment after now.

A case whose body is meant to be valid (positive) gets its value brought within the rule
(the longest prefix within the bytes; the same moment 2000 years later), so it stays
valid by the schema too; negative bodies are left alone. The rules are read from the
document schemathesis loaded, not repeated here."""

from __future__ import annotations

import datetime as dt
from typing import Any

import schemathesis
from schemathesis.core.parameters import ParameterLocation


def _resolve(document: dict, schema: dict) -> dict:
    while isinstance(schema, dict) and "$ref" in schema:
        node: Any = document
        for part in schema["$ref"].removeprefix("#/").split("/"):
            node = node[part]
        schema = node
    return schema


def _stated_rules(case) -> dict[str, dict]:
    document = case.operation.schema.raw_schema
    operation = document["paths"][case.operation.path][case.operation.method.lower()]
    content = operation.get("requestBody", {}).get("content", {})
    body = _resolve(document, content.get("application/json", {}).get("schema", {}))
    return {
        name: prop
        for name, prop in body.get("properties", {}).items()
        if "x-maxBytes" in prop or "x-inFuture" in prop
    }


def _body_is_positive(case) -> bool:
    meta = case.meta
    if meta is None:
        return True
    info = meta.components.get(ParameterLocation.BODY)
    mode = info.mode if info is not None else meta.generation.mode
    return mode.is_positive


def _within_bytes(value: str, limit: int) -> str:
    data = value.encode("utf-8")
    if len(data) <= limit:
        return value
    return data[:limit].decode("utf-8", errors="ignore")


def _in_future(value: str) -> str:
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        return value
    if moment.tzinfo is None or moment > dt.datetime.now(dt.UTC) + dt.timedelta(hours=1):
        return value
    # 2000 years keep February 29 a leap day; the past is before year 2100, so the result
    # stays below 9999.
    return moment.replace(year=moment.year + 2000).isoformat()


@schemathesis.hook
def map_case(context, case):
    if not isinstance(case.body, dict) or not _body_is_positive(case):
        return case
    for name, prop in _stated_rules(case).items():
        value = case.body.get(name)
        if not isinstance(value, str):
            continue
        if "x-maxBytes" in prop:
            case.body[name] = _within_bytes(value, prop["x-maxBytes"])
        if prop.get("x-inFuture"):
            case.body[name] = _in_future(value)
    return case
