"""Secrets kept at rest (the platform layer: no aiohttp, no store): AES-256-GCM from
`cryptography` under SECRETS_KEY.

A sealed value is one ASCII string, `v1.<key id>.<base64url(nonce | ciphertext | tag)>`:

- the key id (8 hex digits, derived one-way from the key) says which key sealed it, so
  after a key change the old values still open with SECRETS_PREVIOUS_KEYS, and
  `authsvc rotate-secrets-key` finds and re-seals exactly those not under the current key;
- a fresh 96-bit random nonce per value (a key seals far fewer than 2**32 values);
- the associated data binds the value to where it is kept (`context`, e.g.
  `oidc-provider:steam:client_secret`): a sealed secret copied into another record does
  not open there.

Used for the client secrets of OIDC providers (and meant for any secret setting kept in
the store). Nothing here logs; errors never carry the plaintext."""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

VERSION = "v1"
KEY_BYTES = 32
NONCE_BYTES = 12
GENERATE_HINT = 'generate one with: python -c "import secrets; print(secrets.token_urlsafe(32))"'
_SEALED_RE = re.compile(r"^v1\.([0-9a-f]{8})\.([A-Za-z0-9_-]+)\Z")


class SecretError(Exception):
    """A sealed value cannot be opened: its key is not configured, or it was altered or
    moved. The message names the key id at most, never the value."""


class KeyFormatError(ValueError):
    """A key given in the environment is not 32 bytes in base64url or hex."""


def parse_key(text: str) -> bytes:
    """32 bytes from 43 base64url characters (`secrets.token_urlsafe(32)`), 44 with
    padding, or 64 hex digits."""
    text = text.strip()
    if re.fullmatch(r"[0-9a-fA-F]{64}", text):
        return bytes.fromhex(text)
    if re.fullmatch(r"[A-Za-z0-9_-]{43}=?", text):
        try:
            raw = base64.urlsafe_b64decode(text.rstrip("=") + "=")
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) == KEY_BYTES:
            return raw
    raise KeyFormatError(f"a key must be {KEY_BYTES} bytes as base64url or 64 hex digits")


def key_id(key: bytes) -> str:
    """A public label for a key: one-way, safe to store beside what it sealed."""
    return hashlib.sha256(b"authsvc-secrets-key:" + key).hexdigest()[:8]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SecretBox:
    """Seals with the current key; opens with the current or a previous one."""

    def __init__(self, current: bytes | None, previous: Sequence[bytes] = ()) -> None:
        for key in (current, *previous):
            if key is not None and len(key) != KEY_BYTES:
                raise KeyFormatError(f"a key must be {KEY_BYTES} bytes")
        self._current = current
        self._keys = {key_id(k): AESGCM(k) for k in (*previous, *([current] if current else []))}
        self.current_key_id = key_id(current) if current else None

    @classmethod
    def from_text(cls, current: str, previous: Sequence[str] = ()) -> SecretBox:
        return cls(parse_key(current) if current else None, [parse_key(p) for p in previous])

    @property
    def enabled(self) -> bool:
        """Can it seal (is SECRETS_KEY set)?"""
        return self._current is not None

    @staticmethod
    def _aad(kid: str, context: str) -> bytes:
        return f"authsvc:{VERSION}:{kid}:{context}".encode()

    def seal(self, plaintext: str, *, context: str) -> str:
        if self.current_key_id is None:
            raise SecretError("SECRETS_KEY is not set: secrets cannot be stored")
        kid = self.current_key_id
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._keys[kid].encrypt(nonce, plaintext.encode(), self._aad(kid, context))
        return f"{VERSION}.{kid}.{_b64(nonce + sealed)}"

    def open(self, sealed: str, *, context: str) -> str:
        kid = sealed_key_id(sealed)
        aead = self._keys.get(kid)
        if aead is None:
            raise SecretError(
                f"sealed under key {kid}, which is neither SECRETS_KEY nor in SECRETS_PREVIOUS_KEYS"
            )
        raw = _unb64(sealed.split(".", 2)[2])
        try:
            plain = aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], self._aad(kid, context))
        except (InvalidTag, ValueError):
            raise SecretError(f"a value sealed under key {kid} was altered or moved") from None
        return plain.decode()

    def is_current(self, sealed: str) -> bool:
        return sealed_key_id(sealed) == self.current_key_id

    def reseal(self, sealed: str, *, context: str) -> str | None:
        """The value sealed again under the current key; None when it already is."""
        if self.is_current(sealed):
            return None
        return self.seal(self.open(sealed, context=context), context=context)


def sealed_key_id(sealed: str) -> str:
    """The id of the key a sealed value names; SecretError when it is not one."""
    m = _SEALED_RE.match(sealed)
    if m is None:
        raise SecretError("not a sealed value")
    return m.group(1)
