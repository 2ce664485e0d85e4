"""Keycloak (OIDC) bearer tokens: discovery, a JWKS cache, and verification pinned to the
issuer's asymmetric algorithms.

- Discovery (`{issuer}/.well-known/openid-configuration`) and keys (its `jwks_uri`) are
  fetched lazily with aiohttp and bounded timeouts, so a Keycloak that is down at start
  does not stop authsvc.
- Keys are cached for JWKS_CACHE_TTL. A token with an unknown `kid` triggers at most one
  refetch per JWKS_MIN_REFRESH_INTERVAL, and concurrent misses share it, so rotation
  works and a flood of bogus kids cannot hammer Keycloak. When a refresh fails, the
  cached keys stay in use.
- A key the issuer stops publishing stops counting at once: the Authenticator's cache
  of verified tokens asks `still_valid(kid)` on every hit, which also starts a refresh
  in the background when the keys are older than JWKS_CACHE_TTL, so a withdrawn key is
  noticed even while every request is a cache hit.
- Only asymmetric algorithms the issuer publishes are accepted (RS256 at least; never
  HS* or none), and a key is used only for its own key type, so a token signed with
  the public key as an HMAC secret is refused.
- `iss` must match exactly; the audience must be in `aud`, or `azp` must be the client.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import jwt
from jwt import PyJWK

from ..errors import InvalidToken
from ..platform.clock import Clock
from .principal import Principal
from .tokens import check_times

log = logging.getLogger("authsvc.oidc")

ASYMMETRIC = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512")
KEYCLOAK = "keycloak"


class KeycloakVerifier:
    def __init__(
        self,
        *,
        issuer: str,
        client_id: str,
        audience: str,
        session: Callable[[], aiohttp.ClientSession],
        cache_ttl: float = 300,
        min_refresh_interval: float = 30,
        http_timeout: float = 3.0,
        leeway: int = 30,
        clock: Clock = time.time,
        on_principal: Callable[[Principal], Awaitable[None]] | None = None,
    ) -> None:
        self.issuer = issuer
        self._client_id = client_id
        self._audience = audience or client_id
        self._session = session
        self._ttl = cache_ttl
        self._min_refresh = min_refresh_interval
        self._timeout = aiohttp.ClientTimeout(total=http_timeout)
        self._leeway = leeway
        self._clock = clock
        self.on_principal = on_principal
        self._keys: dict[str, tuple[PyJWK, str | None]] = {}  # kid -> (key, declared alg)
        self._algorithms: tuple[str, ...] = ("RS256",)
        self._fetched_at = float("-inf")  # last successful fetch
        self._tried_at = float("-inf")  # last attempt, successful or not
        self._lock = asyncio.Lock()
        self._background: asyncio.Task | None = None
        self._attempts = 0  # fetches finished, successful or not
        self.fetches = 0  # JWKS documents fetched (for tests and metrics)

    # -- keys ----------------------------------------------------------------------------

    async def _get_json(self, url: str) -> dict[str, Any]:
        async with self._session().get(url, timeout=self._timeout) as resp:
            if resp.status != 200:
                raise RuntimeError(f"{url} answered {resp.status}")
            return json.loads(await resp.read())

    async def refresh(self) -> None:
        """Fetch discovery and JWKS now (one at a time); keeps the old keys on failure.
        Callers that arrive while a fetch is in flight share its outcome: queueing a
        fetch each would make them wait one OIDC_HTTP_TIMEOUT apiece when Keycloak
        hangs."""
        attempt = self._attempts
        async with self._lock:
            if self._attempts != attempt:
                return  # a fetch ran while we waited for the lock
            self._tried_at = self._clock()
            try:
                await self._fetch()
            finally:
                self._attempts += 1

    def still_valid(self, key_id: str | None, now: float) -> bool:
        """Is `key_id` among the keys the issuer published at the last refresh? (The
        token cache asks on every hit: no I/O, a dict lookup.) Due keys are refreshed in
        the background, at most once per JWKS_MIN_REFRESH_INTERVAL."""
        if now - self._fetched_at > self._ttl and now - self._tried_at >= self._min_refresh:
            if self._background is None or self._background.done():
                self._background = asyncio.ensure_future(self.refresh())
        return key_id in self._keys

    async def aclose(self) -> None:
        """Stop a background refresh (at shutdown, before the HTTP session closes)."""
        if self._background is not None and not self._background.done():
            self._background.cancel()
            await asyncio.wait({self._background})

    async def _fetch(self) -> None:
        try:
            conf = await self._get_json(f"{self.issuer}/.well-known/openid-configuration")
            if conf.get("issuer", "").rstrip("/") != self.issuer:
                raise RuntimeError(f"discovery names issuer {conf.get('issuer')!r}")
            published = conf.get("id_token_signing_alg_values_supported") or ["RS256"]
            algorithms = tuple(a for a in published if a in ASYMMETRIC)
            jwks = await self._get_json(conf["jwks_uri"])
            self.fetches += 1
            keys: dict[str, tuple[PyJWK, str | None]] = {}
            for jwk in jwks.get("keys", []):
                if jwk.get("use", "sig") != "sig" or not jwk.get("kid"):
                    continue
                if jwk.get("kty") not in ("RSA", "EC"):
                    continue  # never an "oct" (symmetric) key
                try:
                    keys[jwk["kid"]] = (PyJWK(jwk), jwk.get("alg"))
                except jwt.PyJWTError:
                    log.warning("ignoring an unusable JWK kid=%s", jwk.get("kid"))
        except (aiohttp.ClientError, TimeoutError, RuntimeError, ValueError, KeyError) as exc:
            log.warning(
                "Keycloak keys not refreshed (%r); keeping %d cached keys", exc, len(self._keys)
            )
            return
        self._keys, self._algorithms = keys, algorithms or ("RS256",)
        self._fetched_at = self._clock()

    async def _key(self, kid: str) -> tuple[PyJWK, str | None]:
        now = self._clock()
        if now - self._fetched_at > self._ttl and now - self._tried_at > self._min_refresh:
            await self.refresh()  # periodic refresh; on failure the cached keys stay
        key = self._keys.get(kid)
        if key is None and self._clock() - self._tried_at >= self._min_refresh:
            await self.refresh()  # an unknown kid: perhaps a rotation
            key = self._keys.get(kid)
        if key is None:
            raise InvalidToken("the access token was signed by a key the issuer does not publish")
        return key

    # -- tokens --------------------------------------------------------------------------

    async def verify(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise InvalidToken("the access token is malformed") from None
        alg, kid = header.get("alg"), header.get("kid")
        if not isinstance(kid, str) or alg not in ASYMMETRIC:
            raise InvalidToken("the access token's algorithm is not accepted for its issuer")
        key, declared = await self._key(kid)
        family = "EC" if alg.startswith("ES") else "RSA"
        if alg not in self._algorithms or key.key_type != family or declared not in (None, alg):
            raise InvalidToken("the access token's algorithm is not accepted for its issuer")
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[alg],
                issuer=self.issuer,
                options={
                    "require": ["exp", "iat", "iss", "sub"],
                    "verify_aud": False,  # aud or azp, checked below
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                },
            )
        except jwt.PyJWTError:
            raise InvalidToken() from None
        check_times(claims, now=self._clock(), leeway=self._leeway)
        aud = claims.get("aud")
        audiences = [aud] if isinstance(aud, str) else list(aud or [])
        if self._audience not in audiences and claims.get("azp") != self._client_id:
            raise InvalidToken("the access token is not meant for this service")
        sub = claims["sub"]
        if not isinstance(sub, str) or not sub or sub.isdigit():
            # All digits would collide with local account ids in the shared user space.
            raise InvalidToken("the access token's subject is not a Keycloak user id")
        principal = Principal(
            user_id=sub,
            kind=KEYCLOAK,
            username=str(claims.get("preferred_username") or ""),
            exp=int(claims["exp"]),
            roles=tuple(sorted(roles_of(claims, self._client_id))),
            email=claims.get("email") if isinstance(claims.get("email"), str) else None,
            claims=claims,
            key_id=kid,
        )
        if self.on_principal is not None:
            await self.on_principal(principal)
        return principal


def roles_of(claims: dict[str, Any], client_id: str) -> set[str]:
    """Realm roles and this client's roles, as Keycloak puts them in its tokens."""
    roles: set[str] = set()
    realm = claims.get("realm_access")
    if isinstance(realm, dict):
        roles.update(r for r in realm.get("roles", []) if isinstance(r, str))
    resource = claims.get("resource_access")
    if isinstance(resource, dict) and isinstance(resource.get(client_id), dict):
        roles.update(r for r in resource[client_id].get("roles", []) if isinstance(r, str))
    return roles
