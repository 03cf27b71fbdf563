"""The composition root of the CRM's HTTP API: ``create_app(settings, stores)``.

The caller owns the tenant stores (``CrmStores`` over the cloud's
``TenantRegistry``) and closes them; the app owns the webhook sender, which
its lifespan starts and stops (the task is cancelled and awaited, the HTTP
session closed).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI

from crm.api.deps import Services
from crm.api.errors import install_error_handlers
from crm.api.health_pages import HealthPages
from crm.api.routes import audit as audit_routes
from crm.api.routes import (
    consents,
    customers,
    dealers,
    leads,
    maintenance,
    recalls,
    system,
    vehicles,
)
from crm.api.routes import webhooks as webhook_routes
from crm.audit import AuditWriter
from crm.config import CrmSettings
from crm.keycache import KeyCache
from crm.store import CrmStores
from crm.webhooks import WebhookSender

__all__ = ["create_app"]

_DESCRIPTION = """\
The dealer CRM of telehub. Every route but `/health` needs a bearer credential:
an API key (`thk_<tenant>.<id>.<secret>`) or a token from `/v1/oauth/token`.
A dealer sees a vehicle only through a grant in force while the owner's consent
allows it, never positions or raw samples; every read is audited. Lists take
`after` and `limit`; updates take `If-Match` with the ETag read. Errors have one
body: `{"error": {"code", "message", "details"}}`.
"""


def create_app(
    settings: CrmSettings, stores: CrmStores, *, deliver_webhooks: bool = True
) -> FastAPI:
    """The CRM app; ``deliver_webhooks=False`` leaves deliveries to the caller (tests)."""
    sender = WebhookSender(stores, settings)
    audit_writer = AuditWriter(stores)
    health = HealthPages(settings)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(sender.run()) if deliver_webhooks else None
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await sender.close()
            await health.close()
            # Every answer already waited for its audit row; this stops the thread.
            await asyncio.to_thread(audit_writer.close)

    app = FastAPI(
        title="telehub CRM",
        version="1",
        description=_DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.services = Services(
        settings, stores, sender, audit_writer, KeyCache(settings.key_cache_seconds), health
    )
    install_error_handlers(app)
    for module in (
        system, dealers, customers, vehicles, consents, leads, maintenance, recalls,
        webhook_routes, audit_routes,
    ):  # fmt: skip
        app.include_router(module.router)
    return app
