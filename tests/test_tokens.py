"""Attack tokens: every one is a 401 with WWW-Authenticate: Bearer error="invalid_token"."""

from __future__ import annotations

import base64
import json
import secrets
import string
import subprocess
import sys
import time
import uuid

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from authsvc.config import ConfigError, Settings
from authsvc.identity.tokens import TokenService, key_id

from .conftest import SECRET
from .helpers import data_keys, error_of, login, register, user_with_token

OLD_SECRET = "e3a91c0f5d7b2846a0c9e1f7d3b5a8c26e4f0b9d1a7c3e5f8b2d4a6c0e9f1b3d"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _claims(subject: str, **over) -> dict:
    now = int(time.time())
    base = {
        "sub": subject,
        "preferred_username": "u",
        "iss": "authsvc",
        "aud": "authsvc",
        "iat": now,
        "exp": now + 600,
        "jti": "j",
    }
    base.update(over)
    return {k: v for k, v in base.items() if v is not None}


def _sign(claims: dict, secret: str = SECRET, **headers) -> str:
    return jwt.encode(claims, secret, algorithm="HS256", headers={"kid": key_id(secret), **headers})


async def _assert_invalid(http, authorization: str | None, code: str = "invalid_token"):
    headers = {"Authorization": authorization} if authorization is not None else {}
    resp = await http.get("/characters", headers=headers)
    assert resp.status == 401, authorization
    assert (await error_of(resp))["code"] == code
    challenge = resp.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer ")
    if code == "invalid_token":
        assert 'error="invalid_token"' in challenge


async def test_valid_token_works(http):
    _, auth = await user_with_token(http)
    assert (await http.get("/characters", headers=auth)).status == 200


async def test_alg_none_is_refused(http):
    user = await register(http)
    header = _b64(json.dumps({"alg": "none", "typ": "JWT", "kid": key_id(SECRET)}).encode())
    body = _b64(json.dumps(_claims(str(user["id"]))).encode())
    for token in (f"{header}.{body}.", f"{header}.{body}"):
        await _assert_invalid(http, f"Bearer {token}")


async def test_wrong_signature_expired_issuer_audience(http):
    user = await register(http)
    sub = str(user["id"])
    now = int(time.time())
    await _assert_invalid(http, f"Bearer {_sign(_claims(sub), secret='z' * 40)}")
    good = _sign(_claims(sub))
    tampered = good[:-2] + ("AA" if not good.endswith("AA") else "BB")
    await _assert_invalid(http, f"Bearer {tampered}")
    await _assert_invalid(http, f"Bearer {_sign(_claims(sub, iat=now - 4000, exp=now - 3600))}")
    await _assert_invalid(http, f"Bearer {_sign(_claims(sub, iss='evil'))}")
    await _assert_invalid(http, f"Bearer {_sign(_claims(sub, aud='other-service'))}")
    for missing in ("exp", "iss", "aud", "sub", "jti", "iat"):
        await _assert_invalid(http, f"Bearer {_sign(_claims(sub, **{missing: None}))}")
    await _assert_invalid(http, f"Bearer {_sign(_claims('not-a-number'))}")


async def test_within_leeway_is_accepted(http):
    user = await register(http)
    now = int(time.time())
    token = _sign(_claims(str(user["id"]), iat=now - 700, exp=now - 10))
    resp = await http.get("/characters", headers={"Authorization": f"Bearer {token}"})
    assert resp.status == 200


async def test_malformed_headers(http):
    await _assert_invalid(http, None, code="missing_token")
    await _assert_invalid(http, "", code="missing_token")
    for value in (
        "Bearer",
        "Bearer ",
        "Basic dXNlcjpwYXNz",
        "Token abc",
        "Bearer a.b.c",
        "Bearer !!!",
        "Bearer " + "A" * 5000,
        "Bearer e30.e30.e30",
        "Bearer eyJhbGciOiJIUzI1NiJ9.e30.x",
    ):
        await _assert_invalid(http, value)


async def test_rs256_and_hs_with_public_key_are_refused(http):
    user = await register(http)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rs = jwt.encode(
        _claims(str(user["id"])), key, algorithm="RS256", headers={"kid": key_id(SECRET)}
    )
    await _assert_invalid(http, f"Bearer {rs}")
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    # The classic confusion attack: the public key used as an HMAC secret.
    forged = jwt.api_jws.PyJWS().encode(
        json.dumps(_claims(str(user["id"]))).encode(),
        "x" * 32,
        algorithm="HS256",
        headers={"kid": key_id(SECRET)},
    )
    forged = (
        forged.rsplit(".", 1)[0]
        + "."
        + _b64(__import__("hmac").new(pem, forged.rsplit(".", 1)[0].encode(), "sha256").digest())
    )
    await _assert_invalid(http, f"Bearer {forged}")
    await _assert_invalid(http, f"Bearer {_sign(_claims(str(user['id'])), alg='HS512')}")


async def test_secret_rotation_by_kid(make_client):
    # Tokens signed with the old secret keep working after rotation, new ones use the new.
    old_http = await make_client(jwt_secret=OLD_SECRET)
    user = await register(old_http)
    old_token = await login(old_http, user)
    http = await make_client(jwt_previous_secrets=(OLD_SECRET,))
    resp = await http.get("/characters", headers={"Authorization": f"Bearer {old_token}"})
    assert resp.status == 200
    new_token = await login(http, user)
    assert jwt.get_unverified_header(new_token)["kid"] == key_id(SECRET)
    # Without the old secret configured, old tokens are refused.
    strict = await make_client()
    await _assert_invalid(strict, f"Bearer {old_token}")
    # A token signed with the old secret but claiming the current kid is refused.
    liar = _sign(_claims(str(user["id"])), secret=OLD_SECRET, kid=key_id(SECRET))
    await _assert_invalid(http, f"Bearer {liar}")


