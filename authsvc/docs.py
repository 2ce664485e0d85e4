"""Documentation generated from the code: the route -> permission table."""

from __future__ import annotations

from .app import ROUTES


def permission_table() -> str:
    rows = ["| method | path | permission |", "|---|---|---|"]
    for api in ROUTES:
        for ep in api.endpoints:
            perm = f"`{ep.permission}`" if ep.permission else "— (no login)"
            rows.append(f"| {ep.method} | `{ep.path}` | {perm} |")
    return "\n".join(rows)
