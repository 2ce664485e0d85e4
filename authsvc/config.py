"""Settings: every knob the service reads from the environment, declared once and
validated at start. A bad value stops the start with one line that names it."""

from __future__ import annotations

import functools
import ipaddress
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from urllib.parse import urlsplit

from .platform import crypto

DEFAULT_KEYDB_URL = "redis://127.0.0.1:5556/0"
MIN_SECRET_BYTES = 32
MIN_SECRET_BITS = 128
GENERATE_SECRET = 'python3 -c "import secrets; print(secrets.token_hex(32))"'


@functools.lru_cache(maxsize=32)
def secret_bits(secret: str) -> float:
    """A conservative estimate of how many bits of guessing a secret resists.

    zxcvbn (Dropbox's estimator) finds what guessing tools try first: repeats
    (`aaaa`, `deadbeefdeadbeef`), sequences (`0123...`, `abcd...`), keyboard walks and
    dictionary words, each worth log2 of its guesses. What it would brute force is worth
    its length times the bits of one character: log2 of the alphabet the secret looks
    drawn from, estimated from how many distinct characters it shows for its length and
    capped by the character classes it uses (hex: 4 bits, base64: 6). So a long string
    of few distinct characters (`0f0ff00f...`) counts for little, and 32 hex characters
    for at most 128 bits. The secret is read in 64-character pieces (zxcvbn's cost grows
    fast with length): a repeat longer than that repeats something already counted."""
    from zxcvbn import zxcvbn  # loads its word lists: only when a secret is checked

    per_char = math.log2(min(_alphabet_seen(secret), _alphabet_of_classes(secret)))
    bits = 0.0
    for start in range(0, len(secret), 64):
        for match in zxcvbn(secret[start : start + 64], max_length=64)["sequence"]:
            brute = len(match["token"]) * per_char
            if match["pattern"] == "bruteforce":
                bits += brute
            else:
                bits += min(brute, math.log2(max(float(match["guesses"]), 1.0)))
    return bits


def _alphabet_seen(secret: str) -> float:
    """The alphabet size K for which `len(secret)` uniform draws show, on average, as
    many distinct characters as the secret does (infinite when all differ)."""
    seen, n = len(set(secret)), len(secret)
    if seen >= n:
        return math.inf
    low, high = float(seen), 1e9
    for _ in range(100):  # bisection: the expected count grows with K
        mid = (low + high) / 2
        if mid * (1 - (1 - 1 / mid) ** n) < seen:
            low = mid
        else:
            high = mid
    return max(low, 1.0)


def _alphabet_of_classes(secret: str) -> int:
    """The size of the character classes the secret uses: digits, a-f or a-z, A-F or
    A-Z, the few symbols of base64 or all punctuation, and anything beyond ASCII."""
    chars = set(secret)
    lower = {c for c in chars if "a" <= c <= "z"}
    upper = {c for c in chars if "A" <= c <= "Z"}
    symbols = {c for c in chars if c.isascii() and c.isprintable() and not c.isalnum()}
    size = 10 if any(c.isascii() and c.isdigit() for c in chars) else 0
    size += (6 if lower <= set("abcdef") else 26) if lower else 0
    size += (6 if upper <= set("ABCDEF") else 26) if upper else 0
    size += (len(symbols) if len(symbols) <= 3 else 33) if symbols else 0
    size += 1000 if any(not c.isascii() for c in chars) else 0
    return max(size, 1)


def _check_secret(name: str, secret: str) -> None:
    size = len(secret.encode())
    if size < MIN_SECRET_BYTES:
        what = "unset" if not secret else f"{size} bytes"
        raise ConfigError(
            f"{name} must be at least {MIN_SECRET_BYTES} bytes (it is {what}); "
            f"generate one with: {GENERATE_SECRET}"
        )
    bits = secret_bits(secret)
    if bits <= MIN_SECRET_BITS:
        raise ConfigError(
            f"{name} is too easy to guess (about {bits:.0f} bits of entropy, more than "
            f"{MIN_SECRET_BITS} needed: it is short of random characters, repeats, follows "
            f"a sequence, holds words or uses few distinct characters); generate one "
            f"with: {GENERATE_SECRET}"
        )


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask, so `taskset` and cpusets
    count), else the machine's."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class ConfigError(Exception):
    """A setting is missing or invalid; the message is one line naming it."""


