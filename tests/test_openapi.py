"""The OpenAPI document: complete for every route, served, and true to what the running
service answers (schemathesis against a real `authsvc serve` on a real redis-server)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from authsvc.http.web import path_variables
from authsvc.serve.app import ROUTES, openapi_document

from .helpers import create_admin, serve, service_env

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


def _op(spec: dict, method: str, path: str) -> dict:
    return spec["paths"][path][method.lower()]


def _body(spec: dict, method: str, path: str) -> dict:
    ref = _op(spec, method, path)["requestBody"]["content"]["application/json"]["schema"]
    return spec["components"]["schemas"][ref["$ref"].rsplit("/", 1)[1]]["properties"]


def _query(spec: dict, method: str, path: str) -> dict:
    return {p["name"]: p for p in _op(spec, method, path)["parameters"] if p["in"] == "query"}


def _matches(pattern: str, value: str) -> bool:
    # JSON Schema's reading: a search, `$` only at the very end.
    return (
        re.search(pattern.removesuffix("$") + r"\Z" if pattern.endswith("$") else pattern, value)
        is not None
    )


def test_request_schemas_carry_the_validation_rules():
    spec = _spec()
    schemas = spec["components"]["schemas"]
    register = schemas["RegisterRequest"]
    assert set(register["required"]) == {"username", "email", "password"}
    assert register["additionalProperties"] is False
    assert register["properties"]["username"]["pattern"] == "^[A-Za-z0-9_]{3,50}$"
    password = register["properties"]["password"]
    assert password["minLength"] == 8
    # bcrypt's limit is in bytes: stated as such, and as the characters it allows at most
    assert password["x-maxBytes"] == 72 and password["maxLength"] == 72
    assert not _matches(password["pattern"], "abcdefgh\x00")
    character = schemas["CreateCharacterRequest"]["properties"]
    assert character["sex"]["maximum"] == 2**32 - 1
    error = schemas["ErrorDetail"]
    assert "invalid_token" in error["properties"]["code"]["enum"]
    assert "fields" in error["properties"]


def test_every_pattern_is_an_ecma_pattern():
    """Python's `\\Z` is no anchor to a JSON Schema validator (ECMA 262): the document
    says `$`, which there means the very end, as `\\Z` does for the service."""
    found = []

    def walk(node):
        if isinstance(node, dict):
            if isinstance(node.get("pattern"), str):
                found.append(node["pattern"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(_spec())
    assert len(found) > 20
    for pattern in found:
        assert "\\Z" not in pattern and "\\A" not in pattern, pattern
        re.compile(pattern)


def test_the_document_states_what_the_service_refuses():
    """Each input the service refuses with a 422 is outside the document too (the drift
    schemathesis's positive_data_acceptance check found), and each refusal that is no
    validation error is documented as what it is."""
    spec = _spec()
    single_line = _body(spec, "POST", "/api/v1/characters")["name"]["pattern"]
    multi_line = _body(spec, "POST", "/api/v1/characters")["description"]["pattern"]
    for bad in ("a\x07b", "a\nb", "a\x7fb", "a\x85b"):
        assert not _matches(single_line, bad)
    assert _matches(multi_line, "line one\r\n\tline two") and not _matches(multi_line, "a\x1bb")
    assert _body(spec, "POST", "/api/v1/favorites/tracks")["notes"]["pattern"] == multi_line
    assert _body(spec, "POST", "/api/v1/auth/login")["device_name"]["pattern"] == single_line
    # cursors: the format each listing hands out, or nothing
    favorites = _query(spec, "GET", "/api/v1/favorites/videos")["cursor"]["schema"]["pattern"]
    assert _matches(favorites, "") and _matches(favorites, "1700000000000:vid-1")
    assert not _matches(favorites, "garbage") and not _matches(favorites, "0" * 77)
    follows = _query(spec, "GET", "/api/v1/social/following")["cursor"]["schema"]["pattern"]
    assert _matches(follows, "1700000000000:42") and not _matches(follows, "0" * 99)
    # one filter at a time: one object parameter with at most one property
    users = _query(spec, "GET", "/api/v1/admin/users")
    assert set(users) == {"cursor", "limit", "kind", "filter"}
    assert users["kind"]["schema"]["enum"] == ["local", "keycloak"]
    assert users["filter"]["style"] == "form" and users["filter"]["explode"] is True
    group = users["filter"]["schema"]
    assert group["maxProperties"] == 1 and group["additionalProperties"] is False
    assert set(group["properties"]) == {"username", "email", "role"}
    assert all("nullable" not in p for p in group["properties"].values())
    # permission and role names
    role = _body(spec, "POST", "/api/v1/admin/roles")
    permission = role["permissions"]["items"]["pattern"]
    scope = _body(spec, "POST", "/api/v1/users/me/api-keys")["scopes"]["items"]["pattern"]
    assert permission == scope
    for ok in ("*", "users:read", "users:*", "a.b-c_d:e"):
        assert _matches(permission, ok)
    for bad in ("0", "users", "Users:read", "users:read:x", "users: read"):
        assert not _matches(permission, bad)
    for schema in (role["name"], role["inherits"]["items"]):
        assert _matches(schema["pattern"], "r.1-x_y") and not _matches(schema["pattern"], "0")
    assert _body(spec, "POST", "/api/v1/admin/users/{id}/roles")["role"]["pattern"]
    # an API key's expiry is a moment in the future (no JSON Schema keyword for that)
    assert _body(spec, "POST", "/api/v1/users/me/api-keys")["expires_at"]["x-inFuture"] is True
    # http(s) URLs, not the empty string
    url = _body(spec, "PATCH", "/api/v1/users/me")["avatar_url"]["pattern"]
    assert _matches(url, "https://example.com/a.png") and not _matches(url, "")
    assert not _matches(url, "javascript:alert(1)")
    # refusals that are no validation error
    assert "409" in _op(spec, "DELETE", "/api/v1/admin/roles/{role}")["responses"]
    assert "409" in _op(spec, "POST", "/api/v1/admin/roles")["responses"]
    for method, path in (  # the last-admin guard
        ("PATCH", "/api/v1/admin/users/{id}"),
        ("DELETE", "/api/v1/admin/users/{id}"),
        ("POST", "/api/v1/admin/users/{id}/disable"),
        ("DELETE", "/api/v1/admin/users/{id}/roles/{role}"),
        ("DELETE", "/api/v1/users/me"),
    ):
        assert "409" in _op(spec, method, path)["responses"], (method, path)
    codes = spec["components"]["schemas"]["ErrorDetail"]["properties"]["code"]["enum"]
    assert {"last_admin", "self_lockout", "wrong_password"} <= set(codes)
    follow = _op(spec, "POST", "/api/v1/social/follow/{user_id}")["responses"]
    assert "403" in follow and "422" not in follow  # oneself: 403, as the service says
    for ops in spec["paths"].values():
        for op in ops.values():
            assert "400" in op["responses"]  # a request the HTTP parser refuses


def test_every_example_is_one_the_service_accepts():
    """The examples the browsable document shows (and schemathesis's examples phase
    sends) pass the same validators the handlers run."""
    checked = 0
    for api in ROUTES:
        for ep in api.endpoints:
            if ep.body is None:
                continue
            for name, field in ep.body.fields.items():
                inner = getattr(field, "inner", None)
                if "example" in field.metadata:
                    value = field.metadata["example"]
                elif inner is not None and "example" in inner.metadata:
                    value = [inner.metadata["example"]]
                else:
                    continue
                errors = ep.body.validate({field.data_key or name: value}, partial=True)
                assert not errors, (ep.method, ep.path, name, errors)
                checked += 1
    assert checked > 20


def test_links_name_real_operations_and_their_parameters():
    spec = _spec()
    by_id = {op["operationId"]: op for ops in spec["paths"].values() for op in ops.values()}
    links = [
        link
        for op in by_id.values()
        for response in op["responses"].values()
        for link in response.get("links", {}).values()
    ]
    assert len(links) > 30
    for link in links:
        target = by_id[link["operationId"]]
        names = {p["name"] for p in target.get("parameters", [])}
        assert set(link.get("parameters", {})) <= names, link
        assert link.get("parameters") or link.get("requestBody"), link
    register = _op(spec, "POST", "/api/v1/auth/register")["responses"]["201"]["links"]
    assert {"get_api_v1_admin_users_id", "post_api_v1_auth_login"} <= set(register)
    created = _op(spec, "POST", "/api/v1/characters")["responses"]["201"]["links"]
    assert created["delete_api_v1_characters_id"]["parameters"] == {"id": "$response.body#/id"}


async def test_document_is_served(http):
    resp = await http.get("/api/v1/openapi.json")
    assert resp.status == 200
    assert resp.content_type == "application/json"
    doc = await resp.json()
    assert doc["openapi"].startswith("3.")
    assert doc == _spec()


# -- the browsable document ----------------------------------------------------------

ASSET_TYPES = {".css": "text/css", ".js": "text/javascript", ".png": "image/png"}


async def test_docs_page_and_its_files_load_from_this_service_only(http):
    resp = await http.get("/api/v1/docs")
    assert resp.status == 200 and resp.content_type == "text/html"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    csp = dict(
        part.strip().split(" ", 1) for part in resp.headers["Content-Security-Policy"].split(";")
    )
    assert csp["default-src"] == "'none'"
    for directive in ("script-src", "style-src", "connect-src"):
        assert csp[directive] == "'self'", directive  # no inline code, no other origin
    assert csp["frame-ancestors"] == "'none'"
    page = await resp.text()
    refs = re.findall(r"""(?:src|href)=["']([^"']+)["']""", page)
    assert len(refs) == 4, refs
    for ref in refs:
        # relative to the page (so a path prefix in front of the service works), and
        # never another host: no CDN
        assert "//" not in ref and ":" not in ref, ref
        asset = await http.get(f"/api/v1/{ref}")
        assert asset.status == 200, ref
        assert asset.content_type == ASSET_TYPES[Path(ref).suffix], ref
        assert asset.headers["X-Content-Type-Options"] == "nosniff"
        assert len(await asset.read()) > 100
    assert "<script>" not in page  # the CSP would block an inline script anyway
    assert "//" not in page.replace("<!doctype html>", "")
    init = await (await http.get("/api/v1/docs/docs.js")).text()
    assert not re.search(r"https?://", init)
    assert '"openapi.json"' in init and "validatorUrl: null" in init
    css = await (await http.get("/api/v1/docs/swagger-ui.css")).text()
    assert "@import" not in css
    assert all(u.strip("'\"").startswith("data:") for u in re.findall(r"url\(([^)]*)\)", css))
    assert (await http.get("/api/v1/docs/swagger-ui.js.map")).status == 404


def test_docs_come_from_the_installed_package():
    from authsvc.http import apidocs

    bundle = (apidocs.swagger_ui_dir() / "swagger-ui-bundle.js").read_bytes()
    assert b"SwaggerUIBundle" in bundle
    assert "swagger-ui-py" in Path(__file__).parents[1].joinpath("pyproject.toml").read_text()


# -- schemathesis against the running service ---------------------------------------

ADMIN = {"username": "fuzz_admin", "email": "fuzz_admin@example.com", "password": "fuzz-pass-1"}
USER = {"username": "fuzz_user", "email": "fuzz_user@example.com", "password": "fuzz-pass-2"}
CONFIG = Path(__file__).with_name("schemathesis.toml")
HOOKS = Path(__file__).with_name("schemathesis_hooks.py")
PHASES = "examples,coverage,fuzzing,stateful"

# Operations that end the caller's own session or account: fuzzed last, each with a user
# of its own, so they do not turn the rest of the run into a series of 401s (an
# administrator cannot lock themselves out otherwise: the last-admin guard answers 409),
# each with the operations whose answers give it ids to use.
SELF_ENDING: dict[str, tuple[str, ...]] = {
    "POST /api/v1/auth/logout": (),
    "DELETE /api/v1/users/me": (),
    "DELETE /api/v1/sessions": (),
    "DELETE /api/v1/sessions/{id}": ("GET /api/v1/sessions",),
    "POST /api/v1/users/me/change-password": (),
}


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


def _schemathesis(base: str, token: str, selection: list[str], phases: str = PHASES) -> str:
    """One schemathesis run: every check, in every phase asked for, the rest as
    tests/schemathesis.toml says. Fails the test on anything schemathesis reports,
    failures and warnings alike."""
    argv = [
        str(SCHEMATHESIS if SCHEMATHESIS.exists() else shutil.which("schemathesis")),
        "--config-file",
        str(CONFIG),
        "run",
        f"{base}/api/v1/openapi.json",
        "--checks",
        "all",
        "--phases",
        phases,
        "-H",
        f"Authorization: Bearer {token}",
        "--no-color",
        *selection,
    ]
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": str(HOOKS),
        "AUTHSVC_FUZZ_PASSWORD": USER["password"],  # see tests/schemathesis.toml
    }
    run = subprocess.run(argv, capture_output=True, text=True, timeout=600, env=env)
    if run.returncode != 0:
        pytest.fail(f"schemathesis reported:\n{run.stdout[-40000:]}\n{run.stderr[-3000:]}")
    return run.stdout


@pytest.fixture
async def running_service(redis_server, store, tmp_path):
    """A real `authsvc serve` on the suite's store (emptied): a redis-server, or the
    Redis Cluster when AUTHSVC_TEST_CLUSTER is set."""
    # schemathesis creates a few hundred characters as the one administrator: the
    # per-account cap (a documented 409) would leave the character routes unreached.
    env = service_env(redis_server.url, MAX_CHARACTERS_PER_ACCOUNT="10000")
    await create_admin(env, ADMIN)
    log_path = tmp_path / "serve.log"
    async with serve(env, log_path) as proc:
        yield proc.base
    output = log_path.read_text()
    assert "Traceback" not in output, output[-5000:]


async def test_schemathesis_all_checks_and_the_stateful_phase_report_nothing(running_service):
    await asyncio.to_thread(_fuzz, running_service)


def _fuzz(base: str) -> None:
    # Everything but the self-ending operations, as an administrator, the stateful phase
    # included: it registers users, creates characters, roles, keys and favorites through
    # the document's links, then reads, changes and deletes them.
    _schemathesis(base, _login(base, ADMIN), _selection("--exclude", tuple(SELF_ENDING)))
    # Each self-ending operation as a user of its own (the first call that succeeds ends
    # the session or the account). No stateful phase: one call that succeeds is the end.
    for i, (operation, sources) in enumerate(SELF_ENDING.items()):
        user = {**USER, "username": f"fuzz_user_{i}", "email": f"fuzz_user_{i}@example.com"}
        _request(base, "POST", "/register", user)
        _schemathesis(
            base,
            _login(base, user),
            _selection("--include", (operation, *sources)),
            phases=PHASES.removesuffix(",stateful"),
        )


def _login(base: str, user: dict) -> str:
    creds = {"username": user["username"], "password": user["password"]}
    return _request(base, "POST", "/login", creds)["token"]


def _selection(flag: str, operations: tuple[str, ...]) -> list[str]:
    """--include-operation-id / --exclude-operation-id for each "METHOD /path"."""
    out: list[str] = []
    for op in operations:
        method, path = op.split(" ")
        out += [f"{flag}-operation-id", _op_id(method, path)]
    return out


def _op_id(method: str, path: str) -> str:
    op = _spec()["paths"][path][method.lower()]
    return op["operationId"]
