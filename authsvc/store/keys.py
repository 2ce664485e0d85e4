"""Every key pattern authsvc writes, in one place (the README's key table mirrors it).

The braces are literal: they are Redis Cluster hash tags. Every key that belongs to
one account carries `{account_id}`, so the account hash, its character index and its
characters live in one slot and a Lua script may touch them together. Claim keys are
single-key and keep the seed layout (`account:username:<name_lc>`)."""

from __future__ import annotations

# Glob patterns for `authsvc check`, which walks the layout with SCAN.
USERNAME_CLAIM_GLOB = "account:username:*"
EMAIL_CLAIM_GLOB = "account:email:*"
ACCOUNT_GLOB = "account:{*}"
CHARACTER_INDEX_GLOB = "account:{*}:characters"
CHARACTER_GLOB = "character:{*}:*"


AUDIT_STREAM = "audit:events"  # stream: security events, trimmed by age (authsvc.audit)


def account(account_id: int | str) -> str:
    """hash: the account (id, username, email, password, created_at, ...)."""
    return f"account:{{{account_id}}}"


def username_claim(username_lc: str) -> str:
    """string -> account id; written with SET NX, so usernames are unique."""
    return f"account:username:{username_lc}"


def email_claim(email_lc: str) -> str:
    """string -> account id; written with SET NX, so emails are unique."""
    return f"account:email:{email_lc}"


def account_characters(account_id: int | str) -> str:
    """zset: the account's character ids, scored by creation time (ms)."""
    return f"account:{{{account_id}}}:characters"


def character(account_id: int | str, character_id: int | str) -> str:
    """hash: one character; the owner's id is in the key, so ownership is the key itself."""
    return f"character:{{{account_id}}}:{character_id}"


def character_prefix(account_id: int | str) -> str:
    """What Lua scripts prepend to a character id to get its key."""
    return f"character:{{{account_id}}}:"


def account_id_of(key: str) -> str | None:
    """The account id inside a tagged key (`account:{42}` -> "42"), or None."""
    start = key.find("{")
    end = key.find("}", start + 1)
    if start < 0 or end < 0:
        return None
    return key[start + 1 : end]
