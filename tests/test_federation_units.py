"""Unit tests of the sign-in rules, on fakes of the store and provider Protocols and a
fixed clock (the integration tests run the same against the real provider and store)."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
from dataclasses import replace
from urllib.parse import parse_qs, urlsplit

import pytest

from authsvc.accounts.identities import IdentityAccounts
from authsvc.devices.service import DeviceService
from authsvc.errors import Code, Conflict, DomainError
from authsvc.federation.client import Discovery, ProviderUnavailable, at_hash, choose_auth_method
from authsvc.federation.providers import ProviderService
from authsvc.federation.service import (
    SignInService,
    claim_value,
    username_candidates,
    verified_email,
)
from authsvc.federation.urls import allowed_redirect, secure_or_loopback
from authsvc.platform.crypto import SecretBox
from authsvc.store.records import Identity, LinkOutcome, OidcProvider, SignIn

NOW = 1_800_000_000.0
KEY = "k" * 43


def clock() -> float:
    return NOW


# -- small rules ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://id.example.com/realms/x", True),
        ("http://127.0.0.1:8080", True),
        ("http://localhost/x", True),
        ("http://[::1]:9/x", True),
        ("http://id.example.com", False),
        ("https://u:p@id.example.com", False),
        ("https://id.example.com/#f", False),
        ("https://id.example.com:99999", False),
        ("file:///etc/passwd", False),
    ],
)
def test_provider_urls_are_https_or_loopback(url, ok):
    assert secure_or_loopback(url) is ok


@pytest.mark.parametrize(
    ("target", "ok"),
    [
        ("https://game.example/after", True),
        ("https://game.example/after?x=1", True),
        ("https://game.example/after/deeper", True),
        ("https://GAME.example/after", True),
        ("https://game.example/afterwards", False),
        ("https://game.example.evil/after", False),
        ("http://game.example/after", False),
        ("https://game.example/after#x", False),
        ("https://a@game.example/after", False),
        ("mygame:/cb", True),
        ("mygame:/other", False),
        ("https://any.example/", True),
    ],
)
def test_the_redirect_allow_list(target, ok):
    allow = ("https://game.example/after", "mygame:/cb", "https://any.example")
    assert allowed_redirect(target, allow) is ok


def _provider(**kw) -> OidcProvider:
    values = dict(
        slug="p",
        name="P",
        issuer="https://id.example",
        client_id="c",
        client_secret="",
        scopes=("openid",),
        auto_register=True,
        enabled=True,
        username_claim="preferred_username",
        email_claim="email",
        roles_claim="roles",
        role_mapping=(),
        token_auth_method="auto",
        created_at_ms=0,
        updated_at_ms=0,
    )
    return OidcProvider(**(values | kw))


def test_username_candidates_never_run_out():
    p = _provider()
    first, *rest = list(username_candidates({"preferred_username": "Zoë Q."}, p))
    assert first == "Zoe_Q" and all(r.startswith("Zoe_Q_") for r in rest[:-1])
    assert rest[-1].startswith("user_") and len(set(rest)) == len(rest)
    assert next(username_candidates({"email": "ab@x.y"}, p)) == "ab_user"
    assert next(username_candidates({}, p)) == "user"
    assert len(next(username_candidates({"preferred_username": "x" * 300}, p))) == 40
    custom = _provider(username_claim="nickname")
    assert (
        next(username_candidates({"nickname": "nick", "preferred_username": "no"}, custom))
        == "nick"
    )


def test_only_a_verified_valid_email_is_taken():
    p = _provider()
    assert verified_email({"email": "a@b.example", "email_verified": True}, p) == "a@b.example"
    assert verified_email({"email": "a@b.example", "email_verified": "true"}, p) == "a@b.example"
    assert verified_email({"email": "a@b.example", "email_verified": False}, p) == ""
    assert verified_email({"email": "a@b.example"}, p) == ""
    assert verified_email({"email": "not an email", "email_verified": True}, p) == ""


def test_claims_by_name_or_path():
    claims = {"realm_access": {"roles": ["a"]}, "https://x.example/roles": ["b"], "flat": 1}
    assert claim_value(claims, "realm_access.roles") == ["a"]
    assert claim_value(claims, "https://x.example/roles") == ["b"]
    assert claim_value(claims, "flat.deeper") is None and claim_value(claims, "nope") is None


def test_at_hash_and_the_auth_method():
    digest = hashlib.sha256(b"tok").digest()[:16]
    assert at_hash("tok", "RS256") == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    assert choose_auth_method("auto", ("client_secret_post", "client_secret_basic")) == (
        "client_secret_basic"
    )
    assert choose_auth_method("auto", ("client_secret_post",)) == "client_secret_post"
    assert choose_auth_method("client_secret_post", ()) == "client_secret_post"
    with pytest.raises(ProviderUnavailable):
        choose_auth_method("auto", ("private_key_jwt",))


# -- fakes of the Protocols -------------------------------------------------------------------


class Audit:
    def __init__(self) -> None:
        self.events: list[dict] = []

    async def record(self, action: str, **fields) -> None:
        self.events.append({"action": action, **fields})


class Providers:
    def __init__(self) -> None:
        self.items: dict[str, OidcProvider] = {}

    async def add(self, p):
        return self.items.setdefault(p.slug, p) is p

    async def get(self, slug):
        return self.items.get(slug)

    async def all(self):
        return list(self.items.values())

    async def change(self, slug, change):
        new = change(self.items[slug])
        if new is not None:
            self.items[slug] = new
        return new

    async def remove(self, slug):
        return self.items.pop(slug, None) is not None


class Flows:
    def __init__(self) -> None:
        self.states: dict[str, tuple] = {}
        self.handoffs: dict[str, object] = {}

    async def put_state(self, digest, state, *, ttl_ms):
        self.states[digest] = (state, ttl_ms)
        return True

    async def take_state(self, digest):
        return self.states.pop(digest, None)

    async def restore_state(self, digest, state, *, ttl_ms):
        self.states[digest] = (state, ttl_ms)

    async def put_handoff(self, digest, handoff, *, ttl_ms):
        self.handoffs[digest] = handoff

    async def take_handoff(self, digest):
        return self.handoffs.pop(digest, None)


class Identities:
    """In memory: claims (kind, digest) -> account, and each account's entries."""

    def __init__(self) -> None:
        self.claims: dict[tuple[str, str], str] = {}
        self.entries: dict[str, dict[tuple[str, str], Identity]] = {}
        self.disabled: set[str] = set()
        self.roles: Roles | None = None  # the accounts' roles, when a test shares them

    async def holder(self, kind, digest):
        return self.claims.get((kind, digest))

    async def sign_in(self, account_id, kind, digest, *, now_ms):
        entry = self.entries.get(account_id, {}).get((kind, digest))
        if entry is None:
            return "gone"
        if account_id in self.disabled:
            return "disabled"
        held = self.roles.held.get(account_id) if self.roles else None
        return SignIn(account_id, f"name{account_id}", tuple(sorted(held or {"user"})), entry)

    async def release_if_stale(self, kind, digest, holder, *, now_ms):
        if (kind, digest) not in self.entries.get(holder, {}):
            self.claims.pop((kind, digest), None)
            return True
        return False

    async def link(self, account_id, identity, *, sid, now_ms):
        key = (identity.kind, identity.digest)
        if self.claims.setdefault(key, account_id) != account_id:
            return LinkOutcome("elsewhere")
        self.entries.setdefault(account_id, {})[key] = identity
        return LinkOutcome("linked")

    async def unlink(self, account_id, kind, *, slug="", digest_prefix=""):
        mine = self.entries.get(account_id, {})
        hits = [
            k
            for k, i in mine.items()
            if k[0] == kind and (i.slug == slug if slug else k[1].startswith(digest_prefix))
        ]
        if not hits:
            return "none"
        if len(mine) == len(hits):
            return "last"
        for k in hits:
            del mine[k]
            self.claims.pop(k, None)
        return [k[1] for k in hits]

    async def list(self, account_id):
        return list(self.entries.get(account_id, {}).values())

    async def set_roles(self, account_id, kind, digest, roles):
        entry = self.entries[account_id][(kind, digest)]
        self.entries[account_id][(kind, digest)] = replace(entry, roles=tuple(roles))


