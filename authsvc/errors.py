"""Domain errors with stable public codes. They carry no HTTP: the web layer
(`authsvc.web`) maps each code to a status in one table."""

from __future__ import annotations

from enum import StrEnum


class Code(StrEnum):
    MALFORMED_REQUEST = "malformed_request"  # not even HTTP (answered by the protocol)
    INVALID_JSON = "invalid_json"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    BODY_TOO_LARGE = "body_too_large"
    VALIDATION_FAILED = "validation_failed"
    USERNAME_TAKEN = "username_taken"
    EMAIL_TAKEN = "email_taken"
    INVALID_CREDENTIALS = "invalid_credentials"
    # A signed-in caller's re-authentication (the current password) failed: 403, since
    # a 401 would tell the client its token is bad.
    WRONG_PASSWORD = "wrong_password"
    ACCOUNT_DISABLED = "account_disabled"
    MISSING_TOKEN = "missing_token"
    INVALID_TOKEN = "invalid_token"
    FORBIDDEN = "forbidden"
    EMAIL_NOT_VERIFIED = "email_not_verified"
    TOO_MANY_REQUESTS = "too_many_requests"
    INVALID_REFRESH_TOKEN = "invalid_refresh_token"
    REFRESH_TOKEN_REUSED = "refresh_token_reused"
    INVALID_LINK_TOKEN = "invalid_or_expired_token"
    CATALOG_UNAVAILABLE = "catalog_unavailable"
    UNKNOWN_ITEM = "unknown_item"
    NOT_FOUND = "not_found"
    CHARACTER_NOT_OWNED = "character_not_owned"
    CHARACTER_LIMIT = "character_limit_reached"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    STORE_UNAVAILABLE = "store_unavailable"
    CONFLICT = "conflict"
    # Sign-in through providers and devices
    SECRETS_KEY_MISSING = "secrets_key_missing"
    PROVIDER_UNAVAILABLE = "provider_unavailable"
    INVALID_OIDC_STATE = "invalid_oidc_state"
    INVALID_OIDC_CODE = "invalid_oidc_code"
    REDIRECT_NOT_ALLOWED = "redirect_not_allowed"
    INVALID_ID_TOKEN = "invalid_id_token"
    PROVIDER_DENIED = "provider_denied"
    ACCOUNT_EXISTS = "account_exists"
    IDENTITY_NOT_LINKED = "identity_not_linked"
    IDENTITY_LINKED_ELSEWHERE = "identity_linked_elsewhere"
    PROVIDER_ALREADY_LINKED = "provider_already_linked"
    IDENTITY_TAKEN = "identity_taken"
    LAST_SIGN_IN_METHOD = "last_sign_in_method"
    INVALID_EXCHANGE_CODE = "invalid_exchange_code"
    CREDENTIALS_EXIST = "credentials_exist"
    NO_PASSWORD = "no_password"
    # The last-admin guard (rbac/guard.py): no change may leave no one holding `*`, and
    # an administrator cannot disable, delete or demote themselves.
    LAST_ADMIN = "last_admin"
    SELF_LOCKOUT = "self_lockout"
    INTERNAL = "internal_error"


class DomainError(Exception):
    """An expected failure the client is told about: a stable code, a message fit to
    show, optional per-field messages."""

    code: Code = Code.INTERNAL
    message: str = "unexpected failure"

    def __init__(
        self,
        message: str | None = None,
        *,
        code: Code | None = None,
        fields: dict[str, list[str]] | None = None,
        retry_after: int | None = None,
    ) -> None:
        if code is not None:
            self.code = code
        if message is not None:
            self.message = message
        self.fields = fields or {}
        self.retry_after = retry_after  # seconds until a retry can succeed, if known
        super().__init__(self.message)


class ValidationFailed(DomainError):
    code = Code.VALIDATION_FAILED
    message = "the request is not valid"


class Conflict(DomainError):
    code = Code.CONFLICT
    message = "conflict"


class Unauthorized(DomainError):
    code = Code.INVALID_CREDENTIALS
    message = "invalid credentials"


class InvalidToken(DomainError):
    """The bearer token is missing, malformed, expired or not ours."""

    code = Code.INVALID_TOKEN
    message = "the access token is invalid or expired"


class Forbidden(DomainError):
    code = Code.ACCOUNT_DISABLED
    message = "forbidden"


class NotFound(DomainError):
    code = Code.NOT_FOUND
    message = "not found"


class LimitReached(DomainError):
    code = Code.CHARACTER_LIMIT
    message = "limit reached"


class TooManyRequests(DomainError):
    code = Code.TOO_MANY_REQUESTS
    message = "too many attempts; retry later"


class StoreUnavailable(DomainError):
    code = Code.STORE_UNAVAILABLE
    message = "the data store is unavailable; retry shortly"
