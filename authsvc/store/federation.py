"""OIDC providers (one hash of JSON records, changed field by field with compare-and-set)
and the short-lived records of a sign-in in flight: its state and its exchange code."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict

import redis.asyncio as redis

from . import keys
from .connection import LuaStep, lua_source, store_call
from .records import Handoff, OidcProvider, OidcState, RecordGone


def _provider_json(p: OidcProvider) -> str:
    return json.dumps(asdict(p), separators=(",", ":"), sort_keys=True)


def _provider(raw: str) -> OidcProvider:
    data = json.loads(raw)
    data["scopes"] = tuple(data["scopes"])
    data["role_mapping"] = tuple(tuple(pair) for pair in data["role_mapping"])
    return OidcProvider(**data)


class ProviderStore:
    def __init__(self, client: redis.Redis) -> None:
        self._r = client
        self._cas = LuaStep(client, lua_source("hash_field_cas"))

    @store_call
    async def add(self, provider: OidcProvider) -> bool:
        """False when the slug is taken."""
        return bool(
            await self._r.hsetnx(keys.OIDC_PROVIDERS, provider.slug, _provider_json(provider))
        )

    @store_call
    async def get(self, slug: str) -> OidcProvider | None:
        raw = await self._r.hget(keys.OIDC_PROVIDERS, slug)
        return None if raw is None else _provider(raw)

    @store_call
    async def all(self) -> list[OidcProvider]:
        raw = await self._r.hgetall(keys.OIDC_PROVIDERS)
        return sorted((_provider(v) for v in raw.values()), key=lambda p: p.slug)

    @store_call
    async def change(
        self, slug: str, change: Callable[[OidcProvider], OidcProvider | None]
    ) -> OidcProvider | None:
        """Optimistic update: `change(current)` returns the new record (None: leave it);
        it runs again if another writer got in between. Returns what was written, None
        when nothing was; raises RecordGone when there is no such provider."""
        while True:
            raw = await self._r.hget(keys.OIDC_PROVIDERS, slug)
            if raw is None:
                raise RecordGone(slug)
            new = change(_provider(raw))
            if new is None:
                return None
            if await self._cas(keys=[keys.OIDC_PROVIDERS], args=[slug, raw, _provider_json(new)]):
                return new

    @store_call
    async def remove(self, slug: str) -> bool:
        return bool(await self._r.hdel(keys.OIDC_PROVIDERS, slug))


def _state(raw: str) -> OidcState:
    return OidcState(**json.loads(raw))


class FlowStore:
    """Single-use records of a sign-in in flight, each written with its TTL."""

    def __init__(self, client: redis.Redis) -> None:
        self._r = client
        self._take = LuaStep(client, lua_source("string_take"))

    @store_call
    async def put_state(self, state_digest: str, state: OidcState, *, ttl_ms: int) -> bool:
        raw = json.dumps(asdict(state), separators=(",", ":"))
        return bool(await self._r.set(keys.oidc_state(state_digest), raw, px=ttl_ms, nx=True))

    @store_call
    async def take_state(self, state_digest: str) -> tuple[OidcState, int] | None:
        """The state and the ms it had left, deleted in the same step (single use)."""
        reply = await self._take(keys=[keys.oidc_state(state_digest)])
        if not reply:
            return None
        return _state(reply[0]), int(reply[1])

    @store_call
    async def restore_state(self, state_digest: str, state: OidcState, *, ttl_ms: int) -> None:
        """Put a taken state back (the provider failed: nothing is consumed)."""
        if ttl_ms > 0:
            raw = json.dumps(asdict(state), separators=(",", ":"))
            await self._r.set(keys.oidc_state(state_digest), raw, px=ttl_ms, nx=True)

    @store_call
    async def put_handoff(self, code_digest: str, handoff: Handoff, *, ttl_ms: int) -> None:
        raw = json.dumps(asdict(handoff), separators=(",", ":"))
        await self._r.set(keys.oidc_handoff(code_digest), raw, px=ttl_ms, nx=True)

    @store_call
    async def take_handoff(self, code_digest: str) -> Handoff | None:
        reply = await self._take(keys=[keys.oidc_handoff(code_digest)])
        return Handoff(**json.loads(reply[0])) if reply else None