class Registrar:
    def __init__(self, identities: Identities, roles: Roles | None = None) -> None:
        self.ids = identities
        self.roles = roles
        self.made: list[dict] = []
        self.usernames = {"taken"}

    async def register_federated(self, *, username, email, email_verified, identity, roles, ip):
        if username and username in self.usernames:
            raise Conflict("taken", code=Code.USERNAME_TAKEN)
        account_id = str(len(self.made) + 1)
        self.made.append({"id": account_id, "username": username, "email": email, "roles": roles})
        self.usernames.add(username)
        if self.roles is not None:
            self.roles.held[account_id] = set(roles or ("user",))
        await self.ids.link(account_id, identity, sid="", now_ms=0)
        return account_id

    async def find_by_email(self, email):
        return next((a for a in self.made if a["email"] == email), None)


class Sessions:
    def __init__(self) -> None:
        self.opened: list[tuple] = []

    async def open(self, account_id, username, **kw):
        self.opened.append((account_id, username, kw.get("method")))
        return {"session_for": account_id}


class Roles:
    def __init__(self) -> None:
        self.held: dict[str, set[str]] = {}
        self.revoked: list[tuple[str, str]] = []

    async def grant(self, user_id, role):
        self.held.setdefault(user_id, set()).add(role)
        return True

    async def revoke(self, user_id, role):
        self.revoked.append((user_id, role))
        self.held.get(user_id, set()).discard(role)
        return True

    async def publish_change(self, what):
        return None


