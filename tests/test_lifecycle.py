"""The account lifecycle over HTTP: verification, reset through a real SMTP server,
password change, disabling; and the mail queue's retries."""

from __future__ import annotations

import asyncio
import email
import logging
import re
import socket
import time
from email import policy

import pytest
import redis.asyncio as aredis
from aiosmtpd.controller import Controller

from authsvc.appkeys import LIFECYCLE
from authsvc.audit import service as audit
from authsvc.platform.mail import MailQueue, Message, OutboxMailer, SmtpMailer

from .helpers import compact_encoding, error_of, new_user, register
from .redis_proc import free_port

TOKEN_RE = re.compile(r"token=([0-9]+\.[A-Za-z0-9_-]{43})")


class Sink:
    def __init__(self) -> None:
        self.messages: list[email.message.Message] = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(email.message_from_bytes(envelope.content, policy=policy.default))
        return "250 OK"


@pytest.fixture
def smtp_server():
    sink = Sink()
    controller = Controller(sink, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller, sink
    controller.stop()


def _outbox(http) -> OutboxMailer:
    return http.app[LIFECYCLE].mail.mailer


async def _token_for(http, to: str) -> str:
    await http.app[LIFECYCLE].mail.drain()
    bodies = [m.body for m in _outbox(http).messages if m.to == to]
    return TOKEN_RE.search(bodies[-1]).group(1)


async def _login(http, user, password=None):
    return await http.post(
        "/api/v1/auth/login",
        json={"username": user["username"], "password": password or user["password"]},
    )


async def test_registration_mails_a_single_use_verification_link(http, store):
    user = await register(http)
    token = await _token_for(http, user["email"])
    assert token.startswith(f"{user['id']}.")
    resp = await http.post("/api/v1/auth/verify-email", json={"token": token})
    assert resp.status == 200
    t = await (await _login(http, user)).json()
    me = await (
        await http.get("/api/v1/users/me", headers={"Authorization": f"Bearer {t['token']}"})
    ).json()
    assert me["email_verified"] is True
    resp = await http.post("/api/v1/auth/verify-email", json={"token": token})
    assert resp.status == 400 and (await error_of(resp))["code"] == "invalid_or_expired_token"
    for bad in ("nope", f"{user['id']}." + "A" * 43):
        assert (await http.post("/api/v1/auth/verify-email", json={"token": bad})).status == 400
    assert await store.hget(f"account:{{{user['id']}}}", "verify_link") is None  # spent


async def test_links_expire_and_keep_the_account_hash_compact(make_client, store):
    """A pending link is a short field of the account (its expiry and the token's
    digest, never the token), so the hash stays compact (listpack; ziplist on KeyDB);
    past its expiry the link is refused, for verification and for reset alike."""
    now = [1_800_000_000.0]
    http = await make_client(clock=lambda: now[0])
    user = await register(http)
    account = f"account:{{{user['id']}}}"
    token = await _token_for(http, user["email"])
    stored = await store.hget(account, "verify_link")
    expires_ms, digest = stored.split(".")
    assert int(expires_ms) == (now[0] + 24 * 3600) * 1000 and len(digest) == 43
    assert token.split(".")[1] not in stored
    assert await store.object("encoding", account) == await compact_encoding(store)

    email = {"email": user["email"]}
    assert (await http.post("/api/v1/auth/forgot-password", json=email)).status == 202
    reset = TOKEN_RE.search(_outbox(http).messages[-1].body).group(1)
    assert int((await store.hget(account, "reset_link")).split(".")[0]) == (now[0] + 3600) * 1000

    now[0] += 3600 + 1  # the reset link is past its hour; the verification link is not
    body = {"token": reset, "new_password": "a brand new secret"}
    resp = await http.post("/api/v1/auth/reset-password", json=body)
    assert resp.status == 400 and (await error_of(resp))["code"] == "invalid_or_expired_token"
    now[0] += 23 * 3600  # and now neither is valid
    resp = await http.post("/api/v1/auth/verify-email", json={"token": token})
    assert resp.status == 400
    assert (await store.hget(account, "email_verified")) == "0"


async def test_require_verified_email(make_client):
    http = await make_client(require_verified_email=True)
    user = await register(http)
    resp = await _login(http, user)
    assert resp.status == 403
    err = await error_of(resp)
    assert err["code"] == "email_not_verified" and "resend-verification" in err["message"]
    assert (await _login(http, user, "wrong-password")).status == 401  # no hint without it
    # Resending voids the first link; the second one works.
    first = await _token_for(http, user["email"])
    resp = await http.post("/api/v1/auth/resend-verification", json={"email": user["email"]})
    assert resp.status == 202
    second = await _token_for(http, user["email"])
    assert first != second
    assert (await http.post("/api/v1/auth/verify-email", json={"token": first})).status == 400
    assert (await http.post("/api/v1/auth/verify-email", json={"token": second})).status == 200
    assert (await _login(http, user)).status == 200


async def test_mail_endpoints_do_not_reveal_accounts(http):
    user = await register(http)
    await http.app[LIFECYCLE].mail.drain()
    sent = len(_outbox(http).messages)
    answers = []
    for address in (user["email"], "nobody@example.com"):
        for path in ("/api/v1/auth/forgot-password", "/api/v1/auth/resend-verification"):
            resp = await http.post(path, json={"email": address})
            answers.append((resp.status, await resp.json()))
    assert len({str(a) for a in answers}) == 1 and answers[0][0] == 202
    await http.app[LIFECYCLE].mail.drain()
    assert len(_outbox(http).messages) == sent + 2  # only the real account got mail


def _normalized(command: str) -> str:
    """A MONITOR line as the command and the shape of its keys: ids, addresses and
    argument values (digests, times) left out."""
    words = command.split(" ")
    name = words[0].upper()
    if name in ("EVALSHA", "EVAL"):
        numkeys = int(words[2])
        words = words[: 3 + numkeys]
    else:
        words = words[:2]
    shape = " ".join(words)
    shape = re.sub(r"\{\d+\}", "{ID}", shape)
    shape = re.sub(r"account:email:\S+", "account:email:E", shape)
    return re.sub(r"(rl:mail_\w+:acct:)\d+", r"\1ID", shape)


async def _commands_of(redis_server, request) -> list[str]:
    """The store commands (normalized) the service sends while answering `request()`,
    read with MONITOR on every node (a cluster's too): its round trips, sorted (the
    order across nodes is not defined). Commands a Lua script runs inside its one
    round trip are left out: they differ by microseconds of work, not round trips."""
    urls = [n.url for n in getattr(redis_server, "nodes", [redis_server])]
    marker = f"end-{time.monotonic_ns()}"
    monitors, collected = [], {url: [] for url in urls}
    clients = [aredis.Redis.from_url(url, decode_responses=True) for url in urls]
    markers = [aredis.Redis.from_url(url, decode_responses=True) for url in urls]
    try:
        for client, marking in zip(clients, markers, strict=True):
            await marking.ping()  # its connection is open before MONITOR starts
            monitor = client.monitor()
            await monitor.connect()
            await monitor.connection.send_command("MONITOR")
            assert await monitor.connection.read_response() in ("OK", b"OK")
            monitors.append(monitor)
        await request()
        for url, marking, monitor in zip(urls, markers, monitors, strict=True):
            await marking.echo(marker)
            while True:
                event = await asyncio.wait_for(monitor.next_command(), 5)
                if marker in event["command"]:
                    break
                if event.get("client_type") != "lua":  # round trips, not a script's steps
                    collected[url].append(_normalized(event["command"]))
    finally:
        for monitor in monitors:
            await monitor.connection.disconnect()
        for client in (*clients, *markers):
            await client.aclose()
    return sorted(c for cmds in collected.values() for c in cmds)


async def test_mail_requests_send_the_same_store_commands_whether_or_not_an_account_exists(
    make_client, redis_server, store, monkeypatch
):
    """Not a timed test: the commands before the 202 must be the same, so the time
    cannot tell. (The audit event and the mail of a real request go off the request
    path; the audit buffer is held here so that its write is not counted.)"""
    monkeypatch.setattr(audit, "FLUSH_INTERVAL", 60.0)
    http = await make_client(mail_account_limit=3)
    live = await register(http, new_user("evenly"))
    disabled = await register(http, new_user("evenly_off"))
    await http.app[LIFECYCLE].set_active(disabled["id"], False)
    busy = await register(http, new_user("evenly_busy"))
    for _ in range(3):  # its per-account limit is used up: no more mail this window
        await http.post("/api/v1/auth/forgot-password", json={"email": busy["email"]})
    for path in ("/api/v1/auth/forgot-password", "/api/v1/auth/resend-verification"):
        shapes = {}
        for who, address in (
            ("an account", live["email"]),
            ("the same, in capitals", live["email"].upper()),
            ("no account", "nobody-here@example.com"),
            ("a disabled account", disabled["email"]),
            ("an account over its mail limit", busy["email"]),
        ):

            async def request(address=address):
                resp = await http.post(path, json={"email": address})
                assert resp.status == 202

            shapes[who] = await _commands_of(redis_server, request)
        reference = shapes["an account"]
        assert any("account:{ID}" in c for c in reference), reference
        for who, commands in shapes.items():
            assert commands == reference, (path, who, commands, reference)
    await http.app[LIFECYCLE].mail.drain()
    mailed = [m.to for m in _outbox(http).messages]
    assert mailed.count(live["email"]) == 1 + 2 + 2  # registration, then two of each kind


async def test_password_reset_end_to_end_through_real_smtp(make_client, smtp_server):
    controller, sink = smtp_server
    http = await make_client(
        mail_backend="smtp",
        smtp_host="127.0.0.1",
        smtp_port=controller.port,
        smtp_starttls=False,
        mail_from="authsvc <auth@example.com>",
    )
    user = await register(http)
    session = await (await _login(http, user)).json()
    resp = await http.post("/api/v1/auth/forgot-password", json={"email": user["email"]})
    assert resp.status == 202
    await http.app[LIFECYCLE].mail.drain()
    resets = [m for m in sink.messages if m["Subject"] == "Reset your password"]
    assert len(resets) == 1 and resets[0]["To"] == user["email"]
    assert resets[0]["From"] == "authsvc <auth@example.com>"
    token = TOKEN_RE.search(resets[0].get_content()).group(1)

    resp = await http.post(
        "/api/v1/auth/reset-password", json={"token": token, "new_password": "a brand new secret"}
    )
    assert resp.status == 200
    # Every session is gone: the old access and refresh tokens are refused.
    auth = {"Authorization": f"Bearer {session['access_token']}"}
    assert (await http.get("/characters", headers=auth)).status == 401
    resp = await http.post("/api/v1/auth/refresh", json={"refresh_token": session["refresh_token"]})
    assert resp.status == 401
    assert (await _login(http, user)).status == 401
    assert (await _login(http, user, "a brand new secret")).status == 200
    resp = await http.post(
        "/api/v1/auth/reset-password", json={"token": token, "new_password": "yet another one"}
    )
    assert resp.status == 400  # single use
    resp = await http.post(
        "/api/v1/auth/reset-password", json={"token": token, "new_password": "short"}
    )
    assert resp.status == 422


async def test_a_hanging_mail_server_does_not_hold_up_the_request(make_client, caplog):
    with socket.socket() as silent:  # accepts connections, never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        http = await make_client(
            mail_backend="smtp",
            smtp_host="127.0.0.1",
            smtp_port=silent.getsockname()[1],
            smtp_starttls=False,
            smtp_timeout=0.5,
        )
        user = await register(http)
        t0 = time.monotonic()
        resp = await http.post("/api/v1/auth/forgot-password", json={"email": user["email"]})
        assert resp.status == 202 and time.monotonic() - t0 < 0.4
        with caplog.at_level(logging.WARNING, logger="authsvc.mail"):
            await asyncio.sleep(0.8)
        assert any("failed (attempt 1" in r.getMessage() for r in caplog.records)
        await http.app[LIFECYCLE].mail.close(wait=0)


