"""Every key pattern authsvc writes, in one place (docs/key-layout.md mirrors it).

The braces are literal: they are Redis Cluster hash tags. Every key that belongs to
one account carries `{account_id}`, so the account hash, its character index and its
characters live in one slot and a Lua script may touch them together. Claim keys are
single-key and keep the seed layout (`account:username:<name_lc>`)."""

from __future__ import annotations

# A claim naming an account that stayed pending this long is free: its registration died.
PENDING_TIMEOUT_MS = 60_000

# Glob patterns for `authsvc check`, which walks the layout with SCAN.
USERNAME_CLAIM_GLOB = "account:username:*"
EMAIL_CLAIM_GLOB = "account:email:*"
ACCOUNT_GLOB = "account:{*}"
CHARACTER_INDEX_GLOB = "account:{*}:characters"
CHARACTER_GLOB = "character:{*}:*"
SESSION_INDEX_GLOB = "account:{*}:sessions"
SESSION_HASH_GLOB = "session:{*}:*"  # the session hashes, and their `:refresh` sets
SESSION_REFRESH_SUFFIX = ":refresh"
FOLLOWING_GLOB = "user:{*}:following"
FOLLOWERS_GLOB = "user:{*}:followers"
RATE_LIMIT_GLOB = "rl:*"


AUDIT_STREAM = "audit:events"  # stream: security events, trimmed by age (authsvc.audit)


def account(account_id: int | str) -> str:
    """hash: the account (id, username, email, password, created_at, ..., its roles
    ROLES_FIELD, and the pending links VERIFY_LINK / RESET_LINK)."""
    return f"account:{{{account_id}}}"


# An account id no account ever has (ids are random integers from 1): requests that
# must cost the same whether or not an account exists (forgot-password) send their
# account commands to account:{0}, which never exists, when there is none.
NO_ACCOUNT = "0"


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


def account_sessions(account_id: int | str) -> str:
    """zset: the account's live session ids, scored by creation time (ms)."""
    return f"account:{{{account_id}}}:sessions"


def session(account_id: int | str, sid: str) -> str:
    """hash: one login session (created/last-seen, user agent, ip, device name); TTL is
    REFRESH_TOKEN_TTL, renewed by each refresh. `_guard.lua` derives this name from the
    account key: keep the two in step."""
    return f"session:{{{account_id}}}:{sid}"


def session_prefix(account_id: int | str) -> str:
    return f"session:{{{account_id}}}:"


def session_refresh_tokens(account_id: int | str, sid: str) -> str:
    """set: hashes of every refresh token issued in a session (to revoke them together)."""
    return f"session:{{{account_id}}}:{sid}:refresh"


def refresh_token(account_id: int | str, token_hash: str) -> str:
    """hash: one refresh token, by the SHA-256 of the token (never the token itself):
    sid, state (active/spent), spent_at, the successor's iat/jti; TTL REFRESH_TOKEN_TTL."""
    return f"refresh:{{{account_id}}}:{token_hash}"


def refresh_prefix(account_id: int | str) -> str:
    return f"refresh:{{{account_id}}}:"


def known_ips(account_id: int | str) -> str:
    """hash: ip -> last successful login (ms); these addresses skip the per-account
    failure bound, so a distributed guessing flood cannot lock the owner out."""
    return f"account:{{{account_id}}}:known_ips"


# Fields of the account hash holding a pending single-use link (email verification,
# password reset): "<expires_ms>.<base64url SHA-256 of the token>", 57 bytes, so the
# account hash stays listpack-encoded (values <= 64 bytes). Fields rather than keys of
# their own: a key with a TTL costs ~170 bytes; the expiry is checked when the link is
# used, and `authsvc check --fix` removes expired ones.
VERIFY_LINK = "verify_link"
RESET_LINK = "reset_link"


# The account hash field holding a local account's roles, space-separated and sorted
# (written at registration and by `roles_change.lua`).
ROLES_FIELD = "roles"


def is_local(user_id: int | str) -> bool:
    """A local account's id is decimal; an external (Keycloak) user's is its `sub`."""
    return str(user_id).isdigit()


def user_roles(user_id: int | str) -> str:
    """set: the roles granted to an external (Keycloak) user, who has no account hash.
    A local account's roles are its hash's ROLES_FIELD."""
    return f"user:{{{user_id}}}:roles"


