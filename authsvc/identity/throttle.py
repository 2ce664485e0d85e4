"""Brute-force and abuse limits, checked before any bcrypt work.

Failed logins are counted per (account, ip) — the tight bound, 5 in 15 minutes — per
account across all addresses (a higher bound) and per address across all accounts
(credential stuffing). A flood from one address exhausts only its own (account, ip)
counter, so the owner logging in from elsewhere is not locked out; addresses the owner
logged in from before skip the per-account bound, so even a distributed flood cannot
lock them out (the lockout denial-of-service Keycloak shipped). A success clears the
(account, ip) counter. Unknown accounts are counted under their normalised name, so
the answers and Retry-After look the same whether or not the account exists."""

from __future__ import annotations

import ipaddress
import math

from ..errors import TooManyRequests
from ..store import keys
from ..store.ratelimits import RateLimitStore


def rate_key_ip(ip: str | None) -> str:
    """The unit an address is limited by: an IPv4 address, or an IPv6 /64 (one host
    usually owns a whole /64)."""
    if not ip:
        return "unknown"
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return "unknown"
    if addr.version == 6:
        if addr.ipv4_mapped is not None:
            return str(addr.ipv4_mapped)
        return str(ipaddress.ip_network(f"{addr}/64", strict=False).network_address) + "/64"
    return str(addr)


class LoginThrottle:
    def __init__(
        self,
        store: RateLimitStore,
        *,
        account_ip_max: int,
        account_max: int,
        ip_max: int,
        window_s: int,
    ) -> None:
        self._store = store
        self._window_ms = window_s * 1000
        self._bounds = (account_ip_max, account_max, ip_max)

    def _counters(self, subject: str, ip: str | None) -> tuple[str, str, str]:
        unit = rate_key_ip(ip)
        return (
            keys.rate_limit("login", "acct_ip", subject, unit),
            keys.rate_limit("login", "acct", subject),
            keys.rate_limit("login", "ip", unit),
        )

    async def check(self, subject: str, ip: str | None, *, known_ip: bool) -> None:
        counters = self._counters(subject, ip)
        states = await self._store.peek(list(counters))
        blocked = [
            ttl
            for i, ((count, ttl), bound) in enumerate(zip(states, self._bounds, strict=True))
            if count >= bound and not (i == 1 and known_ip)
        ]
        if blocked:
            raise TooManyRequests(
                "too many failed login attempts; retry later",
                retry_after=max(1, math.ceil(max(blocked) / 1000)),
            )

    async def failed(self, subject: str, ip: str | None) -> None:
        await self._store.hit([(c, self._window_ms) for c in self._counters(subject, ip)])

    async def succeeded(self, subject: str, ip: str | None, *, now_ms: int) -> None:
        await self._store.reset(self._counters(subject, ip)[0])
        if ip:
            await self._store.remember_ip(subject, rate_key_ip(ip), now_ms)

    async def is_known(self, subject: str, ip: str | None) -> bool:
        return bool(ip) and await self._store.is_known_ip(subject, rate_key_ip(ip))


class RequestLimiter:
    """Per-address (and per-account) limits on registration and mail-sending requests:
    every request counts, allowed or not."""

    def __init__(self, store: RateLimitStore, *, window_s: int) -> None:
        self._store = store
        self._window_ms = window_s * 1000

    async def hit(self, scope: str, limit: int, *parts: str) -> None:
        key = keys.rate_limit(scope, *parts)
        (count,) = await self._store.hit([(key, self._window_ms)])
        if count > limit:
            ((_, ttl),) = await self._store.peek([key])
            raise TooManyRequests(retry_after=max(1, math.ceil(ttl / 1000)))

    async def under(self, scope: str, limit: int, *parts: str) -> bool:
        """Count a hit; is the count still within `limit`? One round trip, whatever the
        answer (no Retry-After is looked up), for callers that must not show it."""
        (count,) = await self._store.hit([(keys.rate_limit(scope, *parts), self._window_ms)])
        return count <= limit

    async def hit_ip(self, scope: str, limit: int, ip: str | None) -> None:
        await self.hit(scope, limit, "ip", rate_key_ip(ip))
