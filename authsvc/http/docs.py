"""Documentation generated from the code: the route -> permission table."""

from __future__ import annotations

from ..serve.app import ROUTES
from .web import path_variables


def display_path(path: str) -> str:
    """A route path without its regular expressions: `/x/{id:[0-9]+}` -> `/x/{id}`."""
    return path_variables(path)[0]


def permission_table() -> str:
    rows = ["| method | path | permission |", "|---|---|---|"]
    for api in ROUTES:
        for ep in api.endpoints:
            perm = f"`{ep.permission}`" if ep.permission else "— (no login)"
            rows.append(f"| {ep.method} | `{display_path(ep.path)}` | {perm} |")
    return "\n".join(rows)
