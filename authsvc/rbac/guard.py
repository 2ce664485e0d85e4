"""The last-admin guard: someone can always do everything.

A user *holds `*`* when they can act (an active local account, guests and accounts made
by an OIDC provider included, or an external user no administrator disabled) and the
roles granted to them in the store expand to `*`. Every change that could take `*` from
someone runs through here: disabling or deleting an account or a Keycloak user (by an
administrator, or by its owner), removing a role from a user (by an administrator, or by
an OIDC provider's role mapping at sign-in: authsvc.federation), and redefining a role.
Each is refused with 409 when it would leave no one holding `*` (`last_admin`; the role
sync keeps the role instead); an administrator also cannot disable or delete their own
account through the admin routes, nor remove a role granting `*` from themselves
(`self_lockout`): another administrator must.

Race safety: the check and the change run while holding the store's superuser lease,
so two administrators removing each other at once are serialized, and the second sees
the first's change. (They cannot be one Lua step: the accounts involved live in
different cluster slots.) Changes that only add holders (grants, enabling) need no
lease: they can only make a check's "someone else still holds it" more true."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping

from ..errors import Code, Conflict
from ..store.rbac import LeaseBusy, RbacStore
from .permissions import expand

ALL = "*"
_PAGE = 100


def superuser_roles(definitions: Mapping[str, dict]) -> set[str]:
    """The roles that give `*`, directly or by inheritance."""
    return {name for name in definitions if ALL in expand([name], definitions)}


class SuperuserGuard:
    def __init__(self, *, store: RbacStore) -> None:
        self._store = store

    @contextlib.asynccontextmanager
    async def _lease(self) -> AsyncIterator[None]:
        try:
            async with self._store.superuser_lease():
                yield
        except LeaseBusy:
            raise Conflict("another change to administrators is in progress; retry") from None

    @contextlib.asynccontextmanager
    async def removing(
        self, user_id: str, *, actor: str | None, role: str | None = None
    ) -> AsyncIterator[None]:
        """Run the body (which disables or deletes `user_id`, or with `role` removes that
        role from them) only if that leaves someone holding `*`. `actor` is the
        administrator doing it; None when the user deletes their own account."""
        async with self._lease():
            definitions = await self._store.roles()
            roles = await self._store.live_roles(user_id) or set()
            if role is None:
                if actor == user_id:
                    raise Conflict(
                        "you cannot disable or delete your own account here; another "
                        "administrator can",
                        code=Code.SELF_LOCKOUT,
                    )
                after: set[str] = set()
            else:
                if actor == user_id and role in roles and role in superuser_roles(definitions):
                    raise Conflict(
                        f"you cannot remove '{role}' from yourself: it grants '*'; another "
                        "administrator can",
                        code=Code.SELF_LOCKOUT,
                    )
                after = roles - {role}
            loses_all = ALL in expand(roles, definitions) and ALL not in expand(after, definitions)
            if loses_all and not await self._holder_exists(definitions, excluding=user_id):
                raise _last_admin()
            yield

    @contextlib.asynccontextmanager
    async def redefining(self) -> AsyncIterator[None]:
        """Hold the lease while role definitions change; call `check_definitions` in the
        body before writing."""
        async with self._lease():
            yield

    async def check_definitions(
        self, current: Mapping[str, dict], updates: Mapping[str, dict | None]
    ) -> None:
        """Refuse updated definitions under which no one would hold `*` any more."""
        after = {**current, **updates}
        after = {name: d for name, d in after.items() if d is not None}
        if superuser_roles(current) <= superuser_roles(after):
            return  # no role stops granting `*`
        if not await self._holder_exists(after) and await self._holder_exists(current):
            raise _last_admin()

    async def _holder_exists(
        self, definitions: Mapping[str, dict], *, excluding: str | None = None
    ) -> bool:
        """Does a user other than `excluding` hold `*` under `definitions`? Walks the
        members index of each role giving `*` (derived, so each member's own roles are
        read, the truth) and stops at the first holder found."""
        for role in sorted(superuser_roles(definitions)):
            after = ""
            while True:
                page = await self._store.members(role, after=after, limit=_PAGE)
                for user_id in page:
                    if user_id == excluding:
                        continue
                    roles = await self._store.live_roles(user_id)
                    if roles and ALL in expand(roles, definitions):
                        return True
                if len(page) < _PAGE:
                    break
                after = page[-1]
        return False


def _last_admin() -> Conflict:
    return Conflict(
        "this would leave no one holding '*' (every permission); grant a role with '*' to "
        "another user first",
        code=Code.LAST_ADMIN,
    )