async def test_mail_queue_retries_then_delivers_or_reports_loss(caplog):
    class Flaky(OutboxMailer):
        def __init__(self, failures: int) -> None:
            super().__init__()
            self.failures = failures

        async def deliver(self, message: Message) -> None:
            if self.failures:
                self.failures -= 1
                raise ConnectionRefusedError("mail server down")
            await super().deliver(message)

    flaky = Flaky(failures=2)
    queue = MailQueue(flaky, retries=3, backoff=0.01)
    queue.send(Message("a@x.io", "hi", "body"))
    await queue.drain()
    assert [m.to for m in flaky.messages] == ["a@x.io"]
    dead = MailQueue(Flaky(failures=99), retries=2, backoff=0.01)
    with caplog.at_level(logging.WARNING, logger="authsvc.mail"):
        dead.send(Message("b@x.io", "hi", "secret-token-body"))
        await dead.drain()
    assert any("lost after 2 attempts" in r.getMessage() for r in caplog.records)
    assert not any("secret-token-body" in r.getMessage() for r in caplog.records)


async def test_smtp_mailer_talks_to_a_real_server(smtp_server):
    controller, sink = smtp_server
    mailer = SmtpMailer(
        host="127.0.0.1", port=controller.port, sender="s@x.io", starttls=False, timeout=5
    )
    await mailer.deliver(Message("r@x.io", "Subject line", "Body text"))
    assert sink.messages[0]["Subject"] == "Subject line"
    assert "Body text" in sink.messages[0].get_content()