@dataclass(frozen=True, kw_only=True)
class Settings:
    jwt_secret: str = field(repr=False)
    jwt_previous_secrets: tuple[str, ...] = field(default=(), repr=False)
    jwt_issuer: str = "authsvc"
    jwt_audience: str = "authsvc"
    jwt_leeway: int = 30
    access_token_ttl: int = 900
    # None: use DEFAULT_KEYDB_URL, and start an embedded store if nothing answers there.
    keydb_url: str | None = None
    keydb_cluster: bool = False  # or KEYDB_URL=redis+cluster://<any node>
    store_timeout: float = 2.0
    data_dir: str = "./data"
    # The embedded store's server binary (a path or a name on PATH); "" picks one (the
    # order is in store/embedded.py and docs/development.md).
    store_server_bin: str = ""
    host: str = "0.0.0.0"  # noqa: S104 - a service listens on all interfaces by default
    port: int = 8080
    # `serve` processes sharing the port with SO_REUSEPORT (also `serve --workers`)
    workers: int = field(default_factory=usable_cores)
    bcrypt_cost: int = 12
    hash_threads: int = field(default_factory=lambda: os.cpu_count() or 2)
    max_characters_per_account: int = 20
    max_body_bytes: int = 64 * 1024
    token_cache_size: int = 10_000
    audit_retention_days: int = 90
    # Sessions and refresh tokens
    refresh_token_ttl: int = 30 * 86400
    refresh_reuse_interval: int = 10
    max_sessions_per_account: int = 5
    # Brute force: failures per (account, ip), per account, per ip, in one window
    login_max_failures: int = 5
    login_account_max_failures: int = 50
    login_ip_max_failures: int = 100
    login_failure_window: int = 900
    register_ip_limit: int = 20  # per REQUEST_LIMIT_WINDOW
    mail_ip_limit: int = 10  # resend-verification + forgot-password, per window
    mail_account_limit: int = 3  # mails of each kind to one account, per window
    request_limit_window: int = 3600
    trusted_proxies: tuple[str, ...] = ()
    # Account lifecycle and mail
    require_verified_email: bool = False
    email_verification_ttl: int = 86400
    password_reset_ttl: int = 3600
    public_url: str = "http://localhost:8080"
    mail_backend: str = "outbox"
    mail_from: str = "authsvc <no-reply@localhost>"
    smtp_host: str = "localhost"
    smtp_port: int = 587
    smtp_user: str = ""
    smtp_password: str = field(default="", repr=False)
    smtp_starttls: bool = True
    smtp_timeout: float = 10.0
    # Roles, API keys
    default_role: str = "user"
    rbac_cache_ttl: float = 2.0
    # Keycloak realm/client roles -> local roles, "kc-role=local-role,...". Default deny:
    # a token role the mapping does not name gives no local role at all.
    keycloak_role_mapping: tuple[str, ...] = ()
    apikey_rate_limit: int = 600  # requests per key per minute
    # Keycloak (OIDC). No issuer: the Keycloak path is off and such tokens are refused.
    keycloak_issuer: str = ""
    keycloak_url: str = ""
    keycloak_realm: str = ""
    keycloak_client_id: str = ""
    keycloak_audience: str = ""  # default: the client id
    jwks_cache_ttl: int = 300
    jwks_min_refresh_interval: int = 30
    oidc_http_timeout: float = 3.0
    # The media catalog favorites point into
    catalog_backend: str = "none"
    catalog_url: str = ""  # e.g. https://catalog.example/api/{kind}s/{id}
    catalog_timeout: float = 2.0
    catalog_cache_ttl: int = 60
    catalog_negative_cache_ttl: int = 10
    # Secrets kept in the store (OIDC client secrets) are sealed with AES-256-GCM under
    # SECRETS_KEY (32 bytes, base64url or hex); previous keys still open what they sealed
    # until `authsvc rotate-secrets-key` has re-sealed it.
    secrets_key: str = field(default="", repr=False)
    secrets_previous_keys: tuple[str, ...] = field(default=(), repr=False)
    # Sign-in through OIDC providers (redirect URI {PUBLIC_URL}/api/v1/auth/oidc/{slug}/callback)
    oidc_redirect_allowlist: tuple[str, ...] = ()  # where a login may send the browser back
    oidc_state_ttl: int = 600  # seconds a started login may take at the provider
    oidc_discovery_ttl: int = 3600  # seconds a provider's discovery document is cached
    oidc_authorize_ip_limit: int = 300  # sign-ins started per address per REQUEST_LIMIT_WINDOW
    # Guest sign-in of game clients (POST /api/v1/auth/device), per REQUEST_LIMIT_WINDOW
    device_ip_limit: int = 60
    log_level: str = "INFO"
    log_format: str = "json"  # or "text", for a human at a terminal
    # One line per request (authsvc.logs.AccessLogger), whatever LOG_LEVEL says; off
    # for benchmarks.
    access_log: bool = True
    # /metrics counts the live sessions with a SCAN at most this often (s); 0: never
    metrics_session_scan_interval: float = 60.0

    def __post_init__(self) -> None:
        _check_secret("API_JWT_SECRET", self.jwt_secret)
        for i, old in enumerate(self.jwt_previous_secrets, 1):
            # A weak old secret still verifies tokens, so it forges them just as well.
            _check_secret(f"API_JWT_PREVIOUS_SECRETS (secret {i})", old)
        _check_range("BCRYPT_COST", self.bcrypt_cost, 4, 31)
        _check_range("ACCESS_TOKEN_TTL", self.access_token_ttl, 30, 7 * 86400)
        _check_range("JWT_LEEWAY", self.jwt_leeway, 0, 300)
        _check_range("PORT", self.port, 0, 65535)
        _check_range("WORKERS", self.workers, 1, 256)
        _check_range("HASH_THREADS", self.hash_threads, 1, 256)
        _check_range("MAX_CHARACTERS_PER_ACCOUNT", self.max_characters_per_account, 1, 10_000)
        _check_range("MAX_BODY_BYTES", self.max_body_bytes, 1024, 16 * 1024 * 1024)
        _check_range("TOKEN_CACHE_SIZE", self.token_cache_size, 0, 10_000_000)
        _check_range("AUDIT_RETENTION_DAYS", self.audit_retention_days, 1, 3650)
        _check_range("REFRESH_TOKEN_TTL", self.refresh_token_ttl, 60, 365 * 86400)
        _check_range("REFRESH_REUSE_INTERVAL", self.refresh_reuse_interval, 0, 300)
        _check_range("MAX_SESSIONS_PER_ACCOUNT", self.max_sessions_per_account, 1, 1000)
        _check_range("LOGIN_MAX_FAILURES", self.login_max_failures, 1, 10_000)
        _check_range("LOGIN_ACCOUNT_MAX_FAILURES", self.login_account_max_failures, 1, 100_000)
        _check_range("LOGIN_IP_MAX_FAILURES", self.login_ip_max_failures, 1, 1_000_000)
        _check_range("LOGIN_FAILURE_WINDOW", self.login_failure_window, 1, 86400)
        _check_range("REGISTER_IP_LIMIT", self.register_ip_limit, 1, 1_000_000)
        _check_range("MAIL_IP_LIMIT", self.mail_ip_limit, 1, 1_000_000)
        _check_range("MAIL_ACCOUNT_LIMIT", self.mail_account_limit, 1, 10_000)
        _check_range("REQUEST_LIMIT_WINDOW", self.request_limit_window, 1, 86400)
        _check_range("EMAIL_VERIFICATION_TTL", self.email_verification_ttl, 60, 30 * 86400)
        _check_range("PASSWORD_RESET_TTL", self.password_reset_ttl, 60, 7 * 86400)
        _check_range("SMTP_PORT", self.smtp_port, 1, 65535)
        _check_range("APIKEY_RATE_LIMIT", self.apikey_rate_limit, 1, 1_000_000)
        if not 0 <= self.rbac_cache_ttl <= 300:
            raise ConfigError("RBAC_CACHE_TTL must be between 0 and 300 seconds")
        for pair in self.keycloak_role_mapping:
            if pair.count("=") != 1 or not all(pair.split("=")):
                raise ConfigError(f"KEYCLOAK_ROLE_MAPPING: '{pair}' is not kc-role=local-role")
        _check_range("JWKS_CACHE_TTL", self.jwks_cache_ttl, 1, 86400)
        _check_range("JWKS_MIN_REFRESH_INTERVAL", self.jwks_min_refresh_interval, 0, 3600)
        if not 0 < self.oidc_http_timeout <= 60:
            raise ConfigError("OIDC_HTTP_TIMEOUT must be between 0 and 60 seconds")
        if bool(self.keycloak_url) != bool(self.keycloak_realm):
            raise ConfigError("KEYCLOAK_URL and KEYCLOAK_REALM go together")
        if self.oidc_issuer:
            if not self.oidc_issuer.startswith(("http://", "https://")):
                raise ConfigError("KEYCLOAK_ISSUER must be an http(s) URL")
            if not self.keycloak_client_id:
                raise ConfigError("KEYCLOAK_CLIENT_ID is required with a Keycloak issuer")
            if self.oidc_issuer == self.jwt_issuer:
                raise ConfigError("the Keycloak issuer must differ from JWT_ISSUER")
        if self.catalog_backend not in ("none", "http"):
            raise ConfigError("CATALOG_BACKEND must be 'none' or 'http'")
        if self.catalog_backend == "http" and not (
            self.catalog_url.startswith(("http://", "https://")) and "{id}" in self.catalog_url
        ):
            raise ConfigError("CATALOG_URL must be an http(s) URL template with {id} (and {kind})")
        if not 0 < self.catalog_timeout <= 60:
            raise ConfigError("CATALOG_TIMEOUT must be between 0 and 60 seconds")
        if self.log_format not in ("json", "text"):
            raise ConfigError(f"LOG_FORMAT must be json or text, not {self.log_format!r}")
        if self.mail_backend not in ("outbox", "smtp"):
            raise ConfigError("MAIL_BACKEND must be 'outbox' or 'smtp'")
        if not 0 < self.smtp_timeout <= 120:
            raise ConfigError("SMTP_TIMEOUT must be between 0 and 120 seconds")
        if not self.public_url.startswith(("http://", "https://")):
            raise ConfigError("PUBLIC_URL must start with http:// or https://")
        try:
            for net in self.trusted_proxies:
                ipaddress.ip_network(net, strict=False)
        except ValueError as exc:
            raise ConfigError(f"TRUSTED_PROXIES: {exc}") from None
        if not 0 < self.store_timeout <= 60:
            raise ConfigError("STORE_TIMEOUT must be between 0 and 60 seconds")
        if self.keydb_url is not None and not self.keydb_url.startswith(
            ("redis://", "rediss://", "unix://", "redis+cluster://", "rediss+cluster://")
        ):
            raise ConfigError(
                "KEYDB_URL must start with redis://, rediss://, unix:// or (a Redis "
                "Cluster) redis+cluster:// or rediss+cluster://"
            )
        if self.keydb_cluster and not (self.keydb_url or "").startswith("redis"):
            raise ConfigError("KEYDB_CLUSTER=true needs KEYDB_URL=redis://<any node>")
        if not self.jwt_issuer or not self.jwt_audience:
            raise ConfigError("JWT_ISSUER and JWT_AUDIENCE must not be empty")
        for name, values in (
            ("SECRETS_KEY", (self.secrets_key,) if self.secrets_key else ()),
            ("SECRETS_PREVIOUS_KEYS", self.secrets_previous_keys),
        ):
            for value in values:
                try:
                    crypto.parse_key(value)
                except crypto.KeyFormatError:
                    raise ConfigError(
                        f"{name}: every key must be 32 bytes as base64url (43 characters) or "
                        f"64 hex digits; {crypto.GENERATE_HINT}"
                    ) from None
        if self.secrets_previous_keys and not self.secrets_key:
            raise ConfigError("SECRETS_PREVIOUS_KEYS needs a SECRETS_KEY to re-seal under")
        for entry in self.oidc_redirect_allowlist:
            _check_redirect_entry(entry)
        _check_range("OIDC_STATE_TTL", self.oidc_state_ttl, 30, 3600)
        _check_range("OIDC_DISCOVERY_TTL", self.oidc_discovery_ttl, 1, 86400)
        _check_range("DEVICE_IP_LIMIT", self.device_ip_limit, 1, 1_000_000)
        _check_range("OIDC_AUTHORIZE_IP_LIMIT", self.oidc_authorize_ip_limit, 1, 1_000_000)

    @property
    def oidc_issuer(self) -> str:
        """KEYCLOAK_ISSUER, or KEYCLOAK_URL/realms/KEYCLOAK_REALM; "" when off."""
        if self.keycloak_issuer:
            return self.keycloak_issuer.rstrip("/")
        if self.keycloak_url:
            return f"{self.keycloak_url.rstrip('/')}/realms/{self.keycloak_realm}"
        return ""

    @property
    def role_mapping(self) -> dict[str, str]:
        return dict(pair.split("=", 1) for pair in self.keycloak_role_mapping)

    @property
    def store_url(self) -> str:
        url = self.keydb_url or DEFAULT_KEYDB_URL
        if self.keydb_cluster and "+cluster://" not in url:
            scheme, rest = url.split("://", 1)
            url = f"{scheme}+cluster://{rest}"
        return url

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides) -> Settings:
        """Read settings from `env` (default: os.environ); keyword overrides win."""
        env = os.environ if env is None else env
        values: dict = {}
        for f in fields(cls):
            name = _ENV_NAMES.get(f.name, f.name.upper())
            raw = env.get(name)
            if raw is None or raw == "":
                continue
            values[f.name] = _parse(name, f.type, raw)
        values.update(overrides)
        values.setdefault("jwt_secret", "")
        return cls(**values)

    def masked(self) -> dict[str, object]:
        """The settings as a dict fit for a log line: secrets are never included."""
        out = {}
        for f in fields(self):
            if not f.repr:
                out[f.name] = "***" if getattr(self, f.name) else ""
            else:
                out[f.name] = getattr(self, f.name)
        return out


_ENV_NAMES = {
    "jwt_secret": "API_JWT_SECRET",
    "jwt_previous_secrets": "API_JWT_PREVIOUS_SECRETS",
}


def _parse(name: str, typ: object, raw: str) -> object:
    typ = str(typ)
    try:
        if typ == "int":
            return int(raw)
        if typ == "float":
            return float(raw)
        if typ == "bool":
            low = raw.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if typ.startswith("tuple"):
            return tuple(part.strip() for part in raw.split(",") if part.strip())
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a valid {typ}") from None
    return raw


def _check_redirect_entry(entry: str) -> None:
    """An OIDC_REDIRECT_ALLOWLIST entry: an absolute URL (any scheme, so a game's own
    `mygame:/login` works too) without query or fragment."""
    parts = urlsplit(entry)
    if not parts.scheme or parts.query or parts.fragment or "@" in parts.netloc:
        raise ConfigError(
            f"OIDC_REDIRECT_ALLOWLIST: {entry!r} is not an absolute URL without query, "
            "fragment or user"
        )
    if parts.scheme in ("http", "https") and not parts.hostname:
        raise ConfigError(f"OIDC_REDIRECT_ALLOWLIST: {entry!r} has no host")


def _check_range(name: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low} and {high} (got {value})")
