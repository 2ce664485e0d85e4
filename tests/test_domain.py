"""The domain layer without HTTP, on fakeredis with a fixed clock."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from authsvc.appkeys import ACCOUNTS, AUDIT, CHARACTERS, SESSIONS
from authsvc.errors import Code, Conflict, InvalidToken, LimitReached, NotFound, Unauthorized
from authsvc.identity.passwords import PasswordHasher
from authsvc.identity.tokens import TokenService
from authsvc.platform.mail import OutboxMailer
from authsvc.serve.app import create_app

from .conftest import SECRET, make_settings

NOW = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def services(fake_store):
    clock = Clock()
    hasher = PasswordHasher(cost=4, threads=1)
    tokens = TokenService(secret=SECRET, issuer="authsvc", audience="authsvc", ttl=900, clock=clock)
    app = create_app(
        make_settings(max_characters_per_account=3),
        client=fake_store,
        hasher=hasher,
        mailer=OutboxMailer(),
        clock=clock,
    )
    # The services as the app wires them, without serving it.
    svc = SimpleNamespace(
        accounts=app[ACCOUNTS], sessions=app[SESSIONS], characters=app[CHARACTERS], audit=app[AUDIT]
    )
    yield svc, tokens, clock
    await svc.audit.flush()
    hasher.close()


async def test_register_login_and_token_claims(services):
    svc, tokens, _ = services
    accounts = svc.accounts
    acc = await accounts.register(username="Zed", email="Z@x.io", password="password1")
    assert acc["created_at"] == "2027-01-15T08:00:00.000Z"
    issued = (await svc.sessions.login(identifier="zed", password="password1")).access
    claims = tokens.verify(issued.token)
    assert claims["sub"] == str(acc["id"]) and claims["preferred_username"] == "Zed"
    assert claims["exp"] - claims["iat"] == 900
    me = await accounts.me(acc["id"])
    assert me["last_login_at"] == "2027-01-15T08:00:00.000Z"
    with pytest.raises(Unauthorized):
        await svc.sessions.login(identifier="zed", password="password2")
    with pytest.raises(Conflict) as taken:
        await accounts.register(username="ZED", email="other@x.io", password="password1")
    assert taken.value.code == Code.USERNAME_TAKEN


async def test_characters_cap_and_ownership(services):
    svc, _, clock = services
    accounts, characters = svc.accounts, svc.characters
    a = (await accounts.register(username="aa1", email="a@x.io", password="password1"))["id"]
    b = (await accounts.register(username="bb1", email="b@x.io", password="password1"))["id"]
    made = []
    for i in range(3):
        clock.now += 0.01
        made.append(await characters.create(a, name=f"c{i}", description="", sex=0, race=1))
    with pytest.raises(LimitReached):
        await characters.create(a, name="c4", description="", sex=0, race=1)
    assert [c["id"] for c in await characters.list(a)] == [c["id"] for c in made]
    with pytest.raises(NotFound):
        await characters.get(b, made[0]["id"])
    with pytest.raises(NotFound):
        await characters.delete(b, made[0]["id"])
    await characters.delete(a, made[0]["id"])
    assert len(await characters.list(a)) == 2
    assert (await characters.update(a, made[1]["id"], name="new"))["name"] == "new"


async def test_dead_account_is_refused_by_the_guard(services, fake_store):
    svc, _, _ = services
    accounts, characters = svc.accounts, svc.characters
    a = (await accounts.register(username="gone", email="g@x.io", password="password1"))["id"]
    await fake_store.delete(f"account:{{{a}}}")
    with pytest.raises(InvalidToken):
        await characters.list(a)
    with pytest.raises(InvalidToken):
        await characters.create(a, name="x", description="", sex=0, race=0)
    assert await fake_store.exists(f"account:{{{a}}}:characters") == 0


async def test_token_expiry_follows_the_clock(services):
    svc, tokens, clock = services
    await svc.accounts.register(username="tick", email="t@x.io", password="password1")
    issued = (await svc.sessions.login(identifier="tick", password="password1")).access
    clock.now += 900 + 29  # inside the 30 s leeway
    assert tokens.verify(issued.token)["preferred_username"] == "tick"
    clock.now += 2
    with pytest.raises(InvalidToken, match="expired"):
        tokens.verify(issued.token)


async def test_login_events_are_audited_without_secrets(services, fake_store):
    svc, *_ = services
    await svc.accounts.register(username="aud", email="aud@x.io", password="password1")
    await svc.sessions.login(identifier="aud", password="password1", ip="10.0.0.1")
    with pytest.raises(Unauthorized):
        await svc.sessions.login(identifier="aud", password="wrong-password", ip="10.0.0.2")
    await svc.audit.flush()
    events = [e for _, e in await fake_store.xrange("audit:events")]
    assert [e["action"] for e in events] == ["register", "login_success", "login_failure"]
    assert events[1]["ip"] == "10.0.0.1" and events[1]["username"] == "aud"
    assert not any("password1" in v or "wrong-password" in v for e in events for v in e.values())
