"""The rules on the event bus: committed batches in, the events the rules made out.

``RulesFeed`` attaches one durable consumer, ``rules``, to each tenant's
``telehub.<tenant>.batches``. For every ``BatchCommitted`` it runs the
``RulesWorker`` over that stored batch (in a worker thread: it reads and
writes the tenant's store) and publishes each new event as a ``RuleEvent``
on ``telehub.<tenant>.events.<kind>``, with the event's stable id as its
message id. Every gateway process runs one; with NATS the processes share
the durable consumers, so each batch is processed by one of them.

At least once, made idempotent: ``Idempotent`` drops a repeat this process
handled, and the worker writes nothing for a batch it processed before (its
ledger), whichever process did. That also means a batch processed but whose
events could not be published is not processed again: the events are stored
with the results, and the notifier counts and logs what it could not publish
(as the gateway does for commits). A store failure raises, so the bus delivers
the batch again; a message that can never be processed (not an event, a
batch or vehicle the store does not hold) is counted in ``skipped`` and acked.
"""

from __future__ import annotations

import asyncio
import logging

from cloud.errors import MalformedEvent, UnknownBatch, UnknownVehicle
from cloud.events import (
    BatchCommitted,
    CommitNotifier,
    Delivery,
    EventBus,
    Idempotent,
    RuleEvent,
    Subscription,
)
from cloud.events.envelope import decode
from cloud.events.subjects import batches
from cloud.rules.worker import RulesWorker
from cloud.store import TenantRegistry

__all__ = ["DURABLE", "RulesFeed"]

logger = logging.getLogger(__name__)

#: The durable consumer every process running the rules shares, per tenant.
DURABLE = "rules"


class RulesFeed:
    """Feeds committed batches to the rules and announces the events they made."""

    def __init__(
        self,
        bus: EventBus,
        registry: TenantRegistry,
        worker: RulesWorker,
        *,
        publish_attempts: int = 3,
    ) -> None:
        self._bus = bus
        self._registry = registry
        self._worker = worker
        self.notifier = CommitNotifier(bus, attempts=publish_attempts)
        self._handler = Idempotent(self._handle)
        self._subscriptions: list[Subscription] = []
        #: Batches processed by this process.
        self.processed = 0
        #: Messages acked without processing: they never could be.
        self.skipped = 0

    @property
    def duplicates(self) -> int:
        """Deliveries dropped as already handled by this process."""
        return self._handler.duplicates

    async def start(self, tenants: list[str]) -> None:
        """Attach the ``rules`` consumer of each tenant; the bus's close detaches them."""
        for tenant in tenants:
            self._subscriptions.append(
                await self._bus.subscribe(batches(tenant), DURABLE, self._handler)
            )

    async def _handle(self, delivery: Delivery) -> None:
        try:
            committed = decode(delivery.data)
        except MalformedEvent as exc:
            self._skip(delivery, str(exc))
            return
        if not isinstance(committed, BatchCommitted):
            self._skip(delivery, f"a {committed.kind} on the batches subject")
            return
        tenant, vehicle_id = committed.tenant, committed.vehicle_id
        try:
            store = await asyncio.to_thread(self._registry.store, tenant)
            made = await asyncio.to_thread(
                self._worker.process_batch, store, vehicle_id, committed.sequence, tenant=tenant
            )
        except (UnknownVehicle, UnknownBatch) as exc:
            self._skip(delivery, str(exc))
            return
        self.processed += 1
        for event in made:
            await self.notifier.notify(
                RuleEvent(
                    tenant=tenant,
                    vehicle_id=vehicle_id,
                    id=event.id,
                    event=event.kind.value,
                    ts_us=event.ts_us,
                    severity=event.severity.value,
                    details=event.details,
                )
            )

    def _skip(self, delivery: Delivery, why: str) -> None:
        self.skipped += 1
        logger.error("rules: skipped %s on %s: %s", delivery.msg_id, delivery.subject, why)