class Guard:
    """The last-admin guard: refuses to take a role in `last` from its (only) holder."""

    def __init__(self) -> None:
        self.last: set[tuple[str, str]] = set()
        self.asked: list[tuple[str, str | None, str | None]] = []

    @contextlib.asynccontextmanager
    async def removing(self, user_id, *, actor, role=None):
        self.asked.append((user_id, actor, role))
        if (user_id, role) in self.last:
            raise Conflict("no one else holds '*'", code=Code.LAST_ADMIN)
        yield


class Limiter:
    def __init__(self) -> None:
        self.hits = 0

    async def hit_ip(self, scope, limit, ip):
        self.hits += 1


DISCOVERY = Discovery(
    issuer="https://id.example",
    authorization_endpoint="https://id.example/auth?tenant=1",
    token_endpoint="https://id.example/token",
    jwks_uri="https://id.example/jwks",
    algorithms=("RS256",),
    auth_methods=("client_secret_basic",),
    iss_parameter_supported=True,
)


class Client:
    """The provider: answers discovery, redeems codes, and 'validates' the ID token by
    handing back the claims the test set, checking the nonce it is given."""

    def __init__(self) -> None:
        self.down = False
        self.claims = {
            "sub": "s-1",
            "preferred_username": "alice",
            "email": "a@x.example",
            "email_verified": True,
        }
        self.redeemed: list[dict] = []

    async def discovery(self, issuer):
        if self.down:
            raise ProviderUnavailable("down")
        return DISCOVERY

    async def exchange_code(self, d, **kw):
        if self.down:
            raise ProviderUnavailable("down")
        self.redeemed.append(kw)
        return {"id_token": "idt", "access_token": "at"}

    async def verify_id_token(self, d, token, *, client_id, nonce, access_token=None):
        return {**self.claims, "nonce": nonce}


@pytest.fixture
async def world():
    audit, ids, flows, client, sessions = Audit(), Identities(), Flows(), Client(), Sessions()
    roles, guard = Roles(), Guard()
    ids.roles = roles
    registrar = Registrar(ids, roles)
    providers = ProviderService(
        store=Providers(),
        box=SecretBox.from_text(KEY),
        audit=audit,
        public_url="https://auth.example",
        clock=clock,
    )
    await providers.create(
        {
            "slug": "p",
            "name": "P",
            "issuer": "https://id.example",
            "client_id": "c",
            "client_secret": "s",
            "scopes": ["email"],
            "auto_register": True,
            "enabled": True,
            "username_claim": "preferred_username",
            "email_claim": "email",
            "roles_claim": "roles",
            "role_mapping": {},
            "token_auth_method": "auto",
        },
        actor_id="1",
        actor_name="admin",
    )
    identities = IdentityAccounts(store=ids, registrar=registrar, clock=clock)
    service = SignInService(
        providers=providers,
        flows=flows,
        identities=identities,
        client=client,
        accounts=registrar,
        sessions=sessions,
        roles=roles,
        guard=guard,
        limiter=Limiter(),
        audit=audit,
        redirect_allowlist=("https://app.example/back",),
        state_ttl=600,
        provider_budget=1.0,
        authorize_ip_limit=10,
        default_roles=("user",),
        secure_cookies=True,
        clock=clock,
    )
    return {
        "service": service,
        "flows": flows,
        "client": client,
        "sessions": sessions,
        "registrar": registrar,
        "ids": ids,
        "audit": audit,
        "identities": identities,
        "providers": providers,
        "roles": roles,
        "guard": guard,
    }


