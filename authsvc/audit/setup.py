"""Wiring of the audit trail: the buffered writer and the reader, and the flush of the
buffer when the app stops."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from ..appkeys import AUDIT, AUDIT_READER, Deps
from .service import Audit, AuditReader


def setup(app: web.Application, deps: Deps) -> None:
    app[AUDIT] = Audit(
        deps.store, retention_days=deps.settings.audit_retention_days, clock=deps.clock
    )
    app[AUDIT_READER] = AuditReader(deps.store)

    async def flush_at_exit(app: web.Application) -> AsyncIterator[None]:
        yield
        await app[AUDIT].flush()

    app.cleanup_ctx.append(flush_at_exit)
