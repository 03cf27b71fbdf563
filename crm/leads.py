"""The CRM's entry point for rule events: ``LeadService.on_event(tenant, event)``.

A bus consumer calls it for every event the cloud's rules raise (it is
synchronous, blocking on the tenant's database: an asyncio consumer goes
through ``asyncio.to_thread``). Only a fault code set and a maintenance due
open a lead, at the owner's chosen dealer and only while the owner's
after-sales consent covers that dealer; while the vehicle has an open lead
there, further events join it. Handling is idempotent by event id: the
ledger row and the lead are written in one transaction, so an event
delivered twice (at-least-once bus) opens at most one lead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from cloud.rules.events import Event, EventKind
from crm.errors import Conflict
from crm.store import CrmStores, LeadOutcome, Row

__all__ = ["LEAD_KINDS", "LeadResult", "LeadService"]

#: The rule events that call for the workshop.
LEAD_KINDS = frozenset({EventKind.FAULT_SET, EventKind.MAINTENANCE_DUE})


@dataclass(frozen=True, slots=True)
class LeadResult:
    """What happened to one event: ``outcome`` is a ``LeadOutcome`` value or ``ignored``."""

    outcome: str
    lead_id: int | None = None


def reason_of(event: Event) -> str:
    """A line a service advisor reads: what the car reported."""
    if event.kind is EventKind.FAULT_SET:
        code = event.details.get("code", "?")
        return f"fault code {code} set ({event.severity.value})"
    due = event.details.get("reason", "schedule")
    return f"maintenance due by {due}"


class LeadService:
    """Turns rule events into service leads in the event's tenant's store."""

    def __init__(self, stores: CrmStores, *, opened: Callable[[], None] | None = None) -> None:
        """``opened`` is called after a lead was opened (its webhook delivery is queued):
        in the CRM's process, ``WebhookSender.wake`` sends it at once."""
        self._stores = stores
        self._opened = opened

    def on_event(self, tenant: str, event: Event) -> LeadResult:
        """Open or join a lead for ``event``; calling it again with the same event changes
        nothing and returns the same result."""
        if event.kind not in LEAD_KINDS:
            return LeadResult("ignored")
        store = self._stores.store(tenant)
        odometer = event.details.get("odometer_km")
        args = (
            event.id,
            event.kind.value,
            event.vehicle_id,
            reason_of(event),
            float(odometer) if isinstance(odometer, int | float) else None,
        )
        try:
            outcome, lead = store.open_lead_from_event(*args)
        except Conflict:
            # Another consumer recorded the same event id first: read its result.
            outcome, lead = store.open_lead_from_event(*args)
        if outcome == LeadOutcome.OPENED and self._opened is not None:
            self._opened()
        return LeadResult(outcome, _id(lead))


def _id(lead: Row | None) -> int | None:
    return None if lead is None else int(lead["id"])


__all__ += ["LeadOutcome", "reason_of"]
