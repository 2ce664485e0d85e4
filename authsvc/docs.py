"""Documentation generated from the code: the route -> permission table."""

from __future__ import annotations

from .app import ROUTES


def display_path(path: str) -> str:
    """A route path without its regular expressions: `/x/{id:[0-9]+}` -> `/x/{id}`."""
    out, i = [], 0
    while i < len(path):
        if path[i] != "{":
            out.append(path[i])
            i += 1
            continue
        depth, j = 0, i
        while True:
            depth += {"{": 1, "}": -1}.get(path[j], 0)
            if depth == 0:
                break
            j += 1
        out.append("{" + path[i + 1 : j].split(":", 1)[0] + "}")
        i = j + 1
    return "".join(out)


def permission_table() -> str:
    rows = ["| method | path | permission |", "|---|---|---|"]
    for api in ROUTES:
        for ep in api.endpoints:
            perm = f"`{ep.permission}`" if ep.permission else "— (no login)"
            rows.append(f"| {ep.method} | `{display_path(ep.path)}` | {perm} |")
    return "\n".join(rows)
