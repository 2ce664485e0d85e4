"""What every answer carries at the edge: security headers, caching, the JSON error
shape even for requests aiohttp cannot parse, and the access log."""

from __future__ import annotations

import asyncio
import json
import logging

import aiohttp
from aiohttp import web

from authsvc.appkeys import ACCOUNTS
from authsvc.config import Settings
from authsvc.http.logs import JsonFormatter
from authsvc.serve.app import create_app
from authsvc.serve.serving import AppRunner

from .conftest import SECRET, make_settings
from .helpers import (
    assert_edge_headers,
    new_user,
    register,
    serve,
    service_env,
    user_with_token,
)
from .redis_proc import free_port


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


async def test_every_answer_has_nosniff_no_version_and_no_store(http):
    user, auth = await user_with_token(http)
    login = await (
        await http.post(
            "/api/v1/auth/login", json={"username": user["username"], "password": user["password"]}
        )
    ).json()
    key = await http.post(
        "/api/v1/users/me/api-keys", json={"name": "k", "scopes": ["profile:read"]}, headers=auth
    )
    assert_edge_headers(key)
    admin_user = {"username": "edge_admin", "email": "edge@x.io", "password": "admin password"}
    await http.app[ACCOUNTS].register(**admin_user, roles=("admin", "user"))
    admin = await (
        await http.post("/login", json={"username": "edge_admin", "password": "admin password"})
    ).json()
    admin_auth = bearer(admin["token"])
    requests = [
        # personal data, tokens and keys
        (
            "POST",
            "/register",
            {
                "json": {
                    "username": "edge_u2",
                    "email": "e2@x.io",
                    "password": "correct horse battery",
                }
            },
        ),
        ("POST", "/login", {"json": {"username": user["username"], "password": user["password"]}}),
        ("POST", "/api/v1/auth/refresh", {"json": {"refresh_token": login["refresh_token"]}}),
        ("GET", "/api/v1/users/me", {"headers": auth}),
        ("GET", "/api/v1/users/me/export", {"headers": auth}),
        ("GET", "/api/v1/users/me/activity", {"headers": auth}),
        ("GET", "/api/v1/users/me/preferences", {"headers": auth}),
        ("GET", "/api/v1/sessions", {"headers": auth}),
        ("GET", "/api/v1/users/me/api-keys", {"headers": auth}),
        ("GET", "/characters", {"headers": auth}),
        ("GET", "/api/v1/admin/users", {"headers": admin_auth}),
        ("GET", f"/api/v1/admin/users/{user['id']}", {"headers": admin_auth}),
        ("GET", "/api/v1/admin/activity", {"headers": admin_auth}),
        (
            "POST",
            "/api/v1/tokens/introspect",
            {"headers": admin_auth, "json": {"token": login["access_token"]}},
        ),
        # health
        ("GET", "/healthz", {}),
        ("GET", "/readyz", {}),
        ("GET", "/metrics", {}),
        # errors: every kind
        ("GET", "/api/v1/users/me", {}),  # 401
        ("GET", "/api/v1/admin/users", {"headers": auth}),  # 403
        ("GET", "/no/such/route", {}),  # 404
        ("GET", "/api/v1/characters/1", {"headers": auth}),  # 404 of a route
        ("PATCH", "/healthz", {}),  # 405
        (
            "POST",
            "/login",
            {"data": b"x" * 70_000, "headers": {"Content-Type": "application/json"}},
        ),  # 413
        ("POST", "/login", {"data": b"username=x"}),  # 415
        ("POST", "/login", {"data": b"{", "headers": {"Content-Type": "application/json"}}),
        ("POST", "/login", {"json": {"username": "x"}}),  # 422
        ("POST", "/login", {"json": {"username": "nobody_here", "password": "wrong pass"}}),
        ("DELETE", "/api/v1/sessions/nope", {"headers": auth}),
        ("POST", "/api/v1/auth/logout", {"headers": auth}),  # 204 (last: ends the session)
    ]
    seen = set()
    for method, path, kw in requests:
        resp = await http.request(method, path, **kw)
        seen.add(resp.status)
        assert_edge_headers(resp)
    assert {200, 201, 204, 400, 401, 403, 404, 405, 413, 415, 422} <= seen, seen
    # The one answer meant to be cached says so itself.
    resp = await http.get("/api/v1/openapi.json")
    assert_edge_headers(resp, cache="public, max-age=300")
    assert (await register(http))["id"]


# -- requests aiohttp cannot parse ----------------------------------------------------

MALFORMED = {
    "a bad request line": b"GARBAGE\r\n\r\n",
    "a bad method": b"G\x01T /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
    "a NUL in a header": b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n",
    "bad chunked encoding": (
        b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\nZZ\r\nabc\r\n0\r\n\r\n"
    ),
    "both Content-Length and chunked": (
        b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    ),
    "a bad Content-Length": b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
    "a too long header": b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Long: "
    + b"a" * 10_000
    + b"\r\n\r\n",
    "a too long request line": b"GET /" + b"a" * 10_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
}


