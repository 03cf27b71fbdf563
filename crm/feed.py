"""The CRM on the event bus: rule events in, service leads out.

``LeadFeed`` attaches one durable consumer, ``crm-leads``, to each tenant's
``telehub.<tenant>.events.>`` and hands every ``RuleEvent`` to
``LeadService.on_event`` (in a worker thread: it reads and writes the tenant's
store). Kinds that open no lead are ignored there. Delivery is at least once;
``Idempotent`` drops a repeat this process handled, and ``on_event`` records
each event id with its outcome in the tenant's store, so a repeat handled by
another process changes nothing either. A store failure raises, so the bus
delivers the event again; a message that is not a rule event is counted in
``skipped`` and acked.
"""

from __future__ import annotations

import asyncio
import logging

from cloud.errors import MalformedEvent
from cloud.events import Delivery, EventBus, Idempotent, RuleEvent, Subscription
from cloud.events.envelope import decode
from cloud.events.subjects import ROOT, check_durable
from cloud.rules.events import Event, EventKind, Severity
from crm.leads import LeadService

__all__ = ["DURABLE", "LeadFeed"]

_log = logging.getLogger(__name__)

DURABLE = check_durable("crm-leads")


def rule_event(envelope: RuleEvent) -> Event | None:
    """The rules' own event from its bus envelope; ``None`` for a kind this CRM does not know."""
    try:
        kind, severity = EventKind(envelope.event), Severity(envelope.severity)
    except ValueError:
        return None
    details = dict(envelope.details)
    return Event(envelope.id, kind, envelope.vehicle_id, envelope.ts_us, severity, details)


class LeadFeed:
    """Feeds each tenant's rule events to ``LeadService.on_event``."""

    def __init__(self, bus: EventBus, leads: LeadService) -> None:
        self._bus = bus
        self._leads = leads
        self._handler = Idempotent(self._handle)
        self._subscriptions: list[Subscription] = []
        #: Events handed to the CRM (whatever their outcome).
        self.handled = 0
        #: Messages acked without handling: they never could be.
        self.skipped = 0

    async def start(self, tenants: list[str]) -> None:
        """Attach the ``crm-leads`` consumer of each tenant; the bus's close detaches them."""
        for tenant in tenants:
            subject = f"{ROOT}.{tenant}.events.>"
            self._subscriptions.append(await self._bus.subscribe(subject, DURABLE, self._handler))

    async def _handle(self, delivery: Delivery) -> None:
        try:
            envelope = decode(delivery.data)
        except MalformedEvent as exc:
            self._skip(delivery, str(exc))
            return
        if not isinstance(envelope, RuleEvent):
            self._skip(delivery, f"a {envelope.kind} on an events subject")
            return
        event = rule_event(envelope)
        if event is None:
            self._skip(delivery, f"unknown rule event kind {envelope.event!r}")
            return
        await asyncio.to_thread(self._leads.on_event, envelope.tenant, event)
        self.handled += 1

    def _skip(self, delivery: Delivery, why: str) -> None:
        self.skipped += 1
        _log.error("crm: skipped %s on %s: %s", delivery.msg_id, delivery.subject, why)