async def test_change_password_keeps_only_the_current_session(http):
    user = await register(http)
    current = await (await _login(http, user)).json()
    other = await (await _login(http, user)).json()
    auth = {"Authorization": f"Bearer {current['access_token']}"}
    resp = await http.post(
        "/api/v1/users/me/change-password",
        headers=auth,
        json={"current_password": "not it", "new_password": "new password 1"},
    )
    # 403, not 401: the token is good (a 401 would have the client drop it)
    assert resp.status == 403 and "WWW-Authenticate" not in resp.headers
    err = await error_of(resp)
    assert err["code"] == "wrong_password"
    assert err["fields"] == {"current_password": ["Wrong password."]}
    resp = await http.post(
        "/api/v1/users/me/change-password",
        headers=auth,
        json={"current_password": user["password"], "new_password": "new password 1"},
    )
    assert resp.status == 200 and await resp.json() == {"revoked": 1}
    assert (await http.get("/characters", headers=auth)).status == 200
    other_auth = {"Authorization": f"Bearer {other['access_token']}"}
    assert (await http.get("/characters", headers=other_auth)).status == 401
    assert (await _login(http, user, "new password 1")).status == 200


async def test_disabling_revokes_every_session_at_once(http, store):
    user = await register(http)
    sessions = [await (await _login(http, user)).json() for _ in range(3)]
    revoked = await http.app[LIFECYCLE].set_active(user["id"], False, actor="test")
    assert revoked == 3
    for s in sessions:
        auth = {"Authorization": f"Bearer {s['access_token']}"}
        assert (await http.get("/characters", headers=auth)).status == 401
        resp = await http.post("/api/v1/auth/refresh", json={"refresh_token": s["refresh_token"]})
        assert resp.status == 401
    aid = user["id"]
    assert [k async for k in store.scan_iter(match=f"refresh:{{{aid}}}:*")] == []
    assert [k async for k in store.scan_iter(match=f"session:{{{aid}}}:*")] == []
    assert (await _login(http, user)).status == 403
    await http.app[LIFECYCLE].set_active(user["id"], True)
    assert (await _login(http, user)).status == 200