async def raw_request(port: int, data: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send bytes on a fresh socket; the status, headers and body of the answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, body


def assert_json_400(name: str, status: int, headers: dict, body: bytes) -> None:
    assert status == 400, (name, status, body)
    assert headers["content-type"].startswith("application/json"), (name, headers)
    assert headers["x-content-type-options"] == "nosniff", name
    assert headers.get("x-request-id"), name
    assert headers["server"] == "authsvc", name
    error = json.loads(body)["error"]
    assert error["code"] == "malformed_request" and error["message"], (name, error)
    assert set(json.loads(body)) == {"error"}


async def test_requests_aiohttp_cannot_parse_get_the_json_error_shape(store):
    """In process, through the runner `authsvc serve` uses (authsvc.serving)."""
    runner = AppRunner(create_app(make_settings(), client=store), access_log=None)
    await runner.setup()
    try:
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        for name, data in MALFORMED.items():
            assert_json_400(name, *await raw_request(port, data))
        # A well-formed request on the same server is still answered normally.
        status, headers, _ = await raw_request(
            port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        assert status == 200 and headers["server"] == "authsvc"
    finally:
        await runner.cleanup()


async def test_authsvc_serve_answers_malformed_requests_in_json_and_logs_access(
    redis_server, tmp_path
):
    """The real process: `authsvc serve` (one worker), raw sockets, its stderr."""
    log_path = tmp_path / "serve.log"
    env = service_env(redis_server.url, WORKERS="1")
    async with serve(env, log_path) as proc:
        port = int(proc.base.rsplit(":", 1)[1])
        for name, data in MALFORMED.items():
            assert_json_400(name, *await raw_request(port, data))
        async with aiohttp.ClientSession(proc.base) as client:
            user = new_user("edge")
            assert (await client.post("/register", json=user)).status == 201
            resp = await client.post("/login", json={k: user[k] for k in ("username", "password")})
            token = (await resp.json())["token"]
            resp = await client.get("/characters", headers=bearer(token))
            assert resp.status == 200
            request_id = resp.headers["X-Request-ID"]
    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
    access = [line for line in lines if line["logger"] == "authsvc.access"]
    unparsed = [line for line in access if line["route"] == "unparsed"]
    assert len(unparsed) == len(MALFORMED) and {u["status"] for u in unparsed} == {400}
    (read,) = [line for line in access if line["request_id"] == request_id]
    assert read["method"] == "GET" and read["route"] == "/characters" and read["status"] == 200
    text = log_path.read_text()
    assert token not in text and user["password"] not in text


# -- the access log -------------------------------------------------------------------

ACCESS_FIELDS = {"method", "route", "status", "duration_ms", "request_id", "client"}


def access_records(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "authsvc.access"]


async def test_the_access_log_has_one_json_line_per_request_and_no_secret(make_client, caplog):
    caplog.set_level(logging.INFO, logger="authsvc.access")
    http = await make_client()
    user = new_user("acc")
    resp = await http.post("/api/v1/auth/register", json=user)
    acc = await resp.json()
    resp = await http.post(
        "/api/v1/auth/login", json={"username": user["username"], "password": user["password"]}
    )
    tokens = await resp.json()
    auth = bearer(tokens["access_token"])
    answers = [
        await http.get("/characters", headers=auth),
        await http.get(f"/api/v1/characters/{acc['id']}?secret=query-secret-value", headers=auth),
        await http.get("/no/such/place?token=" + tokens["refresh_token"]),
        await http.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}),
        await http.get("/api/v1/users/me", headers=bearer("not-a-token")),
    ]
    records = access_records(caplog)
    assert len(records) == 2 + len(answers), [r.getMessage() for r in records]
    by_id = {r.fields["request_id"]: r.fields for r in records}
    for resp in answers:
        fields = by_id[resp.headers["X-Request-ID"]]
        assert set(fields) == ACCESS_FIELDS
        assert fields["status"] == resp.status and fields["method"] == resp.method
        assert fields["client"] == "127.0.0.1"
        assert isinstance(fields["duration_ms"], float) and fields["duration_ms"] >= 0
    routes = [by_id[r.headers["X-Request-ID"]]["route"] for r in answers]
    assert routes == [
        "/characters",
        "/api/v1/characters/{id}",
        "unmatched",
        "/api/v1/auth/refresh",
        "/api/v1/users/me",
    ]
    formatter = JsonFormatter()
    lines = [formatter.format(r) for r in records]
    for line in lines:
        entry = json.loads(line)  # one JSON object per line
        assert "\n" not in line and ACCESS_FIELDS <= set(entry)
    text = "\n".join(lines)
    for secret in (
        user["password"],
        tokens["access_token"],
        tokens["refresh_token"],
        "query-secret-value",
        acc["id"] if isinstance(acc["id"], str) else str(acc["id"]),
    ):
        assert secret not in text


async def test_access_log_off(make_client, caplog):
    caplog.set_level(logging.INFO, logger="authsvc.access")
    http = await make_client(access_log=False)
    assert (await http.get("/healthz")).status == 200
    assert access_records(caplog) == []
    assert Settings.from_env({"API_JWT_SECRET": SECRET, "ACCESS_LOG": "false"}).access_log is False
    assert Settings.from_env({"API_JWT_SECRET": SECRET}).access_log is True