async def _start(world, **kw):
    started = await world["service"].authorize("p", redirect_to=kw.get("redirect_to"), ip="1.2.3.4")
    q = {k: v[0] for k, v in parse_qs(urlsplit(started.url).query).items()}
    return started, q


async def test_authorize_keeps_the_flow_in_the_store_and_binds_the_browser(world):
    started, q = await _start(world)
    assert started.url.startswith("https://id.example/auth?tenant=1&response_type=code")
    assert q["redirect_uri"] == "https://auth.example/api/v1/auth/oidc/p/callback"
    assert q["scope"] == "openid email"
    ((digest, (state, ttl)),) = world["flows"].states.items()
    assert digest == hashlib.sha256(q["state"].encode()).hexdigest() and ttl == 600_000
    challenge = base64.urlsafe_b64encode(hashlib.sha256(state.verifier.encode()).digest())
    assert q["code_challenge"] == challenge.rstrip(b"=").decode()
    assert state.nonce == q["nonce"] and state.mode == "login"
    assert state.created_at_ms == int(NOW * 1000)
    b = started.binding
    assert b.secure and b.max_age == 600 and b.name == "authsvc_oidc_" + digest[:16]
    assert state.binding == hashlib.sha256(b.value.encode()).hexdigest()


async def _callback(world, started, q, **params):
    return await world["service"].callback(
        "p",
        {"state": q["state"], "code": "the-code", "iss": "https://id.example", **params},
        cookies={started.binding.name: started.binding.value},
        ip="1.2.3.4",
        user_agent="ua",
    )


async def test_a_first_callback_registers_the_next_signs_in(world):
    started, q = await _start(world)
    result = await _callback(world, started, q)
    assert result.login == {"session_for": "1"} and result.clear_cookie == started.binding.name
    assert world["registrar"].made[0] | {"roles": None} == {
        "id": "1",
        "username": "alice",
        "email": "a@x.example",
        "roles": None,
    }
    assert (
        world["client"].redeemed[0]["verifier"]
        and world["client"].redeemed[0]["code"] == "the-code"
    )
    started, q = await _start(world)
    await _callback(world, started, q)
    assert len(world["registrar"].made) == 1
    assert [o[0] for o in world["sessions"].opened] == ["1", "1"]


async def test_a_taken_username_is_skipped_and_an_existing_email_refused(world):
    world["client"].claims |= {"preferred_username": "taken"}
    started, q = await _start(world)
    await _callback(world, started, q)
    assert world["registrar"].made[0]["username"].startswith("taken_")
    world["client"].claims |= {"sub": "s-2"}  # same email, another identity
    started, q = await _start(world)
    with pytest.raises(Conflict) as caught:
        await _callback(world, started, q)
    assert caught.value.code == Code.ACCOUNT_EXISTS


async def test_an_unreachable_provider_consumes_nothing(world):
    started, q = await _start(world)
    world["client"].down = True
    with pytest.raises(DomainError) as caught:
        await _callback(world, started, q)
    assert caught.value.code == Code.PROVIDER_UNAVAILABLE
    assert len(world["flows"].states) == 1  # put back
    world["client"].down = False
    assert (await _callback(world, started, q)).login is not None
    with pytest.raises(DomainError) as caught:  # now it is spent
        await _callback(world, started, q)
    assert caught.value.code == Code.INVALID_OIDC_STATE


