"""Permissions and the seeded roles.

A permission is `resource:action`. A grant of `resource:*` covers every action on the
resource, and `*` covers everything. Roles are data in the store (`rbac:roles`); these
are only the defaults seeded when missing, and the ones that cannot be deleted."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

BUILTIN_ROLES: dict[str, dict] = {
    "admin": {"permissions": ["*"], "inherits": [], "description": "everything"},
    "user": {
        "permissions": [
            "characters:read",
            "characters:write",
            "profile:read",
            "profile:write",
            "sessions:manage",
            "favorites:read",
            "favorites:write",
            "social:read",
            "social:write",
            "apikeys:manage",
            "activity:read",
        ],
        "inherits": [],
        "description": "a standard player or user",
    },
    "guest": {
        "permissions": [
            "characters:read",
            "profile:read",
            "favorites:read",
            "social:read",
            "sessions:manage",
        ],
        "inherits": [],
        "description": "read-only",
    },
    "customer": {
        "permissions": ["orders:own"],
        "inherits": ["user"],
        "description": "places orders (identity design)",
    },
    "manager": {
        "permissions": ["orders:manage", "users:read"],
        "inherits": ["customer"],
        "description": "manages orders and products (identity design)",
    },
    "service": {
        "permissions": ["tokens:introspect"],
        "inherits": [],
        "description": "another service verifying tokens through authsvc",
    },
}


def grants(held: frozenset[str] | set[str], needed: str) -> bool:
    if needed in held or "*" in held:
        return True
    resource = needed.split(":", 1)[0]
    return f"{resource}:*" in held


def expand(roles: Iterable[str], definitions: Mapping[str, dict]) -> frozenset[str]:
    """Every permission the roles give, inheritance included (unknown roles give none)."""
    out: set[str] = set()
    seen: set[str] = set()
    stack = list(roles)
    while stack:
        name = stack.pop()
        if name in seen or name not in definitions:
            continue
        seen.add(name)
        out.update(definitions[name].get("permissions", ()))
        stack.extend(definitions[name].get("inherits", ()))
    return frozenset(out)


def find_cycle(definitions: Mapping[str, dict]) -> list[str] | None:
    """A cycle of inheritance (as a path), or None."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(name: str, path: list[str]) -> list[str] | None:
        if state.get(name) == 1:
            return [*path[path.index(name) :], name]
        if state.get(name) == 2 or name not in definitions:
            return None
        state[name] = 1
        for parent in definitions[name].get("inherits", ()):
            found = visit(parent, [*path, name])
            if found:
                return found
        state[name] = 2
        return None

    for role in definitions:
        found = visit(role, [])
        if found:
            return found
    return None
