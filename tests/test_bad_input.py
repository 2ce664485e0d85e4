"""Every kind of bad input gets a 4xx with the one JSON error shape, never a 500."""

from __future__ import annotations

import json
import random

import pytest

from .helpers import error_of, new_user, user_with_token

HERO = {"name": "Aria", "description": "", "sex": 0, "race": 0}


async def test_non_json_and_wrong_content_type(http):
    resp = await http.post(
        "/register", data="not json", headers={"Content-Type": "application/json"}
    )
    assert resp.status == 400 and (await error_of(resp))["code"] == "invalid_json"
    resp = await http.post(
        "/register", data=json.dumps(new_user()), headers={"Content-Type": "text/plain"}
    )
    assert resp.status == 415 and (await error_of(resp))["code"] == "unsupported_media_type"
    for raw in ("[]", '"x"', "1", "null", '{"a": NaN}', "\xff", "[" * 50000):
        resp = await http.post(
            "/login",
            data=raw.encode("latin-1", "replace"),
            headers={"Content-Type": "application/json"},
        )
        assert resp.status == 400, raw[:10]


async def test_oversized_body(http):
    resp = await http.post("/register", json=new_user() | {"password": "x" * 200_000})
    assert resp.status == 413 and (await error_of(resp))["code"] == "body_too_large"


async def test_unknown_and_missing_fields_and_wrong_types(http):
    resp = await http.post("/register", json=new_user() | {"is_admin": True})
    err = await error_of(resp)
    assert resp.status == 422 and err["code"] == "validation_failed"
    assert err["fields"] == {"is_admin": ["Unknown field."]}
    resp = await http.post("/register", json={"username": 5})
    err = await error_of(resp)
    assert set(err["fields"]) == {"username", "email", "password"}


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("username", "ab", "3 to 50"),
        ("username", "a" * 51, "3 to 50"),
        ("username", "bad name", "3 to 50"),
        ("username", "bad\nname", "3 to 50"),
        ("username", "ünïcode", "3 to 50"),
        ("email", "not-an-email", "email"),
        ("email", "a@b", "email"),
        ("password", "short", "at least 8"),
        ("password", "x" * 73, "72 bytes"),
        ("password", "€" * 25, "75 bytes"),  # 25 characters, 75 bytes in UTF-8
        ("password", "abcdefgh\x00", "NUL"),
    ],
)
async def test_registration_rules(http, field, value, needle):
    resp = await http.post("/register", json=new_user() | {field: value})
    assert resp.status == 422
    err = await error_of(resp)
    assert list(err["fields"]) == [field]
    assert needle.lower() in " ".join(err["fields"][field]).lower()


async def test_72_byte_password_is_accepted_whole(http):
    user = new_user() | {"password": "é" * 36}  # exactly 72 bytes
    assert (await http.post("/register", json=user)).status == 201
    resp = await http.post(
        "/login", json={"username": user["username"], "password": "é" * 35 + "e"}
    )
    assert resp.status == 401


@pytest.mark.parametrize(
    "patch",
    [
        {"sex": -1},
        {"sex": 2**32},
        {"sex": "1"},
        {"sex": 1.5},
        {"sex": True},
        {"race": None},
        {"name": ""},
        {"name": "x" * 65},
        {"name": "a\x07b"},
        {"description": 5},
        {"owner": 1},
    ],
)
async def test_character_input_rules(http, patch):
    _, auth = await user_with_token(http)
    resp = await http.post("/characters", json=HERO | patch, headers=auth)
    assert resp.status == 422, patch
    assert (await error_of(resp))["fields"]


async def test_unknown_route_and_method_are_json(http):
    resp = await http.get("/nope")
    assert resp.status == 404 and (await error_of(resp))["code"] == "not_found"
    resp = await http.patch("/login", json={})
    assert resp.status == 405 and (await error_of(resp))["code"] == "method_not_allowed"
    assert "POST" in resp.headers["Allow"]
    _, auth = await user_with_token(http)
    for path in ("/characters/abc", "/characters/-1", "/api/v1/characters/1.5"):
        resp = await http.get(path, headers=auth)
        assert resp.status == 404
    resp = await http.get("/api/v1/characters/99999999999999999999", headers=auth)
    assert resp.status == 404
    resp = await http.get("/characters/99999999999999999999", headers=auth)
    assert resp.status == 401


async def test_random_garbage_never_500(http):
    _, auth = await user_with_token(http)
    rng = random.Random(7)
    values = [
        None,
        True,
        0,
        -1,
        2**70,
        1e308,
        "",
        "x" * 300,
        [],
        {},
        {"a": [1]},
        "\u0000",
        "💥" * 10,
    ]
    paths = ["/register", "/login", "/characters", "/api/v1/characters"]
    for _ in range(200):
        body = {
            rng.choice(
                ["username", "email", "password", "name", "sex", "race", "description", "zz"]
            ): rng.choice(values)
            for _ in range(3)
        }
        resp = await http.post(rng.choice(paths), json=body, headers=auth)
        assert resp.status < 500, (body, await resp.text())
        await error_of(resp) if resp.status >= 400 else None