async def test_unknown_fields_and_bad_emails_on_lifecycle_endpoints(http):
    for path, body in (
        ("/api/v1/auth/forgot-password", {"email": "nope"}),
        ("/api/v1/auth/resend-verification", {"email": "a@b.io", "x": 1}),
        ("/api/v1/auth/verify-email", {}),
        ("/api/v1/auth/reset-password", {"token": "t"}),
    ):
        resp = await http.post(path, json=body)
        assert resp.status == 422, path
    user = new_user()
    assert (
        await http.post(
            "/api/v1/auth/reset-password", json={"token": "1.x", "new_password": user["password"]}
        )
    ).status == 400


async def test_check_removes_expired_links_only(make_client, store):
    from authsvc.store.check import check

    now = [1_800_000_000.0]
    http = await make_client(clock=lambda: now[0])
    stale, fresh = await register(http), await register(http)
    now_ms = int(now[0] * 1000) + 24 * 3600 * 1000 + 1  # past the verification links
    # The fresh account asked again later: its link is still good then.
    later = f"{now_ms + 3_600_000}.{'A' * 43}"
    await store.hset(f"account:{{{fresh['id']}}}", "verify_link", later)
    report = await check(store, fix=False, now_ms=now_ms)
    assert report.problems == [f"expired verify_link on account:{{{stale['id']}}}"]
    report = await check(store, fix=True, now_ms=now_ms)
    assert report.fixed == 1
    assert await store.hget(f"account:{{{stale['id']}}}", "verify_link") is None
    assert await store.hget(f"account:{{{fresh['id']}}}", "verify_link") == later