ROLES = "rbac:roles"  # hash: role name -> JSON {permissions, inherits, description, builtin}
RBAC_CHANNEL = "authsvc:rbac"  # pub/sub: role changes, so every process drops its cache
# string with a TTL (a lease): held while a change that could take `*` from its last
# holder checks and applies itself, so two such changes cannot race (rbac/guard.py).
SUPERUSER_LEASE = "rbac:superuser_lease"


# Lex indexes (authsvc/store/lexindex.py): ordered sets of strings, each kept as a
# directory zset plus bucket zsets small enough to stay listpacks (~40 B a member
# rather than ~130 in one big skiplist zset). Every key of an index carries the
# index's name as its hash tag, so one script may touch them all on a cluster.


def lex_directory(index: str) -> str:
    """zset (lex, scores 0): one member "<lower bound>\\0<bucket number>" per bucket of
    the index, so the bucket holding a string is the last one whose bound <= it."""
    return f"idx:{{{index}}}"


def lex_bucket_prefix(index: str) -> str:
    """+ bucket number: zset (lex, scores 0), at most lexindex.BUCKET_SIZE members of the
    index, those from the bucket's lower bound up to the next bucket's."""
    return f"idx:{{{index}}}:"


def lex_bucket(index: str, number: int | str) -> str:
    return lex_bucket_prefix(index) + str(number)


def lex_counter(index: str) -> str:
    """string counter: the last bucket number handed out (gone with the last bucket)."""
    return f"idx:{{{index}}}:seq"


def role_members(role: str) -> str:
    """Lex index: ids of the users holding a role. Derived, for listing; the user's own
    roles set is the truth."""
    return f"rbac:members:{role}"


ROLE_MEMBERS_GLOB = lex_directory(role_members("*"))  # the directories, for `check`


def role_of_members_directory(key: str) -> str:
    """The role whose members index `key` (a ROLE_MEMBERS_GLOB match) is the directory of."""
    head = lex_directory(role_members(""))[:-1]  # "idx:{rbac:members:"
    return key[len(head) : -1]


# Lex indexes for the admin listing (no keyspace scans). Each is rebuilt from the
# account hashes by `authsvc check --fix` if a crash left it behind.
USERS_BY_CREATED = "users:created"  # "<created_ms:013d>:<id>"
USERS_BY_USERNAME = "users:username"  # "<username_lc>:<id>"
USERS_BY_EMAIL = "users:email"  # "<email_lc> <id>"


def listing_entries(
    aid: str, username_lc: str, email_lc: str, created_ms: int
) -> tuple[tuple[str, str], ...]:
    """(index, member): where a live account is listed. An account without a username
    or email (a guest, a sign-in through a provider that asserted none) is listed by
    creation only."""
    entries = [(USERS_BY_CREATED, f"{created_ms:013d}:{aid}")]
    if username_lc:
        entries.append((USERS_BY_USERNAME, f"{username_lc}:{aid}"))
    if email_lc:
        entries.append((USERS_BY_EMAIL, f"{email_lc} {aid}"))
    return tuple(entries)


USERS_EXTERNAL_BY_CREATED = "users:external"
"""Lex index of the external (Keycloak) users for the admin listing:
"<created_ms:013d>:<sub>", newest last. Derived from the users records (`user:{sub}`):
added when a record is created, removed with it; `authsvc check --fix` adds what is
missing. Owner: admin."""


def external_listing_entry(sub: str, created_ms: int) -> str:
    return f"{created_ms:013d}:{sub}"


def listed_user(member: str) -> str:
    """The user id a member of a creation index (local or external) names."""
    return member.split(":", 1)[1]


USER_RECORD_GLOB = "user:{*}"  # the users records (not their `:roles`, `:profile`, ...)


def listed_account(index: str, member: str) -> str:
    """The account id a member of a listing index names (the inverse of the above)."""
    return member.rsplit(" " if index == USERS_BY_EMAIL else ":", 1)[-1]


def user_record(user_id: int | str) -> str:
    """hash: the users record of an external (Keycloak) user, keyed by its `sub`."""
    return f"user:{{{user_id}}}"


def user_activity(user_id: int | str) -> str:
    """zset (lex, scores 0): the ids of the `audit:events` entries about one user, as
    zero-padded "<ms:013d>-<seq:06d>", for GET /users/me/activity without scanning the
    trail; trimmed to the same retention. Not a stream of its own: Redis preallocates 4 KB
    for a stream's first node, which made this key most of an account's memory."""
    return f"user:{{{user_id}}}:activity"


