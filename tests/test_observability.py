"""What an operator sees: Prometheus metrics, request ids, JSON logs without secrets."""

from __future__ import annotations

import asyncio
import io
import json
import logging

from prometheus_client.parser import text_string_to_metric_families

from authsvc.http.logs import JsonFormatter, configure
from authsvc.store.connection import create_client

from .helpers import error_of, login, new_user, register, user_with_token
from .redis_proc import free_port


async def scrape(http) -> dict[tuple[str, tuple], float]:
    resp = await http.get("/metrics")
    assert resp.status == 200
    assert resp.content_type == "text/plain"
    out = {}
    for family in text_string_to_metric_families(await resp.text()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(samples, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_metrics_count_requests_logins_rate_limits_and_store_steps(make_client):
    http = await make_client(login_max_failures=2)
    before = await scrape(http)
    user, headers = await user_with_token(http)
    for _ in range(3):  # two failures, then the (account, ip) bound: 429
        await http.post("/login", json={"username": user["username"], "password": "wrong-pass"})
    resp = await http.get("/api/v1/characters/12345", headers=headers)
    assert resp.status == 404
    after = await scrape(http)

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("authsvc_logins_total", result="success") == 1
    assert delta("authsvc_logins_total", result="failure") == 2
    assert delta("authsvc_rate_limited_total", route="/login") == 1
    route = "/api/v1/characters/{id}"  # the template, never the id itself
    assert delta("authsvc_http_requests_total", method="GET", route=route, status="404") == 1
    assert delta("authsvc_http_request_duration_seconds_count", method="GET", route=route) == 1
    assert delta("authsvc_http_requests_total", method="POST", route="/login", status="429") == 1
    assert delta("authsvc_security_events_total", action="register") == 1
    timed = "authsvc_store_step_seconds_count"
    steps = [k for k in after if k[0] == timed and after[k] > before.get(k, 0)]
    assert steps, "store steps are timed"


async def test_refresh_reuse_is_counted(make_client):
    http = await make_client(refresh_reuse_interval=0)
    user = await register(http)
    resp = await http.post(
        "/api/v1/auth/login", json={"username": user["username"], "password": user["password"]}
    )
    first = (await resp.json())["refresh_token"]
    before = await scrape(http)
    assert (await http.post("/api/v1/auth/refresh", json={"refresh_token": first})).status == 200
    await asyncio.sleep(0.01)  # past the (zero) reuse window, even in the same ms
    assert (await http.post("/api/v1/auth/refresh", json={"refresh_token": first})).status == 401
    after = await scrape(http)
    name = "authsvc_refresh_reuse_detected_total"
    assert value(after, name) - value(before, name) == 1


async def test_live_sessions_are_counted_in_the_store(make_client):
    http = await make_client(metrics_session_scan_interval=0.05)
    for _ in range(2):
        user = await register(http)
        await login(http, user)
        await login(http, user)  # two sessions each
    samples = await scrape(http)  # the first scrape starts the count
    for _ in range(100):
        if value(samples, "authsvc_sessions_active") == 4:
            break
        await asyncio.sleep(0.05)
        samples = await scrape(http)
    assert value(samples, "authsvc_sessions_active") == 4
    token = await login(http, user)
    resp = await http.post("/api/v1/auth/logout", headers={"Authorization": f"Bearer {token}"})
    assert resp.status == 204
    for _ in range(100):
        await asyncio.sleep(0.06)
        samples = await scrape(http)
        if value(samples, "authsvc_sessions_active") == 4:  # 5 live, then one logged out
            break
    assert value(samples, "authsvc_sessions_active") == 4


async def test_store_outage_is_counted_as_store_errors(make_client):
    dead = create_client(f"redis://127.0.0.1:{free_port()}/0", timeout=0.5)
    http = await make_client(client=dead)
    before = await scrape(http)
    resp = await http.post("/register", json=new_user())
    assert resp.status == 503
    after = await scrape(http)
    name = "authsvc_store_errors_total"
    assert value(after, name, kind="unavailable") - value(before, name, kind="unavailable") >= 1
    await dead.aclose()


async def test_request_id_is_returned_kept_when_sane_and_replaced_when_not(http):
    resp = await http.get("/healthz")
    generated = resp.headers["X-Request-ID"]
    assert 16 <= len(generated) <= 24 and int(generated, 16) >= 0
    resp = await http.get("/healthz", headers={"X-Request-ID": "edge-42.a:b"})
    assert resp.headers["X-Request-ID"] == "edge-42.a:b"
    resp = await http.get("/healthz", headers={"X-Request-ID": "x" * 200})
    assert resp.headers["X-Request-ID"] != "x" * 200
    resp = await http.get("/healthz", headers={"X-Request-ID": "a b;c"})
    assert resp.headers["X-Request-ID"] != "a b;c"
    for resp in (
        await http.get("/no/such/route", headers={"X-Request-ID": "r1"}),
        await http.get("/api/v1/users/me", headers={"X-Request-ID": "r2"}),
    ):
        await error_of(resp)
        assert resp.headers["X-Request-ID"] in ("r1", "r2")


async def test_logs_are_json_lines_with_the_request_id_and_no_secrets(make_client):
    http = await make_client(refresh_reuse_interval=0)
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger("authsvc")
    saved = root.level, root.disabled
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    root.disabled = False
    try:
        user = new_user()
        await register(http, user)
        resp = await http.post(
            "/api/v1/auth/login", json={"username": user["username"], "password": user["password"]}
        )
        pair = await resp.json()
        for request_id in ("refresh-1", "theft-1"):  # the second is theft, and is logged
            await asyncio.sleep(0.01)  # past the (zero) reuse window, even in the same ms
            await http.post(
                "/api/v1/auth/refresh",
                json={"refresh_token": pair["refresh_token"]},
                headers={"X-Request-ID": request_id},
            )
        await http.get("/api/v1/users/me", headers={"Authorization": "Bearer not.a.token"})
        await http.post("/login", json={"username": user["username"], "password": "guessing-1"})
    finally:
        root.removeHandler(handler)
        root.setLevel(saved[0])
        root.disabled = saved[1]
    entries = [json.loads(line) for line in out.getvalue().splitlines()]
    theft = [
        e for e in entries if e.get("request_id") == "theft-1" and e["logger"] == "authsvc.sessions"
    ]
    assert theft, entries
    assert theft[0]["level"] == "warning" and "reuse" in theft[0]["msg"]
    for entry in entries:
        assert {"ts", "level", "logger", "msg"} <= set(entry)
    text = out.getvalue()
    for secret in (user["password"], "guessing-1", pair["refresh_token"], pair["token"]):
        assert secret not in text


def test_configure_installs_one_json_handler(capsys):
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure("INFO", "json")
        logging.getLogger("authsvc.test").warning("hello %s", "there")
        err = capsys.readouterr().err.strip().splitlines()
        entry = json.loads(err[-1])
        assert entry["msg"] == "hello there" and entry["level"] == "warning"
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
