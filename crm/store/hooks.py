"""Webhook subscriptions and their deliveries: an outbox in the tenant's store.

A delivery is written in the same transaction as the change it reports (a
lead opened, an appointment booked, a repair order closed), so no change is
ever reported that did not happen, nor lost when the process stops before it
was sent. ``crm.webhooks`` sends what is due and records the outcome here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import ColumnElement, Connection, select, update

from crm.errors import Conflict, NotFound
from crm.store.base import Page, Row, StoreBase, now_us
from crm.store.tables import deliveries, webhooks

__all__ = ["HookStore", "enqueue_deliveries"]


def enqueue_deliveries(
    conn: Connection, dealer_id: int, event_type: str, payload: Mapping[str, Any]
) -> int:
    """One pending delivery per webhook of the dealer, in the caller's transaction."""
    stamp = now_us()
    hook_ids = conn.execute(select(webhooks.c.id).where(webhooks.c.dealer_id == dealer_id))
    rows = [
        {
            "webhook_id": hook_id,
            "event_type": event_type,
            "payload": dict(payload),
            "state": "pending",
            "attempts": 0,
            "last_error": None,
            "created_us": stamp,
            "due_us": stamp,
            "finished_us": None,
        }
        for (hook_id,) in hook_ids
    ]
    if rows:
        conn.execute(deliveries.insert(), rows)
    return len(rows)


class HookStore(StoreBase):
    """Webhooks of dealers and the outbox of their deliveries."""

    def create_webhook(self, dealer_id: int, url: str, secret: str) -> Row:
        with self._tx("create webhook") as conn:
            return self._insert(
                conn,
                webhooks,
                {"dealer_id": dealer_id, "url": url, "secret": secret, "created_us": now_us()},
            )

    def webhooks(self, *, dealer_id: int | None, after: int | None, limit: int) -> Page:
        where = [] if dealer_id is None else [webhooks.c.dealer_id == dealer_id]
        with self._tx("list webhooks") as conn:
            return self._page(conn, webhooks, where=where, after=after, limit=limit)

    def due_deliveries(self, limit: int) -> list[Row]:
        """Pending deliveries whose time has come, oldest first, with their webhook."""
        query = (
            select(deliveries, webhooks.c.url, webhooks.c.secret, webhooks.c.dealer_id)
            .join(webhooks, webhooks.c.id == deliveries.c.webhook_id)
            .where(deliveries.c.state == "pending", deliveries.c.due_us <= now_us())
            .order_by(deliveries.c.due_us, deliveries.c.id)
            .limit(limit)
        )
        with self._tx("read due deliveries") as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def next_due_us(self) -> int | None:
        """When the earliest pending delivery is due (``None``: nothing pending)."""
        query = select(deliveries.c.due_us).where(deliveries.c.state == "pending")
        with self._tx("read next delivery") as conn:
            return conn.execute(query.order_by(deliveries.c.due_us).limit(1)).scalar()

    def record_attempt(
        self, delivery_id: int, *, attempts: int, error: str | None, retry_at_us: int | None
    ) -> None:
        """Record one attempt: delivered (no error), retried later, or dead (no retry left)."""
        stamp = now_us()
        if error is None:
            values: dict[str, Any] = {"state": "delivered", "finished_us": stamp}
        elif retry_at_us is None:
            values = {"state": "dead", "finished_us": stamp}
        else:
            values = {"due_us": retry_at_us}
        with self._tx("record delivery attempt") as conn:
            conn.execute(
                update(deliveries)
                .where(deliveries.c.id == delivery_id)
                .values(**values, attempts=attempts, last_error=error)
            )

    def deliveries(
        self, *, dealer_id: int | None, state: str | None, after: int | None, limit: int
    ) -> Page:
        where: list[ColumnElement[bool]] = []
        if state is not None:
            where.append(deliveries.c.state == state)
        if dealer_id is not None:
            where.append(
                deliveries.c.webhook_id.in_(
                    select(webhooks.c.id).where(webhooks.c.dealer_id == dealer_id)
                )
            )
        with self._tx("list deliveries") as conn:
            return self._page(conn, deliveries, where=where, after=after, limit=limit)

    def replay(self, delivery_id: int, *, dealer_id: int | None) -> Row:
        """Send a dead letter again from its first attempt."""
        with self._tx("replay delivery") as conn:
            row = self._one(conn, deliveries, delivery_id, "delivery")
            if dealer_id is not None:
                owner = conn.execute(
                    select(webhooks.c.dealer_id).where(webhooks.c.id == row["webhook_id"])
                ).scalar()
                if owner != dealer_id:
                    raise NotFound(f"delivery {delivery_id} does not exist")
            if row["state"] != "dead":
                raise Conflict(f"delivery {delivery_id} is {row['state']}, not dead")
            conn.execute(
                update(deliveries)
                .where(deliveries.c.id == delivery_id)
                .values(state="pending", attempts=0, due_us=now_us(), finished_us=None)
            )
            return self._one(conn, deliveries, delivery_id, "delivery")