def api_key(owner_id: int | str, key_id: str) -> str:
    """hash: one API key: name, scopes, SHA-256 of the key (never the key), created_at,
    expires_at, last_used_at, owner_username."""
    return f"apikey:{{{owner_id}}}:{key_id}"


def user_api_keys(owner_id: int | str) -> str:
    """zset: the owner's API key ids, scored by creation (ms)."""
    return f"user:{{{owner_id}}}:apikeys"


def favorites_by_target(user_id: int | str, kind: str) -> str:
    """hash: target id -> "<created_ms:013d>:<uuid>[:<JSON of the kind's extra fields>]":
    the unique (user, target) pair of one kind, and the whole record."""
    return f"fav:{{{user_id}}}:{kind}:by_target"


def favorites_index(user_id: int | str, kind: str) -> str:
    """zset (lex, scores 0): "<created_ms:013d>:<target id>", newest last; cursors are
    members."""
    return f"fav:{{{user_id}}}:{kind}:index"


def profile(user_id: int | str) -> str:
    """hash: display_name, bio, avatar_url, location, website, privacy, updated_at."""
    return f"user:{{{user_id}}}:profile"


def preferences(user_id: int | str) -> str:
    """string: the user's preferences, one JSON object (size-limited)."""
    return f"user:{{{user_id}}}:preferences"


def following(user_id: int | str) -> str:
    """zset: ids the user follows, scored by when (ms). The truth of a follow."""
    return f"user:{{{user_id}}}:following"


def followers(user_id: int | str) -> str:
    """zset: ids following the user, scored by when (ms): derived from `following`."""
    return f"user:{{{user_id}}}:followers"


def rate_limit(scope: str, *parts: str) -> str:
    """string counter with a TTL (the window), e.g. rl:login:acct_ip:<subject>:<ip>."""
    return ":".join(("rl", scope, *parts))


def account_id_of(key: str) -> str | None:
    """The account id inside a tagged key (`account:{42}` -> "42"), or None."""
    start = key.find("{")
    end = key.find("}", start + 1)
    if start < 0 or end < 0:
        return None
    return key[start + 1 : end]


# -- sign-in through OIDC providers and game devices (authsvc.federation, .devices) --------

OIDC_PROVIDERS = "oidc:providers"
"""hash: provider slug -> JSON of the provider (records.OidcProvider; its client secret
sealed by authsvc.crypto, never in clear). Owner: federation. No TTL. One key, so a
compare-and-set of one field changes a provider atomically on a cluster too."""


def oidc_state(state_digest: str) -> str:
    """string: JSON of a started sign-in (records.OidcState), by the SHA-256 (hex) of its
    `state` parameter; TTL OIDC_STATE_TTL, set in the same command. Taken (read and
    deleted in one script) by the callback. Owner: federation."""
    return f"oidc:state:{state_digest}"


def oidc_handoff(code_digest: str) -> str:
    """string: JSON of a finished sign-in waiting for its app (records.Handoff), by the
    SHA-256 (hex) of the single-use exchange code; TTL 60 s, set in the same command.
    Owner: federation."""
    return f"oidc:handoff:{code_digest}"


IDENTITY_KINDS = ("oidc", "device")


def identity_claim(kind: str, digest: str) -> str:
    """string -> account id; SET NX, so one OIDC identity (kind "oidc": SHA-256 of issuer
    and sub) or one game device (kind "device": SHA-256 of its id) signs in to one
    account. The account's `account_identities` entry is the truth: a claim whose
    account lacks the entry is stale (taken over; `authsvc check --fix` releases it).
    Owner: account. No TTL."""
    return f"identity:{kind}:{digest}"


IDENTITY_CLAIM_GLOB = "identity:*"


def account_identities(account_id: int | str) -> str:
    """hash: the account's identities: `<kind>:<digest>` -> JSON (slug, issuer, sub or
    device name, linked_at), `<kind>:<digest>:used` -> last sign-in (ms),
    `<kind>:<digest>:roles` -> the local roles the provider asserted last. In the
    account's slot, so one script checks the account and its identities together (the
    last way to sign in is never removed). Owner: account. No TTL; deleted with it."""
    return f"account:{{{account_id}}}:identities"


IDENTITIES_GLOB = "account:{*}:identities"


def identity_field(kind: str, digest: str) -> str:
    """The field of `account_identities` holding one identity."""
    return f"{kind}:{digest}"
