"""Prometheus metrics (prometheus-client), served at GET /metrics (authsvc.health).
This module imports nothing of authsvc's, so the store layer can count its steps.

The metric objects are module-level, as prometheus-client intends: one set per process.
When PROMETHEUS_MULTIPROC_DIR is set (the workers of `serve --workers N`: the
supervisor sets it), each process writes its values there and a scrape of any of them
answers for all, through prometheus-client's multiprocess collector; the per-process
process_* and python_* metrics are then left out, as they cannot be summed.

Security events are counted where they are recorded (`audit.Audit.record` calls
`count_event`), so the counters and the audit trail cannot disagree."""

from __future__ import annotations

import os

from aiohttp import web
from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

HTTP_REQUESTS = Counter(
    "authsvc_http_requests_total", "HTTP requests answered", ("method", "route", "status")
)
HTTP_SECONDS = Histogram(
    "authsvc_http_request_duration_seconds",
    "Time to answer an HTTP request",
    ("method", "route"),
    buckets=_LATENCY_BUCKETS,
)
LOGINS = Counter("authsvc_logins_total", "Password logins by result", ("result",))
OIDC_PROVIDER_REQUESTS = Counter(
    "authsvc_oidc_provider_requests_total",
    "Requests to OIDC providers (sign-in): kind discovery/jwks/token, result the HTTP "
    "status or error",
    ("kind", "result"),
)
RATE_LIMITED = Counter(
    "authsvc_rate_limited_total", "Requests refused with 429 (any limit)", ("route",)
)
REFRESH_REUSE = Counter(
    "authsvc_refresh_reuse_detected_total",
    "Spent refresh tokens presented after the reuse window (sessions revoked as theft)",
)
SECURITY_EVENTS = Counter(
    "authsvc_security_events_total", "Audit events recorded, by action", ("action",)
)
STORE_SECONDS = Histogram(
    "authsvc_store_step_seconds",
    "Time of one store step (a command, pipeline or script, with its round trips)",
    ("step",),
    buckets=(0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2.0),
)
STORE_ERRORS = Counter(
    "authsvc_store_errors_total", "Store steps that failed (outage or timeout)", ("kind",)
)

# Set by health.ActiveSessions, which also exposes it itself in a single process (nothing
# before the first count, where a registered gauge would say 0). Under --workers each
# worker counts the same store at its own times, so the right value is the latest count:
# "mostrecent"; "sum"/"livesum" would multiply it by the workers, "max"/"livemax" keep an
# old peak until that worker counts again. Not "live...": a count stays true after the
# worker that took it exits.
SESSIONS_ACTIVE_NAME = "authsvc_sessions_active"
SESSIONS_ACTIVE_HELP = "Live login sessions (counted in the store)"
SESSIONS_ACTIVE = Gauge(
    SESSIONS_ACTIVE_NAME, SESSIONS_ACTIVE_HELP, multiprocess_mode="mostrecent", registry=None
)
# prometheus-client too picks its mode from the environment once, at import.
MULTIPROCESS = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))

_LOGIN_RESULTS = {"login_success": "success", "login_failure": "failure"}
_route_children: dict[tuple[str, str, int], tuple] = {}


def count_event(action: str) -> None:
    SECURITY_EVENTS.labels(action).inc()
    result = _LOGIN_RESULTS.get(action)
    if result is not None:
        LOGINS.labels(result).inc()
    elif action == "refresh_reuse_detected":
        REFRESH_REUSE.inc()


def _route_of(request: web.Request) -> str:
    info = request.match_info
    resource = info.route.resource if info.http_exception is None else None
    return resource.canonical if resource is not None else "unmatched"


def observe_request(request: web.Request, status: int, seconds: float) -> None:
    key = (request.method, _route_of(request), status)
    children = _route_children.get(key)
    if children is None:  # label lookups cost more than the observations: cache them
        method, route, _ = key
        children = (
            HTTP_REQUESTS.labels(method, route, str(status)),
            HTTP_SECONDS.labels(method, route),
        )
        if len(_route_children) < 10_000:
            _route_children[key] = children
    children[0].inc()
    children[1].observe(seconds)
    if status == 429:
        RATE_LIMITED.labels(key[1]).inc()


def exposition(*extra_collectors) -> bytes:
    """This process's metrics (every worker's under --workers N) in the text format."""
    if MULTIPROCESS:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    body = generate_latest(registry)
    if extra_collectors:
        extra = CollectorRegistry()
        for collector in extra_collectors:
            extra.register(collector)
        body += generate_latest(extra)
    return body
