"""Records the stores return (small frozen dataclasses, never raw hashes) and the
exceptions they raise; free of redis, so services may import them."""

from __future__ import annotations

from dataclasses import dataclass, field


class RecordGone(Exception):
    """The record an update was meant for does not exist (any more)."""


@dataclass(frozen=True, slots=True)
class OidcProvider:
    """An OpenID provider people may sign in with (`oidc:providers`, by slug).

    `client_secret` is the sealed value (authsvc.crypto), never the secret itself.
    `role_mapping` pairs (provider role, local role): only the roles it names become
    local roles."""

    slug: str
    name: str
    issuer: str
    client_id: str
    client_secret: str
    scopes: tuple[str, ...]
    auto_register: bool
    enabled: bool
    username_claim: str
    email_claim: str
    roles_claim: str
    role_mapping: tuple[tuple[str, str], ...]
    token_auth_method: str  # "auto", "client_secret_basic" or "client_secret_post"
    created_at_ms: int
    updated_at_ms: int


@dataclass(frozen=True, slots=True)
class OidcState:
    """A started sign-in, kept under the SHA-256 of its `state` until the provider sends
    the browser back (single use, OIDC_STATE_TTL). The PKCE verifier and the nonce live
    here, never in anything the client holds."""

    slug: str
    issuer: str  # the provider's issuer when the flow began: a changed provider refuses it
    verifier: str
    nonce: str
    mode: str  # "login" or "link"
    redirect_to: str = ""
    account_id: str = ""  # link mode: whose account the identity joins
    sid: str = ""  # link mode: the session that started it (still live at the callback)
    binding: str = ""  # login mode: SHA-256 of the cookie binding the flow to its browser
    created_at_ms: int = 0


@dataclass(frozen=True, slots=True)
class Handoff:
    """What a single-use exchange code (60 s) stands for: a finished sign-in whose
    session is opened when the app redeems the code. No token is ever stored."""

    account_id: str
    slug: str
    username: str = ""
    user_agent: str = ""
    created_at_ms: int = 0


@dataclass(frozen=True, slots=True)
class Identity:
    """A way to sign in that is not a password, linked to one account: an OIDC identity
    (issuer, sub) or a game device. `digest` is the SHA-256 (hex) the claim key holds it
    by; a device's id itself is never stored."""

    kind: str  # "oidc" or "device"
    digest: str
    linked_at_ms: int
    slug: str = ""  # oidc: the provider it was linked through
    issuer: str = ""
    sub: str = ""
    name: str = ""  # device: the name the client gave it
    last_used_ms: int | None = None
    roles: tuple[str, ...] = ()  # oidc: the local roles the provider asserted last


@dataclass(frozen=True, slots=True)
class SignIn:
    """A live account found through one of its identities, ready for a session."""

    account_id: str
    username: str
    roles: tuple[str, ...] = ()
    identity: Identity | None = None


@dataclass(frozen=True, slots=True)
class LinkOutcome:
    """What linking an identity did: `status` is "linked", "already" (this account had
    it), "elsewhere" (another account holds it), "slot_taken" (the account is linked to
    another identity at that provider) or "gone" (the account or session ended)."""

    status: str
    holder: str = ""
    extra: dict = field(default_factory=dict)
