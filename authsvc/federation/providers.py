"""OIDC providers as data: what administrators create, change and delete, and the public
list of the enabled ones. The client secret is write-only: sealed (authsvc.crypto)
before it reaches the store, opened only to authenticate at the token endpoint, never
returned, logged or audited."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any, Protocol

from ..errors import Code, Conflict, NotFound
from ..platform.clock import Clock, iso, to_ms
from ..platform.crypto import SecretBox, SecretError
from ..store.records import OidcProvider, RecordGone

CALLBACK_PATH = "/api/v1/auth/oidc/{slug}/callback"


class ProviderStorePort(Protocol):
    async def add(self, provider: OidcProvider) -> bool: ...
    async def get(self, slug: str) -> OidcProvider | None: ...
    async def all(self) -> list[OidcProvider]: ...
    async def change(
        self, slug: str, change: Callable[[OidcProvider], OidcProvider | None]
    ) -> OidcProvider | None: ...
    async def remove(self, slug: str) -> bool: ...


class AuditPort(Protocol):
    async def record(self, action: str, **fields: Any) -> None: ...


def secret_context(slug: str) -> str:
    """Where a provider's sealed client secret belongs (its associated data)."""
    return f"oidc-provider:{slug}:client_secret"


class ProviderService:
    def __init__(
        self,
        *,
        store: ProviderStorePort,
        box: SecretBox,
        audit: AuditPort,
        public_url: str,
        clock: Clock = time.time,
    ) -> None:
        self._store = store
        self._box = box
        self._audit = audit
        self._public_url = public_url.rstrip("/")
        self._clock = clock

    def redirect_uri(self, slug: str) -> str:
        """What to register at the provider: {PUBLIC_URL}/api/v1/auth/oidc/{slug}/callback."""
        return self._public_url + CALLBACK_PATH.format(slug=slug)

    def view(self, p: OidcProvider) -> dict:
        return {
            "slug": p.slug,
            "name": p.name,
            "issuer": p.issuer,
            "client_id": p.client_id,
            "client_secret_set": bool(p.client_secret),
            "scopes": list(p.scopes),
            "auto_register": p.auto_register,
            "enabled": p.enabled,
            "username_claim": p.username_claim,
            "email_claim": p.email_claim,
            "roles_claim": p.roles_claim,
            "role_mapping": dict(p.role_mapping),
            "token_auth_method": p.token_auth_method,
            "redirect_uri": self.redirect_uri(p.slug),
            "created_at": iso(p.created_at_ms),
            "updated_at": iso(p.updated_at_ms),
        }

    def _seal(self, slug: str, secret: str) -> str:
        if not self._box.enabled:
            raise Conflict(
                "SECRETS_KEY is not set, so this service cannot store client secrets; "
                "set it and restart",
                code=Code.SECRETS_KEY_MISSING,
            )
        return self._box.seal(secret, context=secret_context(slug))

    def client_secret(self, p: OidcProvider) -> str:
        """The provider's client secret, opened for the token endpoint. SecretError when
        SECRETS_KEY (or a previous key) cannot open it."""
        return self._box.open(p.client_secret, context=secret_context(p.slug))

    async def create(self, body: dict, *, actor_id: str, actor_name: str) -> dict:
        now_ms = to_ms(self._clock())
        slug = body["slug"]
        provider = OidcProvider(
            slug=slug,
            name=body["name"],
            issuer=body["issuer"],
            client_id=body["client_id"],
            client_secret=self._seal(slug, body["client_secret"]),
            scopes=_scopes(body["scopes"]),
            auto_register=body["auto_register"],
            enabled=body["enabled"],
            username_claim=body["username_claim"],
            email_claim=body["email_claim"],
            roles_claim=body["roles_claim"],
            role_mapping=tuple(sorted(body["role_mapping"].items())),
            token_auth_method=body["token_auth_method"],
            created_at_ms=now_ms,
            updated_at_ms=now_ms,
        )
        if not await self._store.add(provider):
            raise Conflict(
                f"a provider '{slug}' exists already",
                code=Code.CONFLICT,
                fields={"slug": ["Taken."]},
            )
        await self._audit.record(
            "oidc_provider_created",
            user_id=actor_id,
            username=actor_name,
            slug=slug,
            issuer=provider.issuer,
        )
        return self.view(provider)

    async def get(self, slug: str) -> dict:
        return self.view(await self._get(slug))

    async def _get(self, slug: str) -> OidcProvider:
        provider = await self._store.get(slug)
        if provider is None:
            raise NotFound(f"no provider '{slug}'")
        return provider

    async def list(self) -> list[dict]:
        return [self.view(p) for p in await self._store.all()]

    async def public_list(self) -> list[dict]:
        return [{"slug": p.slug, "name": p.name} for p in await self._store.all() if p.enabled]

    async def enabled(self, slug: str) -> OidcProvider:
        """The provider people may sign in with now; NotFound when missing or disabled."""
        provider = await self._store.get(slug)
        if provider is None or not provider.enabled:
            raise NotFound(f"no provider '{slug}' to sign in with")
        return provider

    async def update(self, slug: str, changes: dict, *, actor_id: str, actor_name: str) -> dict:
        sealed = self._seal(slug, changes["client_secret"]) if "client_secret" in changes else None
        now_ms = to_ms(self._clock())

        def change(current: OidcProvider) -> OidcProvider:
            values: dict[str, Any] = {}
            for name, value in changes.items():
                if name == "client_secret":
                    values[name] = sealed
                elif name == "scopes":
                    values[name] = _scopes(value)
                elif name == "role_mapping":
                    values[name] = tuple(sorted(value.items()))
                else:
                    values[name] = value
            return replace(current, **values, updated_at_ms=now_ms)

        try:
            provider = await self._store.change(slug, change)
        except RecordGone:
            raise NotFound(f"no provider '{slug}'") from None
        await self._audit.record(
            "oidc_provider_updated",
            user_id=actor_id,
            username=actor_name,
            slug=slug,
            changed=",".join(sorted(changes)),
        )
        return self.view(provider)

    async def delete(self, slug: str, *, actor_id: str, actor_name: str) -> None:
        """Nobody can sign in through it any more; identities linked through it stay on
        their accounts (listed, and removable) until it comes back under any slug with
        the same issuer."""
        if not await self._store.remove(slug):
            raise NotFound(f"no provider '{slug}'")
        await self._audit.record(
            "oidc_provider_deleted", user_id=actor_id, username=actor_name, slug=slug
        )

    async def reseal_all(self) -> tuple[int, int]:
        """Seal every client secret not under the current SECRETS_KEY again (the
        rotation CLI). Returns (resealed, already current); SecretError when a secret
        cannot be opened with the configured keys."""
        resealed = current = 0
        for provider in await self._store.all():

            def change(p: OidcProvider) -> OidcProvider | None:
                fresh = self._box.reseal(p.client_secret, context=secret_context(p.slug))
                return None if fresh is None else replace(p, client_secret=fresh)

            try:
                if await self._store.change(provider.slug, change) is None:
                    current += 1
                else:
                    resealed += 1
            except RecordGone:
                continue  # deleted meanwhile
        return resealed, current


def _scopes(scopes: list[str]) -> tuple[str, ...]:
    """The scopes asked for, `openid` first (required for an ID token), each once."""
    out = ["openid"]
    for scope in scopes:
        if scope not in out:
            out.append(scope)
    return tuple(out)


__all__ = ["ProviderService", "SecretError", "secret_context"]
