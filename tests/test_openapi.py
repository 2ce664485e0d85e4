"""The OpenAPI document: complete for every route, served, and true to what the running
service answers (schemathesis against a real `authsvc serve` on a real redis-server)."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from authsvc.app import ROUTES, openapi_document
from authsvc.web import path_variables

from .helpers import create_admin, serve, service_env
from .redis_proc import RedisProcess

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")


def _spec() -> dict:
    return json.loads(openapi_document())


def test_every_declared_route_is_in_the_document():
    spec = _spec()
    declared = 0
    for api in ROUTES:
        for ep in api.endpoints:
            declared += 1
            path, variables = path_variables(ep.path)
            op = spec["paths"][path][ep.method.lower()]
            # a success, or a redirect (a sign-in's authorize answers only 302)
            assert any(s[0] in "23" for s in op["responses"]), (ep.method, path)
            params = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert params == {name for name, _ in variables}
            if ep.auth:
                assert op["security"] == [{"bearer": []}, {"apiKey": []}]
                assert {"401", "403"} <= set(op["responses"])
            else:
                assert op["security"] == []
            if ep.body is not None:
                body = op["requestBody"]["content"]["application/json"]["schema"]
                assert body["$ref"].startswith("#/components/schemas/")
                assert "422" in op["responses"]
    assert declared == sum(len(ops) for ops in spec["paths"].values())
    assert set(spec["components"]["securitySchemes"]) == {"bearer", "apiKey"}


def test_request_schemas_carry_the_validation_rules():
    schemas = _spec()["components"]["schemas"]
    register = schemas["RegisterRequest"]
    assert set(register["required"]) == {"username", "email", "password"}
    assert register["additionalProperties"] is False
    assert register["properties"]["username"]["pattern"] == r"^[A-Za-z0-9_]{3,50}\Z"
    assert register["properties"]["password"]["minLength"] == 8
    character = schemas["CreateCharacterRequest"]["properties"]
    assert character["sex"]["maximum"] == 2**32 - 1
    error = schemas["ErrorDetail"]
    assert "invalid_token" in error["properties"]["code"]["enum"]
    assert "fields" in error["properties"]


async def test_document_is_served(http):
    resp = await http.get("/api/v1/openapi.json")
    assert resp.status == 200
    assert resp.content_type == "application/json"
    doc = await resp.json()
    assert doc["openapi"].startswith("3.")
    assert doc == _spec()


# -- schemathesis against the running service ---------------------------------------

ADMIN = {"username": "fuzz_admin", "email": "fuzz_admin@example.com", "password": "fuzz-pass-1"}
USER = {"username": "fuzz_user", "email": "fuzz_user@example.com", "password": "fuzz-pass-2"}

# Operations that end the caller's own session or account: fuzzed last, with a token of
# their own, so they do not turn the rest of the run into a series of 401s.
SELF_ENDING = (
    "POST /api/v1/auth/logout",
    "DELETE /api/v1/users/me",
    "DELETE /api/v1/sessions",
    "POST /api/v1/users/me/change-password",
)
CHECKS = ",".join(
    (
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
    )
)


def _request(base: str, method: str, path: str, body: dict | None = None, token: str = ""):
    req = urllib.request.Request(base + path, method=method)
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, data=data, timeout=10) as resp:
        return json.loads(resp.read() or b"null")


def _schemathesis(base: str, token: str, *selection: str, examples: int) -> None:
    argv = [
        str(SCHEMATHESIS if SCHEMATHESIS.exists() else shutil.which("schemathesis")),
        "run",
        f"{base}/api/v1/openapi.json",
        "--checks",
        CHECKS,
        "--phases",
        "examples,coverage,fuzzing",
        "--max-examples",
        str(examples),
        "--seed",
        "20261123",
        "--workers",
        "2",
        "--request-timeout",
        "10",
        "-H",
        f"Authorization: Bearer {token}",
        *selection,
    ]
    run = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    if run.returncode != 0:
        pytest.fail(f"schemathesis found failures:\n{run.stdout[-40000:]}\n{run.stderr[-3000:]}")


@pytest.fixture
async def running_service(tmp_path):
    store = RedisProcess(tmp_path / "store").start()
    env = service_env(store.url)
    await create_admin(env, ADMIN)
    log_path = tmp_path / "serve.log"
    try:
        async with serve(env, log_path) as proc:
            yield proc.base
    finally:
        store.stop()
    output = log_path.read_text()
    assert "Traceback" not in output, output[-5000:]


async def test_schemathesis_finds_no_server_error_and_no_undocumented_answer(running_service):
    await asyncio.to_thread(_fuzz, running_service)


def _fuzz(base: str) -> None:
    admin_token = _login(base, ADMIN)
    _schemathesis(base, admin_token, *_selection("--exclude-operation-id"), examples=25)
    _request(base, "POST", "/register", USER)
    user_token = _login(base, USER)
    _schemathesis(base, user_token, *_selection("--include-operation-id"), examples=10)


def _login(base: str, user: dict) -> str:
    creds = {"username": user["username"], "password": user["password"]}
    return _request(base, "POST", "/login", creds)["token"]


def _selection(flag: str) -> list[str]:
    """--include-operation-id / --exclude-operation-id for every SELF_ENDING operation."""
    out: list[str] = []
    for op in SELF_ENDING:
        method, path = op.split(" ")
        out += [flag, _op_id(method, path)]
    return out


def _op_id(method: str, path: str) -> str:
    op = _spec()["paths"][path][method.lower()]
    return op["operationId"]