async def test_token_of_deleted_or_disabled_account_is_refused(http, store):
    user, auth = await user_with_token(http)
    assert (await http.get("/characters", headers=auth)).status == 200  # now cached
    await store.hset(f"account:{{{user['id']}}}", "is_active", "0")
    for path in ("/characters", "/api/v1/users/me"):
        resp = await http.get(path, headers=auth)
        assert resp.status == 401 and (await error_of(resp))["code"] == "invalid_token"
    await store.delete(f"account:{{{user['id']}}}")
    resp = await http.post("/characters", headers=auth, json={"name": "x", "sex": 0, "race": 0})
    assert resp.status == 401
    # Nothing was resurrected as a stub: no account hash, no character keys.
    left = await data_keys(store)
    assert "account:{*}" not in left
    assert not [k for k in left if "character" in k]


def test_token_service_rejects_garbage_without_exceptions_leaking():
    svc = TokenService(secret=SECRET, issuer="authsvc", audience="authsvc", ttl=60)
    for token in ("", ".", "..", "a.b", "\x00", "e30." * 3):
        with pytest.raises(Exception) as info:
            svc.verify(token)
        assert type(info.value).__name__ == "InvalidToken"


@pytest.mark.parametrize("secret", ["", "short", "x" * 31])
def test_short_secret_refuses_to_start(secret):
    with pytest.raises(ConfigError, match="API_JWT_SECRET must be at least 32 bytes"):
        Settings.from_env({"API_JWT_SECRET": secret})


WEAK_SECRETS = {
    "one character": "a" * 32,
    "a longer run": "a" * 64,
    "a short pattern repeated": "ab" * 16,
    "a hex word repeated": "deadbeef" * 8,
    "hex words": "deadbeefcafebabefeedfacedeadc0de",
    "a sequence repeated": "0123456789abcdef" * 4,
    "few distinct hex characters": "0f0ff00f0ff0f00f" * 4,
    "words and a run": "test-secret-" + "x" * 40,
    "a passphrase": "correct horse battery staple correct horse",
    "a keyboard walk": "qwertyuiopasdfghjklzxcvbnm123456",
    "a password": "MySuperSecretJwtKeyForProduction2024!",
    "changeme": "changeme-changeme-changeme-changeme",
}


@pytest.mark.parametrize("kind", sorted(WEAK_SECRETS))
def test_low_entropy_secrets_are_refused_with_how_to_make_one(kind):
    secret = WEAK_SECRETS[kind]
    assert len(secret.encode()) >= 32  # long enough: refused for its entropy alone
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"API_JWT_SECRET": secret})
    message = str(info.value)
    assert message.startswith("API_JWT_SECRET is too easy to guess"), message
    assert "secrets.token_hex(32)" in message and secret not in message
    with pytest.raises(ConfigError, match=r"API_JWT_PREVIOUS_SECRETS \(secret 2\) is too easy"):
        Settings.from_env(
            {"API_JWT_SECRET": SECRET, "API_JWT_PREVIOUS_SECRETS": f"{OLD_SECRET},{secret}"}
        )


PRINTABLE = "".join(c for c in string.printable[:94] if c != ",")  # "," separates old ones


@pytest.mark.parametrize(
    "make",
    [
        lambda: secrets.token_hex(32),
        lambda: secrets.token_hex(64),
        lambda: secrets.token_urlsafe(32),
        lambda: secrets.token_urlsafe(64),
        lambda: base64.b64encode(secrets.token_bytes(32)).decode(),
        lambda: base64.b64encode(secrets.token_bytes(48)).decode(),
        lambda: secrets.token_urlsafe(24),  # 32 characters, 192 bits
        lambda: "".join(secrets.choice(PRINTABLE) for _ in range(32)),
    ],
    ids=["hex32", "hex64", "urlsafe32", "urlsafe64", "b64_32", "b64_48", "urlsafe24", "print32"],
)
def test_good_secrets_are_accepted(make):
    # Random, so each run tries fresh ones (zxcvbn takes ~50 ms a secret: a few each).
    for _ in range(3):
        secret, old = make(), make()
        settings = Settings.from_env({"API_JWT_SECRET": secret, "API_JWT_PREVIOUS_SECRETS": old})
        assert settings.jwt_secret == secret and settings.jwt_previous_secrets == (old,)


def test_32_hex_characters_are_128_bits_and_refused():
    """Long enough, but only 128 bits: HS256 wants a key as strong as its hash."""
    for secret in (
        secrets.token_hex(16),
        uuid.uuid4().hex,
        "".join(["0123"[b % 4] for b in secrets.token_bytes(64)]),
    ):
        with pytest.raises(ConfigError, match="too easy to guess"):
            Settings.from_env({"API_JWT_SECRET": secret})


def test_cli_refuses_to_start_with_one_line_reason():
    proc = subprocess.run(
        [sys.executable, "-m", "authsvc", "serve"],
        capture_output=True,
        text=True,
        env={"API_JWT_SECRET": "too-short", "PATH": "/usr/bin"},
        timeout=30,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "API_JWT_SECRET" in lines[0]
    assert "too-short" not in proc.stderr  # the secret itself is never printed
