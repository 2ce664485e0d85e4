"""Signing in through an OpenID provider: the authorization-code flow with PKCE, and
linking provider identities to accounts.

authorize -> the provider -> callback:

1. `authorize` writes the flow's state under the SHA-256 of a random `state` (single
   use, OIDC_STATE_TTL): the PKCE verifier, the nonce, the provider's slug and issuer,
   the mode (login or link) and where to send the browser back. It also binds the flow
   to the browser that started it with a cookie whose SHA-256 the state keeps, so a
   callback URL made by someone else (login CSRF, an injected code) fails there.
2. `callback` takes the state (read and delete in one step: a replay finds nothing),
   checks the `iss` parameter (RFC 9207), redeems the code at the token endpoint with
   the verifier, and validates the ID token (client.OidcClient). If the provider is
   down, slow (the whole exchange shares one OIDC_HTTP_TIMEOUT) or refuses our client
   credentials, the state is put back, so nothing is consumed and the same callback
   works once it is back.
3. The identity (issuer, sub) signs in to the account its claim key names (the claim's
   account must still hold it), or, with auto-registration, a new account: a username
   from the mapped claim made unique without failing, the email only when the provider
   says `email_verified`, never linked to an existing account with that email (409: sign
   in and link instead). The provider's role mapping is applied at each sign-in; a role
   it no longer asserts is removed through the last-admin guard (rbac/guard.py), so a
   provider never removes the last holder of `*`: that role is kept, logged and audited,
   and removed at a later sign-in once someone else holds `*`.
4. The answer: the `/login` body, or with `redirect_to` (allow-listed) a 302 there with a
   single-use exchange code (60 s) that POST /api/v1/auth/oidc/exchange redeems.

Everything is audited; no code, token, verifier or secret is logged or audited."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import re
import secrets
import time
import unicodedata
from collections.abc import Iterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, replace
from typing import Any, Protocol

from marshmallow import ValidationError
from marshmallow import validate as mvalidate

from ..accounts.identities import IdentityAccounts
from ..errors import Code, Conflict, DomainError, Forbidden, InvalidToken
from ..identity.principal import Principal
from ..platform.clock import Clock, iso, to_ms
from ..platform.crypto import SecretError
from ..store.records import Handoff, Identity, OidcProvider, OidcState, SignIn
from .client import Discovery, IdTokenRejected, ProviderUnavailable, TokenRefused
from .providers import AuditPort, ProviderService
from .urls import allowed_redirect, with_query

log = logging.getLogger("authsvc.federation")

HANDOFF_TTL_MS = 60_000
BINDING_COOKIE_PREFIX = "authsvc_oidc_"
CALLBACK_COOKIE_PATH = "/api/v1/auth/oidc/"
_NOT_USERNAME = re.compile(r"[^A-Za-z0-9_]+")
_EMAIL = mvalidate.Email()


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def oidc_digest(issuer: str, sub: str) -> str:
    """What an OIDC identity is claimed by: SHA-256 of issuer and sub (a sub is unique
    per issuer only; the NUL cannot occur in either)."""
    return sha256_hex(f"{issuer}\0{sub}")


def _challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def claim_value(claims: dict[str, Any], path: str) -> Any:
    """A claim by name (namespaced names such as `https://example.com/roles` too), else
    a dotted path into nested objects (`realm_access.roles`)."""
    if path in claims:
        return claims[path]
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def username_candidates(claims: dict[str, Any], provider: OidcProvider) -> Iterator[str]:
    """Usernames for a new account, best first: the mapped claim (else the email's local
    part) reduced to [A-Za-z0-9_], then with random digits, then a random name; so a
    taken name never fails the sign-in."""
    raw = claim_value(claims, provider.username_claim)
    if not isinstance(raw, str) or not raw.strip():
        email = claim_value(claims, provider.email_claim)
        raw = email.split("@", 1)[0] if isinstance(email, str) else ""
    ascii_only = unicodedata.normalize("NFKD", raw).encode("ascii", "ignore").decode()
    base = _NOT_USERNAME.sub("_", ascii_only).strip("_")[:40]
    if len(base) < 3:
        base = f"{base}_user" if base else "user"
    yield base
    for digits in (4, 4, 6, 6, 8):
        yield f"{base}_{secrets.randbelow(10**digits):0{digits}d}"
    yield f"user_{secrets.token_hex(8)}"


def verified_email(claims: dict[str, Any], provider: OidcProvider) -> str:
    """The email to claim: only one the provider says it verified, and a valid one."""
    email = claim_value(claims, provider.email_claim)
    verified = claims.get("email_verified")
    if verified not in (True, "true") or not isinstance(email, str) or len(email) > 254:
        return ""
    try:
        _EMAIL(email)
    except ValidationError:
        return ""
    return email


# -- what the service depends on ------------------------------------------------------------


class FlowStorePort(Protocol):
    async def put_state(self, state_digest: str, state: OidcState, *, ttl_ms: int) -> bool: ...
    async def take_state(self, state_digest: str) -> tuple[OidcState, int] | None: ...
    async def restore_state(self, state_digest: str, state: OidcState, *, ttl_ms: int) -> None: ...
    async def put_handoff(self, code_digest: str, handoff: Handoff, *, ttl_ms: int) -> None: ...
    async def take_handoff(self, code_digest: str) -> Handoff | None: ...


class OidcClientPort(Protocol):
    async def discovery(self, issuer: str) -> Discovery: ...
    async def exchange_code(
        self,
        d: Discovery,
        *,
        client_id: str,
        client_secret: str,
        auth_method: str,
        code: str,
        verifier: str,
        redirect_uri: str,
    ) -> dict[str, Any]: ...
    async def verify_id_token(
        self,
        d: Discovery,
        token: str,
        *,
        client_id: str,
        nonce: str,
        access_token: str | None = None,
    ) -> dict[str, Any]: ...


class AccountsPort(Protocol):
    async def find_by_email(self, email: str) -> dict[str, str] | None: ...


class SessionsPort(Protocol):
    async def open(
        self,
        account_id: str,
        username: str,
        *,
        ip: str | None = None,
        user_agent: str = "",
        device_name: str | None = None,
        method: str = "password",
    ) -> Any: ...


class RolesPort(Protocol):
    async def grant(self, user_id: str, role: str) -> bool: ...
    async def revoke(self, user_id: str, role: str) -> bool: ...
    async def publish_change(self, what: str) -> None: ...


class GuardPort(Protocol):
    """The last-admin guard (rbac.guard.SuperuserGuard): the body runs only if removing
    `role` from `user_id` leaves someone holding `*`, else Conflict (LAST_ADMIN)."""

    def removing(
        self, user_id: str, *, actor: str | None, role: str | None = None
    ) -> AbstractAsyncContextManager[None]: ...


class LimiterPort(Protocol):
    async def hit_ip(self, scope: str, limit: int, ip: str | None) -> None: ...


# -- results ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Binding:
    """A cookie tying a flow to the browser that started it."""

    name: str
    value: str
    max_age: int
    secure: bool


@dataclass(frozen=True, slots=True)
class Started:
    url: str  # the provider's authorization endpoint with the request
    binding: Binding | None = None


@dataclass(frozen=True, slots=True)
class CallbackResult:
    """One of: `login` (the /login answer), `redirect` (a URL for a 302) or `linked`."""

    login: Any = None
    redirect: str | None = None
    linked: dict | None = None
    clear_cookie: str | None = None


def _invalid_state(message: str = "this sign-in is unknown, used or expired; start again"):
    return DomainError(message, code=Code.INVALID_OIDC_STATE)


class SignInService:
    def __init__(
        self,
        *,
        providers: ProviderService,
        flows: FlowStorePort,
        identities: IdentityAccounts,
        client: OidcClientPort,
        accounts: AccountsPort,
        sessions: SessionsPort,
        roles: RolesPort,
        guard: GuardPort,
        limiter: LimiterPort,
        audit: AuditPort,
        redirect_allowlist: tuple[str, ...],
        state_ttl: int,
        provider_budget: float,
        authorize_ip_limit: int,
        default_roles: tuple[str, ...],
        secure_cookies: bool,
        clock: Clock = time.time,
    ) -> None:
        self._providers = providers
        self._flows = flows
        self._identities = identities
        self._client = client
        self._accounts = accounts
        self._sessions = sessions
        self._roles = roles
        self._guard = guard
        self._limiter = limiter
        self._audit = audit
        self._allowlist = redirect_allowlist
        self._state_ttl_ms = state_ttl * 1000
        self._budget = provider_budget
        self._authorize_ip_limit = authorize_ip_limit
        self._default_roles = default_roles
        self._secure = secure_cookies
        self._clock = clock

    # -- starting ----------------------------------------------------------------------

    def _check_redirect(self, redirect_to: str | None) -> str:
        if redirect_to and not allowed_redirect(redirect_to, self._allowlist):
            # A policy refusal (403), not a malformed request: the allow-list is a setting.
            raise Forbidden(
                "redirect_to is not in OIDC_REDIRECT_ALLOWLIST",
                code=Code.REDIRECT_NOT_ALLOWED,
                fields={"redirect_to": ["Not an allowed redirect target."]},
            )
        return redirect_to or ""

    async def _start(
        self, provider: OidcProvider, *, mode: str, redirect_to: str, account_id: str, sid: str
    ) -> tuple[str, str, OidcState]:
        """(authorization URL, state digest, state) for a new flow."""
        try:
            async with asyncio.timeout(self._budget):
                d = await self._client.discovery(provider.issuer)
        except (ProviderUnavailable, TimeoutError) as exc:
            raise self._unavailable(provider, exc) from None
        state, verifier, nonce = (
            secrets.token_urlsafe(32),
            secrets.token_urlsafe(48),
            secrets.token_urlsafe(24),
        )
        record = OidcState(
            slug=provider.slug,
            issuer=provider.issuer,
            verifier=verifier,
            nonce=nonce,
            mode=mode,
            redirect_to=redirect_to,
            account_id=account_id,
            sid=sid,
            created_at_ms=to_ms(self._clock()),
        )
        url = with_query(
            d.authorization_endpoint,
            {
                "response_type": "code",
                "client_id": provider.client_id,
                "redirect_uri": self._providers.redirect_uri(provider.slug),
                "scope": " ".join(provider.scopes),
                "state": state,
                "nonce": nonce,
                "code_challenge": _challenge(verifier),
                "code_challenge_method": "S256",
            },
        )
        return url, sha256_hex(state), record

    async def authorize(self, slug: str, *, redirect_to: str | None, ip: str | None) -> Started:
        """Start signing in: the URL of the provider's authorization endpoint, and the
        cookie that binds the flow to this browser."""
        target = self._check_redirect(redirect_to)
        await self._limiter.hit_ip("oidc_authorize", self._authorize_ip_limit, ip)
        provider = await self._providers.enabled(slug)
        url, digest, record = await self._start(
            provider, mode="login", redirect_to=target, account_id="", sid=""
        )
        binding = secrets.token_urlsafe(32)
        record = _with_binding(record, binding)
        await self._flows.put_state(digest, record, ttl_ms=self._state_ttl_ms)
        cookie = Binding(
            BINDING_COOKIE_PREFIX + digest[:16], binding, self._state_ttl_ms // 1000, self._secure
        )
        return Started(url, cookie)

    async def start_link(
        self, principal: Principal, slug: str, *, redirect_to: str | None, ip: str | None
    ) -> str:
        """Start linking an identity at the provider to the caller's account: the URL to
        open. The callback links it to this account, if this session is still live."""
        target = self._check_redirect(redirect_to)
        provider = await self._providers.enabled(slug)
        url, digest, record = await self._start(
            provider,
            mode="link",
            redirect_to=target,
            account_id=str(principal.account_id),
            sid=principal.sid,
        )
        await self._flows.put_state(digest, record, ttl_ms=self._state_ttl_ms)
        await self._audit.record(
            "oidc_link_started",
            user_id=principal.user_id,
            username=principal.username,
            ip=ip,
            slug=slug,
        )
        return url

    # -- the callback ------------------------------------------------------------------

    async def callback(
        self,
        slug: str,
        params: dict[str, str],
        *,
        cookies: dict[str, str],
        ip: str | None,
        user_agent: str,
    ) -> CallbackResult:
        digest = sha256_hex(params["state"])
        cookie_name = BINDING_COOKIE_PREFIX + digest[:16]
        taken = await self._flows.take_state(digest)
        if taken is None:
            await self._failed(slug, "unknown_state", ip)
            raise _invalid_state()
        st, ttl_left = taken
        if st.slug != slug:
            await self._failed(slug, "state_of_another_provider", ip)
            raise _invalid_state()
        if st.mode == "login" and not _binding_matches(st, cookies.get(cookie_name)):
            await self._failed(slug, "browser_mismatch", ip)
            raise _invalid_state(
                "this sign-in was started in another browser; start again from here"
            )
        if params.get("error"):
            await self._failed(slug, "provider_error", ip, error=params["error"][:64])
            raise DomainError(
                f"the provider did not sign you in ({params['error'][:64]})",
                code=Code.PROVIDER_DENIED,
            )
        if not params.get("code"):
            await self._failed(slug, "no_code", ip)
            raise DomainError(
                "the provider sent neither a code nor an error", code=Code.INVALID_OIDC_CODE
            )
        provider = await self._providers.enabled(slug)
        if provider.issuer != st.issuer:
            await self._failed(slug, "provider_changed", ip)
            raise _invalid_state("the provider changed since this sign-in began; start again")
        try:
            claims, issuer = await self._redeem(provider, st, params)
        except (ProviderUnavailable, TimeoutError, SecretError) as exc:
            await self._flows.restore_state(digest, st, ttl_ms=ttl_left)
            raise self._unavailable(provider, exc, ip=ip) from None
        except TokenRefused as exc:
            if exc.error == "invalid_client":  # our credentials: nothing the user did
                await self._flows.restore_state(digest, st, ttl_ms=ttl_left)
                raise self._unavailable(provider, exc, ip=ip) from None
            await self._failed(slug, "code_refused", ip, error=exc.error)
            raise DomainError(
                f"the provider refused the sign-in code ({exc.error}); start again",
                code=Code.INVALID_OIDC_CODE,
            ) from None
        except IdTokenRejected as exc:
            await self._failed(slug, "id_token_rejected", ip, check=str(exc))
            raise InvalidToken(str(exc), code=Code.INVALID_ID_TOKEN) from None
        identity = Identity(
            kind="oidc",
            digest=oidc_digest(issuer, claims["sub"]),
            linked_at_ms=to_ms(self._clock()),
            slug=slug,
            issuer=issuer,
            sub=claims["sub"],
        )
        clear = cookie_name if st.mode == "login" else None
        if st.mode == "link":
            return CallbackResult(**await self._link(st, identity, ip=ip), clear_cookie=clear)
        signin = await self._sign_in(provider, identity, claims, ip=ip)
        await self._sync_roles(provider, signin, claims)
        if st.redirect_to:
            code = secrets.token_urlsafe(32)
            handoff = Handoff(
                account_id=signin.account_id,
                slug=slug,
                username=signin.username,
                user_agent=user_agent[:256],
                created_at_ms=to_ms(self._clock()),
            )
            await self._flows.put_handoff(sha256_hex(code), handoff, ttl_ms=HANDOFF_TTL_MS)
            return CallbackResult(
                redirect=with_query(st.redirect_to, {"code": code}), clear_cookie=clear
            )
        login = await self._sessions.open(
            signin.account_id, signin.username, ip=ip, user_agent=user_agent, method=f"oidc:{slug}"
        )
        return CallbackResult(login=login, clear_cookie=clear)

    async def _redeem(
        self, provider: OidcProvider, st: OidcState, params: dict[str, str]
    ) -> tuple[dict[str, Any], str]:
        """The validated ID token's claims and the issuer, all within one budget."""
        async with asyncio.timeout(self._budget):
            d = await self._client.discovery(provider.issuer)
            iss = params.get("iss")
            if iss is not None and iss != d.issuer:
                raise IdTokenRejected("the authorization response names another issuer (iss)")
            if iss is None and d.iss_parameter_supported:
                raise IdTokenRejected("the authorization response lacks its issuer (iss)")
            tokens = await self._client.exchange_code(
                d,
                client_id=provider.client_id,
                client_secret=self._providers.client_secret(provider),
                auth_method=provider.token_auth_method,
                code=params["code"],
                verifier=st.verifier,
                redirect_uri=self._providers.redirect_uri(provider.slug),
            )
            access = tokens.get("access_token")
            claims = await self._client.verify_id_token(
                d,
                tokens["id_token"],
                client_id=provider.client_id,
                nonce=st.nonce,
                access_token=access if isinstance(access, str) else None,
            )
        return claims, d.issuer

    def _unavailable(self, provider: OidcProvider, exc: Exception, *, ip=None) -> DomainError:
        reason = {
            TimeoutError: "the provider did not answer in time",
            SecretError: "this provider's client secret cannot be opened with SECRETS_KEY",
            TokenRefused: "the provider refused this service's client credentials",
        }.get(type(exc), "the provider cannot be reached or answered something unusable")
        log.warning("provider %s unavailable: %s (%s)", provider.slug, reason, exc)
        return DomainError(
            f"{reason}; nothing was used up, retry shortly",
            code=Code.PROVIDER_UNAVAILABLE,
            retry_after=2,
        )

    async def _failed(self, slug: str, reason: str, ip: str | None, **details: str) -> None:
        await self._audit.record("oidc_login_failed", ip=ip, slug=slug, reason=reason, **details)

    async def _sign_in(
        self, provider: OidcProvider, identity: Identity, claims: dict[str, Any], *, ip
    ) -> SignIn:
        try:
            found = await self._identities.find(identity)
        except Forbidden:
            await self._failed(provider.slug, "account_disabled", ip)
            raise
        if found is not None:
            return found
        if not provider.auto_register:
            await self._failed(provider.slug, "not_linked", ip)
            raise Forbidden(
                "no account is linked to this identity; sign in another way and link it "
                f"with POST /api/v1/users/me/oidc/link/{provider.slug}",
                code=Code.IDENTITY_NOT_LINKED,
            )
        return await self._register(provider, identity, claims, ip=ip)

    def _account_exists(self, slug: str) -> Conflict:
        return Conflict(
            "an account with this email address exists already; sign in to it and link this "
            f"provider with POST /api/v1/users/me/oidc/link/{slug}",
            code=Code.ACCOUNT_EXISTS,
        )

    async def _register(
        self, provider: OidcProvider, identity: Identity, claims: dict[str, Any], *, ip
    ) -> SignIn:
        email = verified_email(claims, provider)
        if email and await self._accounts.find_by_email(email) is not None:
            # Never linked silently: whoever controls this provider account would take
            # over the local one. (Unless it is this identity's own account, made by a
            # concurrent first sign-in.)
            found = await self._identities.find(identity)
            if found is not None:
                return found
            await self._failed(provider.slug, "email_in_use", ip)
            raise self._account_exists(provider.slug)
        roles = tuple(sorted({*self._default_roles, *self._mapped(provider, claims)}))
        for username in username_candidates(claims, provider):
            try:
                return await self._identities.register(
                    identity, username=username, email=email, roles=roles, ip=ip
                )
            except Conflict as exc:
                if exc.code == Code.USERNAME_TAKEN:
                    continue
                if exc.code == Code.EMAIL_TAKEN:
                    await self._failed(provider.slug, "email_in_use", ip)
                    raise self._account_exists(provider.slug) from None
                raise
        raise Conflict("no free username could be found; retry")

    def _mapped(self, provider: OidcProvider, claims: dict[str, Any]) -> set[str]:
        """Local roles from the provider's roles claim, through its mapping only."""
        if not provider.role_mapping:
            return set()
        asserted = claim_value(claims, provider.roles_claim)
        if isinstance(asserted, str):
            asserted = asserted.split()
        if not isinstance(asserted, list):
            return set()
        mapping = dict(provider.role_mapping)
        return {mapping[r] for r in asserted if isinstance(r, str) and r in mapping}

    async def _sync_roles(
        self, provider: OidcProvider, signin: SignIn, claims: dict[str, Any]
    ) -> None:
        """The provider's mapped roles at this sign-in: new ones are granted, ones it
        granted before and no longer asserts are removed (roles granted here by an
        administrator are left alone unless the provider asserted them before).

        Removals go through the last-admin guard, as an administrator's would: one that
        would leave no one holding `*` (or that the guard cannot check now: another
        change to administrators holds its lease) keeps the role, with a warning in the
        log and an `oidc_role_kept` event. The role stays recorded as the provider's, so
        a later sign-in removes it once that is safe."""
        if not provider.role_mapping or signin.identity is None:
            return
        asserted = self._mapped(provider, claims)
        previous, held = set(signin.identity.roles), set(signin.roles)
        grant, revoke = asserted - held, (previous - asserted) & held
        for role in sorted(grant):
            await self._roles.grant(signin.account_id, role)
        removed, kept = [], set()
        for role in sorted(revoke):
            try:
                async with self._guard.removing(signin.account_id, actor=None, role=role):
                    await self._roles.revoke(signin.account_id, role)
            except Conflict as refused:
                kept.add(role)
                log.warning(
                    "provider %s no longer asserts role %r of account %s; kept (%s): %s",
                    provider.slug,
                    role,
                    signin.account_id,
                    refused.code,
                    refused.message,
                )
                await self._audit.record(
                    "oidc_role_kept",
                    user_id=signin.account_id,
                    username=signin.username,
                    slug=provider.slug,
                    role=role,
                    reason=str(refused.code),
                )
            else:
                removed.append(role)
        if grant or removed:
            await self._roles.publish_change(signin.account_id)
            await self._audit.record(
                "oidc_roles_synced",
                user_id=signin.account_id,
                username=signin.username,
                slug=provider.slug,
                granted=",".join(sorted(grant)),
                removed=",".join(removed),
            )
        recorded = asserted | kept
        if recorded != previous:
            await self._identities.store.set_roles(
                signin.account_id, "oidc", signin.identity.digest, tuple(sorted(recorded))
            )

    async def _link(self, st: OidcState, identity: Identity, *, ip) -> dict:
        try:
            await self._identities.link(st.account_id, identity, sid=st.sid)
        except (Conflict, InvalidToken) as exc:
            await self._audit.record(
                "oidc_link_failed",
                user_id=st.account_id,
                ip=ip,
                slug=identity.slug,
                reason=str(exc.code),
            )
            raise
        await self._audit.record(
            "oidc_linked",
            user_id=st.account_id,
            ip=ip,
            slug=identity.slug,
            issuer=identity.issuer,
        )
        if st.redirect_to:
            return {"redirect": with_query(st.redirect_to, {"linked": identity.slug})}
        return {"linked": self.link_view(identity, name=identity.slug)}

    # -- the exchange code -------------------------------------------------------------

    async def exchange(self, code: str, *, ip: str | None, user_agent: str) -> Any:
        """The /login answer for a single-use exchange code (60 s)."""
        handoff = await self._flows.take_handoff(sha256_hex(code))
        if handoff is None:
            await self._audit.record("oidc_exchange_failed", ip=ip)
            raise DomainError(
                "this exchange code is unknown, used or expired; sign in again",
                code=Code.INVALID_EXCHANGE_CODE,
            )
        return await self._sessions.open(
            handoff.account_id,
            handoff.username,
            ip=ip,
            user_agent=user_agent or handoff.user_agent,
            method=f"oidc:{handoff.slug}",
        )

    # -- the caller's links ------------------------------------------------------------

    @staticmethod
    def link_view(identity: Identity, *, name: str) -> dict:
        return {
            "slug": identity.slug,
            "name": name,
            "issuer": identity.issuer,
            "sub": identity.sub,
            "linked_at": iso(identity.linked_at_ms),
            "last_used_at": iso(identity.last_used_ms),
        }

    async def links(self, principal: Principal) -> list[dict]:
        names = {p["slug"]: p["name"] for p in await self._providers.public_list()}
        return [
            self.link_view(i, name=names.get(i.slug, i.slug))
            for i in await self._identities.of_kind(str(principal.account_id), "oidc")
        ]

    async def unlink(self, principal: Principal, slug: str, *, ip: str | None) -> None:
        await self._identities.unlink(str(principal.account_id), "oidc", slug=slug)
        await self._audit.record(
            "oidc_unlinked",
            user_id=principal.user_id,
            username=principal.username,
            ip=ip,
            slug=slug,
        )


def _with_binding(record: OidcState, binding: str) -> OidcState:
    return replace(record, binding=sha256_hex(binding))


def _binding_matches(st: OidcState, presented: str | None) -> bool:
    return (
        bool(presented)
        and bool(st.binding)
        and hmac.compare_digest(st.binding, sha256_hex(presented))
    )
