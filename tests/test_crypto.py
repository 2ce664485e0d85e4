"""Secrets at rest: AES-256-GCM sealing under SECRETS_KEY, with the key id inside the
sealed value so a rotation can find and re-seal what an old key sealed."""

from __future__ import annotations

import base64
import secrets

import pytest

from authsvc.config import ConfigError
from authsvc.platform import crypto

from .conftest import make_settings

OLD = secrets.token_urlsafe(32)
NEW = secrets.token_bytes(32).hex()


def test_seal_and_open_round_trip_with_the_key_id_inside():
    box = crypto.SecretBox.from_text(OLD)
    sealed = box.seal("the client secret", context="oidc-provider:a:client_secret")
    version, kid, _payload = sealed.split(".")
    assert version == "v1" and kid == crypto.key_id(crypto.parse_key(OLD)) == box.current_key_id
    assert "the client secret" not in sealed
    assert box.open(sealed, context="oidc-provider:a:client_secret") == "the client secret"
    # A fresh nonce each time: the same secret never seals to the same text.
    assert box.seal("the client secret", context="x") != box.seal("the client secret", context="x")


def test_a_value_moved_to_another_place_or_altered_does_not_open():
    box = crypto.SecretBox.from_text(OLD)
    sealed = box.seal("s", context="oidc-provider:a:client_secret")
    with pytest.raises(crypto.SecretError, match="altered or moved"):
        box.open(sealed, context="oidc-provider:b:client_secret")
    head, _, payload = sealed.rpartition(".")
    raw = bytearray(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    raw[-1] ^= 1
    flipped = head + "." + base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    with pytest.raises(crypto.SecretError, match="altered or moved"):
        box.open(flipped, context="oidc-provider:a:client_secret")
    with pytest.raises(crypto.SecretError, match="not a sealed value"):
        box.open("plain text", context="x")


def test_rotation_opens_with_previous_keys_and_reseals_under_the_current():
    old_box = crypto.SecretBox.from_text(OLD)
    sealed = old_box.seal("s", context="c")
    new_only = crypto.SecretBox.from_text(NEW)
    with pytest.raises(crypto.SecretError, match="neither SECRETS_KEY nor in SECRETS_PREVIOUS"):
        new_only.open(sealed, context="c")
    both = crypto.SecretBox.from_text(NEW, [OLD])
    assert both.open(sealed, context="c") == "s"
    assert not both.is_current(sealed)
    fresh = both.reseal(sealed, context="c")
    assert fresh is not None and both.is_current(fresh) and new_only.open(fresh, context="c") == "s"
    assert both.reseal(fresh, context="c") is None  # already current


def test_without_a_key_nothing_is_sealed():
    box = crypto.SecretBox.from_text("")
    assert not box.enabled
    with pytest.raises(crypto.SecretError, match="SECRETS_KEY is not set"):
        box.seal("s", context="c")


@pytest.mark.parametrize(
    "value", ["short", "k" * 42, "k" * 44, "z" * 64, "0" * 63, base64.b64encode(b"x" * 31).decode()]
)
def test_a_bad_secrets_key_stops_the_start_with_one_line(value):
    with pytest.raises(ConfigError, match=r"SECRETS_KEY: .*token_urlsafe\(32\)"):
        make_settings(secrets_key=value)
    with pytest.raises(ConfigError, match=r"SECRETS_PREVIOUS_KEYS"):
        make_settings(secrets_key=OLD, secrets_previous_keys=(value,))


def test_good_keys_and_the_settings_never_show_them():
    settings = make_settings(secrets_key=OLD, secrets_previous_keys=(NEW,))
    masked = settings.masked()
    assert masked["secrets_key"] == "***" and masked["secrets_previous_keys"] == "***"
    assert OLD not in repr(settings) and NEW not in repr(settings)
    with pytest.raises(ConfigError, match="SECRETS_PREVIOUS_KEYS needs a SECRETS_KEY"):
        make_settings(secrets_previous_keys=(NEW,))