async def test_a_callback_needs_its_browser_and_its_issuer(world):
    started, q = await _start(world)
    with pytest.raises(DomainError) as caught:
        await world["service"].callback(
            "p", {"state": q["state"], "code": "c"}, cookies={}, ip=None, user_agent=""
        )
    assert "another browser" in caught.value.message
    started, q = await _start(world)
    with pytest.raises(DomainError) as caught:
        await _callback(world, started, q, iss="https://evil.example")
    assert caught.value.code == Code.INVALID_ID_TOKEN
    assert not world["registrar"].made


async def test_redirect_to_hands_off_through_a_single_use_code(world):
    started, q = await _start(world, redirect_to="https://app.example/back")
    result = await _callback(world, started, q)
    assert result.redirect.startswith("https://app.example/back?code=")
    code = result.redirect.rsplit("=", 1)[1]
    assert not world["sessions"].opened  # the session opens when the app redeems it
    assert await world["service"].exchange(code, ip=None, user_agent="") == {"session_for": "1"}
    with pytest.raises(DomainError):
        await world["service"].exchange(code, ip=None, user_agent="")


async def test_a_device_registers_once_and_signs_in_after(world):
    devices = DeviceService(
        identities=world["identities"],
        sessions=world["sessions"],
        limiter=Limiter(),
        audit=world["audit"],
        ip_limit=10,
        clock=clock,
    )
    for _ in range(2):
        await devices.sign_in("d" * 20, device_name="pad", ip=None, user_agent="")
    assert len(world["registrar"].made) == 1 and world["registrar"].made[0]["username"] == ""
    assert [o[2] for o in world["sessions"].opened] == ["device", "device"]
    # A stale claim (its account lost the entry) is released and the device starts over.
    world["ids"].entries["1"].clear()
    await devices.sign_in("d" * 20, device_name=None, ip=None, user_agent="")
    assert len(world["registrar"].made) == 2


async def test_the_role_sync_removes_roles_through_the_last_admin_guard(world, caplog):
    """A provider that stops asserting a role removes it at the next sign-in, but not
    from the last holder of '*': the guard refuses, the role is kept (warned, audited)
    and still recorded as the provider's, so it goes once someone else holds '*'."""
    await world["providers"].update(
        "p", {"role_mapping": {"ops": "admin", "vip": "manager"}}, actor_id="1", actor_name="a"
    )
    world["client"].claims |= {"roles": ["ops", "vip"]}
    await _callback(world, *await _start(world))  # registers with the mapped roles
    assert world["roles"].held["1"] == {"user", "admin", "manager"}
    world["guard"].last.add(("1", "admin"))  # account 1 is the last holder of '*'
    world["client"].claims |= {"roles": []}
    with caplog.at_level(logging.WARNING, logger="authsvc.federation"):
        assert (await _callback(world, *await _start(world))).login is not None
    assert world["guard"].asked == [("1", None, "admin"), ("1", None, "manager")]
    assert world["roles"].held["1"] == {"user", "admin"}  # manager removed, admin kept
    assert world["roles"].revoked == [("1", "manager")]
    kept = [e for e in world["audit"].events if e["action"] == "oidc_role_kept"]
    assert kept == [
        {
            "action": "oidc_role_kept",
            "user_id": "1",
            "username": "name1",
            "slug": "p",
            "role": "admin",
            "reason": "last_admin",
        }
    ]
    synced = [e for e in world["audit"].events if e["action"] == "oidc_roles_synced"]
    assert synced[-1]["removed"] == "manager" and synced[-1]["granted"] == ""
    assert any("kept" in r.getMessage() and "'admin'" in r.getMessage() for r in caplog.records)
    ((entry,),) = [list(e.values()) for e in world["ids"].entries.values()]
    assert entry.roles == ("admin",)  # still the provider's to remove later
    # Someone else holds '*' now: the next sign-in removes it.
    world["guard"].last.clear()
    await _callback(world, *await _start(world))
    assert world["roles"].held["1"] == {"user"}
    assert world["roles"].revoked[-1] == ("1", "admin")
    ((entry,),) = [list(e.values()) for e in world["ids"].entries.values()]
    assert entry.roles == ()
