"""API keys for services and scripts.

A key is `ak.<owner id>.<key id>.<256 random bits>`, shown once at creation; only its
SHA-256 is stored. It authenticates with `Authorization: ApiKey <key>` or `X-API-Key`,
acts with its scopes only and never with more than its owner currently holds (the
owner's permissions are checked on every use), and has its own rate limit."""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from datetime import datetime

from ..audit.service import Audit
from ..errors import Code, DomainError, InvalidToken, NotFound, ValidationFailed
from ..identity.principal import LOCAL, Principal
from ..identity.throttle import RequestLimiter
from ..platform.clock import LAST_MS, Clock, iso, to_ms
from ..rbac.permissions import grants
from ..rbac.service import PERMISSION, Authorizer
from ..store import keys
from ..store.apikeys import ApiKeyStore

KEY_RE = re.compile(r"^ak\.([0-9]{1,16}|[0-9a-fA-F-]{36})\.([0-9a-f]{12})\.([A-Za-z0-9_-]{43})\Z")
FAR_FUTURE = 2**62


def key_view(k: dict[str, str]) -> dict:
    return {
        "id": k["id"],
        "name": k["name"],
        "scopes": k["scopes"].split(),
        "created_at": iso(k["created_at"]),
        "expires_at": iso(k.get("expires_at") or None),
        "last_used_at": iso(k.get("last_used_at") or None),
        "prefix": f"ak.{k['owner']}.{k['id']}.",
    }


class ApiKeyService:
    def __init__(
        self,
        *,
        store: ApiKeyStore,
        authorizer: Authorizer,
        limiter: RequestLimiter,
        audit: Audit,
        rate_limit: int,
        clock: Clock = time.time,
    ) -> None:
        self._store = store
        self._authz = authorizer
        self._limiter = limiter
        self._audit = audit
        self._rate_limit = rate_limit
        self._clock = clock

    async def _check_scopes(self, owner: Principal, scopes: list[str]) -> None:
        bad = [s for s in scopes if not PERMISSION.match(s)]
        if bad:
            raise ValidationFailed(fields={"scopes": [f"Not a permission: {', '.join(bad)}"]})
        held = await self._authz.permissions(owner)
        beyond = [s for s in scopes if not grants(held, s)]
        if beyond:
            # Well-formed scopes the owner lacks: not theirs to delegate.
            raise DomainError(
                "a key cannot hold what its owner does not",
                code=Code.FORBIDDEN,
                fields={"scopes": [f"You do not hold these, so a key cannot: {', '.join(beyond)}"]},
            )

    async def create(
        self, owner: Principal, *, name: str, scopes: list[str], expires_at: datetime | None
    ) -> dict:
        await self._check_scopes(owner, scopes)
        now_ms = to_ms(self._clock())
        expires_ms = None if expires_at is None else min(to_ms(expires_at.timestamp()), LAST_MS)
        if expires_ms is not None and expires_ms <= now_ms:
            raise ValidationFailed(fields={"expires_at": ["Must be in the future."]})
        key_id = secrets.token_hex(6)
        key = f"ak.{owner.user_id}.{key_id}.{secrets.token_urlsafe(32)}"
        fields = {
            "id": key_id,
            "owner": owner.user_id,
            "owner_kind": owner.kind,
            "owner_username": owner.username,
            "name": name,
            "scopes": " ".join(sorted(set(scopes))),
            "hash": hashlib.sha256(key.encode()).hexdigest(),
            "created_at": str(now_ms),
            "expires_at": "" if expires_ms is None else str(expires_ms),
        }
        await self._store.create(owner.user_id, key_id, fields)
        await self._audit.record(
            "api_key_created",
            user_id=owner.user_id,
            username=owner.username,
            key_id=key_id,
            name=name,
        )
        return {**key_view(fields), "key": key}

    async def list(self, owner: Principal) -> list[dict]:
        return [key_view(k) for k in await self._store.list(owner.user_id)]

    async def update(
        self, owner: Principal, key_id: str, *, name: str | None, scopes: list[str] | None
    ) -> dict:
        changes = {}
        if name is not None:
            changes["name"] = name
        if scopes is not None:
            await self._check_scopes(owner, scopes)
            changes["scopes"] = " ".join(sorted(set(scopes)))
        if changes and not await self._store.update(owner.user_id, key_id, changes):
            raise NotFound("no such API key")
        current = await self._store.get(owner.user_id, key_id)
        if current is None:
            raise NotFound("no such API key")
        await self._audit.record(
            "api_key_updated", user_id=owner.user_id, username=owner.username, key_id=key_id
        )
        return key_view(current)

    async def revoke(self, owner: Principal, key_id: str) -> None:
        if not await self._store.delete(owner.user_id, key_id):
            raise NotFound("no such API key")
        await self._audit.record(
            "api_key_revoked", user_id=owner.user_id, username=owner.username, key_id=key_id
        )

    async def resolve(self, key: str) -> Principal:
        """The principal an API key acts as (the Authenticator's ApiKeyResolver)."""
        m = KEY_RE.match(key)
        if m is None:
            raise InvalidToken("the API key is malformed")
        owner, key_id = m.group(1), m.group(2)
        local = owner.isdigit()
        found = await self._store.authenticate(
            owner,
            key_id,
            hashlib.sha256(key.encode()).hexdigest(),
            now_ms=to_ms(self._clock()),
            local=local,
            owner_key=keys.account(owner) if local else keys.user_record(owner),
        )
        if found is None:
            raise InvalidToken("the API key is invalid, expired or revoked")
        await self._limiter.hit("apikey", self._rate_limit, key_id)
        return Principal(
            user_id=owner,
            kind=LOCAL if local else found.get("owner_kind", "keycloak"),
            username=found.get("owner_username", ""),
            exp=FAR_FUTURE,
            scopes=frozenset(found["scopes"].split()),
            api_key_id=key_id,
        )
