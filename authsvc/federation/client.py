"""The HTTP side of OpenID Connect, towards the providers: discovery, keys, the token
endpoint, and ID-token validation.

- Discovery (`{issuer}/.well-known/openid-configuration`) is cached per issuer for
  OIDC_DISCOVERY_TTL; its `issuer` must be the configured one, and every endpoint it
  names must be https (plain http only on a loopback address). When a refresh fails the
  cached document stays in use; with none, the provider is unavailable (503).
- Keys (its `jwks_uri`) are cached for JWKS_CACHE_TTL. An ID token signed with a `kid`
  the cache lacks makes one refetch (concurrent misses share it): a rotated key works at
  once. ID tokens come from the token endpoint over the connection we opened, so a
  flood of made-up kids cannot reach this.
- An ID token is verified with its algorithm pinned to those the provider publishes
  (`id_token_signing_alg_values_supported`, RS256 when it says nothing; asymmetric only,
  never HS* or none), a key of that algorithm's type, and `iss`, `aud` (and `azp`),
  `exp`, `iat`, `nonce`, and `at_hash` when present.
- Every request is bounded (OIDC_HTTP_TIMEOUT) and reads at most MAX_BODY bytes.

Nothing here logs a code, a token or a secret."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote_plus

import aiohttp
import jwt
from jwt import PyJWK

from ..platform.clock import Clock
from ..platform.metrics import OIDC_PROVIDER_REQUESTS
from .urls import secure_or_loopback

log = logging.getLogger("authsvc.federation")

ASYMMETRIC = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512")
AUTH_METHODS = ("client_secret_basic", "client_secret_post")
MAX_BODY = 512 * 1024


class ProviderUnavailable(Exception):
    """The provider is down, slow, or answered something unusable (503)."""


class TokenRefused(Exception):
    """The token endpoint refused the code (`error`: invalid_grant for a reused or
    expired code, invalid_client for our credentials, ...)."""

    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


class IdTokenRejected(Exception):
    """The ID token fails validation; the message says which check."""


@dataclass(frozen=True, slots=True)
class Discovery:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    algorithms: tuple[str, ...]
    auth_methods: tuple[str, ...]
    iss_parameter_supported: bool


@dataclass
class _Keys:
    fetched_at: float
    keys: dict[str, tuple[PyJWK, str | None]]  # kid -> (key, declared alg)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def at_hash(access_token: str, alg: str) -> str:
    """OIDC Core 3.1.3.6: the left half of the hash of the access token, base64url."""
    digest = {"256": hashlib.sha256, "384": hashlib.sha384, "512": hashlib.sha512}[alg[-3:]]
    full = digest(access_token.encode("ascii")).digest()
    return _b64(full[: len(full) // 2])


class OidcClient:
    def __init__(
        self,
        *,
        session: Callable[[], aiohttp.ClientSession],
        timeout: float,
        discovery_ttl: float,
        jwks_ttl: float,
        leeway: int,
        clock: Clock = time.time,
    ) -> None:
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._discovery_ttl = discovery_ttl
        self._jwks_ttl = jwks_ttl
        self._leeway = leeway
        self._clock = clock
        self._docs: dict[str, tuple[float, Discovery]] = {}
        self._jwks: dict[str, _Keys] = {}
        self._jwks_generation: Counter[str] = Counter()  # fetches finished, per jwks_uri
        self._locks: dict[str, asyncio.Lock] = {}
        self.calls: Counter[str] = Counter()  # requests made, by kind (tests, the README)

    def _lock(self, key: str) -> asyncio.Lock:
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        return lock

    async def _request(self, kind: str, method: str, url: str, **kw) -> tuple[int, Any]:
        """(status, parsed JSON) of one bounded request; ProviderUnavailable when the
        provider cannot be reached in time or answers something that is not JSON."""
        self.calls[kind] += 1
        result = "error"
        try:
            async with self._session().request(
                method, url, timeout=self._timeout, allow_redirects=False, **kw
            ) as resp:
                body = await resp.content.read(MAX_BODY + 1)
                if len(body) > MAX_BODY:
                    raise ProviderUnavailable(f"{kind}: the answer is larger than {MAX_BODY} bytes")
                status = resp.status
            try:
                data = json.loads(body) if body else None
            except ValueError:
                data = None
            if status >= 500 or (status == 200 and not isinstance(data, dict)):
                raise ProviderUnavailable(f"{kind}: the provider answered {status}")
            result = str(status)
            return status, data
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise ProviderUnavailable(f"{kind}: {type(exc).__name__}") from None
        finally:
            OIDC_PROVIDER_REQUESTS.labels(kind, result).inc()

    # -- discovery -----------------------------------------------------------------------

    async def discovery(self, issuer: str) -> Discovery:
        cached = self._docs.get(issuer)
        if cached is not None and self._clock() - cached[0] < self._discovery_ttl:
            return cached[1]
        async with self._lock("discovery:" + issuer):
            cached = self._docs.get(issuer)
            if cached is not None and self._clock() - cached[0] < self._discovery_ttl:
                return cached[1]  # fetched while we waited
            try:
                doc = await self._fetch_discovery(issuer)
            except ProviderUnavailable as exc:
                if cached is None:
                    raise
                log.warning(
                    "discovery of %s not refreshed (%s); keeping the cached one", issuer, exc
                )
                return cached[1]
            self._docs[issuer] = (self._clock(), doc)
            return doc

    async def _fetch_discovery(self, issuer: str) -> Discovery:
        url = issuer.rstrip("/") + "/.well-known/openid-configuration"
        status, conf = await self._request("discovery", "GET", url)
        if status != 200:
            raise ProviderUnavailable(f"discovery answered {status}")
        if conf.get("issuer") != issuer:
            raise ProviderUnavailable(f"discovery names issuer {str(conf.get('issuer'))[:200]!r}")
        endpoints = {}
        for name in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            value = conf.get(name)
            if not isinstance(value, str) or not secure_or_loopback(value):
                raise ProviderUnavailable(f"discovery: {name} is missing or not https")
            endpoints[name] = value
        published = conf.get("id_token_signing_alg_values_supported") or ["RS256"]
        algorithms = tuple(a for a in published if a in ASYMMETRIC) or ("RS256",)
        # The spec's default when absent: client_secret_basic.
        methods = conf.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
        return Discovery(
            issuer=issuer,
            algorithms=algorithms,
            auth_methods=tuple(m for m in methods if isinstance(m, str)),
            iss_parameter_supported=conf.get("authorization_response_iss_parameter_supported")
            is True,
            **endpoints,
        )

    # -- the token endpoint --------------------------------------------------------------

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
    ) -> dict[str, Any]:
        """The token response for an authorization code; TokenRefused when the provider
        refuses it, ProviderUnavailable when it cannot answer."""
        method = choose_auth_method(auth_method, d.auth_methods)
        data = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": verifier,
        }
        headers = {"Accept": "application/json"}
        if method == "client_secret_post":
            data |= {"client_id": client_id, "client_secret": client_secret}
        else:
            # RFC 6749 2.3.1: both form-encoded before base64 (aiohttp.BasicAuth is not).
            pair = f"{quote_plus(client_id)}:{quote_plus(client_secret)}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        status, body = await self._request(
            "token", "POST", d.token_endpoint, data=data, headers=headers
        )
        if status != 200:
            error = body.get("error") if isinstance(body, dict) else None
            if status in (400, 401, 403) and isinstance(error, str):
                raise TokenRefused(error[:64])
            raise ProviderUnavailable(f"token endpoint answered {status}")
        if not isinstance(body.get("id_token"), str):
            raise ProviderUnavailable("the token response has no id_token")
        return body

    # -- keys and ID tokens --------------------------------------------------------------

    async def _fetch_keys(self, jwks_uri: str) -> _Keys:
        status, jwks = await self._request("jwks", "GET", jwks_uri)
        if status != 200 or not isinstance(jwks.get("keys"), list):
            raise ProviderUnavailable(f"jwks answered {status}")
        found: dict[str, tuple[PyJWK, str | None]] = {}
        for jwk in jwks["keys"]:
            if not isinstance(jwk, dict) or jwk.get("use", "sig") != "sig":
                continue
            if jwk.get("kty") not in ("RSA", "EC"):
                continue  # never an "oct" (symmetric) key
            try:
                found[str(jwk.get("kid", ""))] = (PyJWK(jwk), jwk.get("alg"))
            except jwt.PyJWTError:
                log.warning("ignoring an unusable JWK kid=%s", str(jwk.get("kid"))[:64])
        return _Keys(self._clock(), found)

    async def _key(self, d: Discovery, kid: str) -> tuple[PyJWK, str | None]:
        uri = d.jwks_uri
        cached = self._jwks.get(uri)
        if cached is not None and kid in cached.keys:
            if self._clock() - cached.fetched_at < self._jwks_ttl:
                return cached.keys[kid]
        generation = self._jwks_generation[uri]
        async with self._lock("jwks:" + uri):
            if self._jwks_generation[uri] == generation:  # nobody fetched while we waited
                try:
                    self._jwks[uri] = await self._fetch_keys(uri)
                except ProviderUnavailable:
                    if cached is None or kid not in cached.keys:
                        raise
                    log.warning("keys of %s not refreshed; keeping the cached ones", d.issuer)
                finally:
                    self._jwks_generation[uri] += 1
        cached = self._jwks.get(uri)
        if cached is None or kid not in cached.keys:
            raise IdTokenRejected("the ID token was signed by a key the provider does not publish")
        return cached.keys[kid]

    async def verify_id_token(
        self,
        d: Discovery,
        token: str,
        *,
        client_id: str,
        nonce: str,
        access_token: str | None = None,
    ) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise IdTokenRejected("the ID token is malformed") from None
        alg, kid = header.get("alg"), header.get("kid", "")
        if alg not in ASYMMETRIC or alg not in d.algorithms or not isinstance(kid, str):
            raise IdTokenRejected("the ID token's algorithm is not one the provider publishes")
        key, declared = await self._key(d, kid)
        family = "EC" if alg.startswith("ES") else "RSA"
        if key.key_type != family or declared not in (None, alg):
            raise IdTokenRejected("the ID token's algorithm does not fit its key")
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[alg],
                audience=client_id,
                issuer=d.issuer,
                options={
                    "require": ["exp", "iat", "iss", "sub", "aud"],
                    # Times are checked below against the injected clock.
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                },
            )
        except jwt.InvalidAudienceError:
            raise IdTokenRejected("the ID token is not meant for this client") from None
        except jwt.InvalidIssuerError:
            raise IdTokenRejected("the ID token's issuer is not the provider") from None
        except jwt.PyJWTError:
            raise IdTokenRejected("the ID token's signature or claims are invalid") from None
        self._check_times(claims)
        aud = claims["aud"]
        if isinstance(aud, list) and len(aud) > 1 and claims.get("azp") != client_id:
            raise IdTokenRejected("the ID token names other audiences and no azp of ours")
        if "azp" in claims and claims["azp"] != client_id:
            raise IdTokenRejected("the ID token was issued to another client (azp)")
        got = claims.get("nonce")
        if not isinstance(got, str) or not hmac.compare_digest(got, nonce):
            raise IdTokenRejected("the ID token's nonce is not this sign-in's")
        if "at_hash" in claims and access_token is not None:
            expected = at_hash(access_token, alg)
            if not hmac.compare_digest(str(claims["at_hash"]), expected):
                raise IdTokenRejected("the ID token's at_hash does not match the access token")
        sub = claims["sub"]
        if not isinstance(sub, str) or not 0 < len(sub) <= 255:
            raise IdTokenRejected("the ID token's subject is not usable")
        return claims

    def _check_times(self, claims: dict[str, Any]) -> None:
        now = self._clock()
        values = {}
        for name in ("exp", "iat", "nbf"):
            value = claims.get(name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise IdTokenRejected(f"the ID token's {name} is not a number")
            values[name] = value
        if values["exp"] <= now - self._leeway:
            raise IdTokenRejected("the ID token has expired")
        if values["iat"] > now + self._leeway or values.get("nbf", now) > now + self._leeway:
            raise IdTokenRejected("the ID token is not valid yet")


def choose_auth_method(configured: str, offered: tuple[str, ...]) -> str:
    """The client authentication method at the token endpoint: the configured one, or
    with "auto" the first of client_secret_basic and client_secret_post that the
    discovery document offers."""
    if configured != "auto":
        return configured
    for method in AUTH_METHODS:
        if method in offered:
            return method
    raise ProviderUnavailable("the provider offers no client-secret authentication method")
