"""The game-client flow of the seed design, end to end over HTTP on a real redis-server."""

from __future__ import annotations

from authsvc.accounts.schemas import Account, TokenResponse
from authsvc.characters.schemas import Character

from .helpers import error_of, login, new_user, register, user_with_token

HERO = {"name": "Aria", "description": "a ranger", "sex": 1, "race": 4000000000}


async def test_register_returns_account_without_hash(http):
    user = new_user()
    resp = await http.post("/register", json=user)
    assert resp.status == 201
    body = await resp.json()
    assert Account().validate(body) == {}
    assert body["username"] == user["username"] and body["email"] == user["email"]
    assert isinstance(body["id"], int) and 0 < body["id"] < 2**53
    assert "password" not in body and "$2b$" not in await resp.text()


async def test_v1_register_and_login_paths(http):
    user = new_user()
    resp = await http.post("/api/v1/auth/register", json=user)
    assert resp.status == 201
    resp = await http.post(
        "/api/v1/auth/login", json={"username": user["username"], "password": user["password"]}
    )
    assert resp.status == 200
    body = await resp.json()
    assert TokenResponse().validate(body) == {}
    assert body["token"] == body["access_token"] and body["token_type"] == "Bearer"
    assert body["expires_in"] == 900
    assert resp.headers["Cache-Control"] == "no-store"


async def test_login_by_email_and_case_insensitive_username(http):
    user = await register(http)
    for ident in (user["email"].upper(), user["username"].upper()):
        resp = await http.post("/login", json={"username": ident, "password": user["password"]})
        assert resp.status == 200, ident


async def test_me_and_last_login_stamped(http):
    user = await register(http)
    token = await login(http, user)
    resp = await http.get("/api/v1/users/me", headers={"Authorization": f"Bearer {token}"})
    assert resp.status == 200
    me = await resp.json()
    assert me["id"] == user["id"] and me["last_login_at"] is not None
    assert me["is_active"] is True and me["email_verified"] is False


async def test_character_crud_seed_paths(http):
    _, auth = await user_with_token(http)
    resp = await http.get("/characters", headers=auth)
    assert resp.status == 200 and await resp.json() == {"characters": []}

    resp = await http.post("/characters", json=HERO, headers=auth)
    assert resp.status == 200  # the seed contract: 200 CharacterSummary
    created = await resp.json()
    assert Character().validate(created) == {}
    assert {k: created[k] for k in HERO} == HERO
    cid = created["id"]

    second = await (await http.post("/characters", json=HERO | {"name": "Bo"}, headers=auth)).json()
    listed = (await (await http.get("/characters", headers=auth)).json())["characters"]
    assert [c["id"] for c in listed] == [cid, second["id"]]  # oldest first

    resp = await http.get(f"/characters/{cid}", headers=auth)
    assert resp.status == 200 and (await resp.json()) == created

    resp = await http.put(f"/characters/{cid}", json={"name": "Aria II"}, headers=auth)
    assert resp.status == 200
    updated = await resp.json()
    assert updated["name"] == "Aria II" and updated["description"] == "a ranger"

    # Option::None from a Rust client arrives as null: "leave as is".
    resp = await http.put(
        f"/characters/{cid}", json={"name": None, "description": "x"}, headers=auth
    )
    assert (await resp.json())["name"] == "Aria II"

    resp = await http.delete(f"/characters/{cid}", headers=auth)
    assert resp.status == 200
    resp = await http.get(f"/characters/{cid}", headers=auth)
    assert resp.status == 401  # gone is "not yours" on the seed paths
    listed = (await (await http.get("/characters", headers=auth)).json())["characters"]
    assert [c["id"] for c in listed] == [second["id"]]


async def test_foreign_character_is_401_on_seed_and_404_on_v1(http):
    _, alice = await user_with_token(http)
    _, mallory = await user_with_token(http)
    cid = (await (await http.post("/characters", json=HERO, headers=alice)).json())["id"]
    for method, body in (("GET", None), ("PUT", {"name": "pwned"}), ("DELETE", None)):
        resp = await http.request(method, f"/characters/{cid}", json=body, headers=mallory)
        assert resp.status == 401, method
        assert (await error_of(resp))["code"] == "character_not_owned"
        resp = await http.request(method, f"/api/v1/characters/{cid}", json=body, headers=mallory)
        assert resp.status == 404, method
        missing = await http.request(method, "/api/v1/characters/12345", json=body, headers=mallory)
        assert missing.status == 404
        assert await error_of(resp) == await error_of(missing)  # indistinguishable
    resp = await http.get(f"/characters/{cid}", headers=alice)
    assert (await resp.json())["name"] == "Aria"  # untouched


async def test_v1_character_statuses(http):
    _, auth = await user_with_token(http)
    resp = await http.post("/api/v1/characters", json=HERO, headers=auth)
    assert resp.status == 201
    cid = (await resp.json())["id"]
    resp = await http.get("/api/v1/characters", headers=auth)
    assert [c["id"] for c in (await resp.json())["characters"]] == [cid]
    resp = await http.delete(f"/api/v1/characters/{cid}", headers=auth)
    assert resp.status == 204
    resp = await http.delete(f"/api/v1/characters/{cid}", headers=auth)
    assert resp.status == 404


async def test_character_cap(make_client, store):
    http = await make_client(max_characters_per_account=2)
    user, auth = await user_with_token(http)
    for _ in range(2):
        assert (await http.post("/characters", json=HERO, headers=auth)).status == 200
    resp = await http.post("/characters", json=HERO, headers=auth)
    assert resp.status == 409
    assert (await error_of(resp))["code"] == "character_limit_reached"
    assert await store.zcard(f"account:{{{user['id']}}}:characters") == 2
    # Delete one, and there is room again.
    cid = (await (await http.get("/characters", headers=auth)).json())["characters"][0]["id"]
    await http.delete(f"/characters/{cid}", headers=auth)
    assert (await http.post("/characters", json=HERO, headers=auth)).status == 200


async def test_characters_are_stored_in_the_documented_keys(http, store):
    user, auth = await user_with_token(http)
    cid = (await (await http.post("/characters", json=HERO, headers=auth)).json())["id"]
    aid = user["id"]
    assert await store.get(f"account:username:{user['username'].lower()}") == str(aid)
    assert await store.get(f"account:email:{user['email'].lower()}") == str(aid)
    acc = await store.hgetall(f"account:{{{aid}}}")
    assert acc["password"].startswith("$2b$04$") and "pending" not in acc
    assert await store.zrange(f"account:{{{aid}}}:characters", 0, -1) == [str(cid)]
    char = await store.hgetall(f"character:{{{aid}}}:{cid}")
    assert char["account_id"] == str(aid) and char["race"] == "4000000000"


async def test_characters_list_in_creation_order_within_one_millisecond(make_client):
    # A frozen clock: every character is created in the same millisecond, so only the
    # index's tie-break keeps the order (the random ids would scramble it).
    http = await make_client(clock=lambda: 1_800_000_000.0)
    _, auth = await user_with_token(http)
    made = []
    for name in ("A", "B", "C", "D", "E"):
        resp = await http.post("/characters", json=HERO | {"name": name}, headers=auth)
        assert resp.status == 200  # the seed API answers 200 to a create
        made.append((await resp.json())["id"])
    listed = (await (await http.get("/characters", headers=auth)).json())["characters"]
    assert [c["id"] for c in listed] == made
    assert {c["created_at"] for c in listed} == {"2027-01-15T08:00:00.000Z"}
