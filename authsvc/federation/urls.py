"""URL rules of the sign-in flow: which provider URLs may be used (https, or plain http on
a loopback address for development and tests), and which `redirect_to` targets the
allow-list (OIDC_REDIRECT_ALLOWLIST) permits."""

from __future__ import annotations

import ipaddress
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def secure_or_loopback(url: str) -> bool:
    """https with a host, or http to a loopback address; never userinfo or a fragment."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return False
    if not host or parts.username is not None or parts.fragment:
        return False
    return parts.scheme == "https" or (parts.scheme == "http" and is_loopback(host))


def with_query(url: str, params: dict[str, str]) -> str:
    """`url` with `params` added to whatever query it already has."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    return urlunsplit(parts._replace(query=urlencode(query)))


def allowed_redirect(url: str, allowlist: tuple[str, ...]) -> bool:
    """Does the allow-list permit `url`? An entry matches a URL with the same scheme and
    host (and port), whose path is the entry's path or below it (an entry without a
    path allows the whole origin). A query is allowed (it is kept); userinfo and
    fragments never are."""
    try:
        target = urlsplit(url)
        target.port  # noqa: B018
    except ValueError:
        return False
    if not target.scheme or target.fragment or "@" in target.netloc:
        return False
    for entry in allowlist:
        allowed = urlsplit(entry)
        if (allowed.scheme.lower(), allowed.netloc.lower()) != (
            target.scheme.lower(),
            target.netloc.lower(),
        ):
            continue
        base = allowed.path.rstrip("/")
        if not base or target.path == allowed.path or target.path.startswith(base + "/"):
            return True
    return False
