"""The CRM's pure core: what a dealer may see, and how leads, appointments and recalls move.

No web, storage or bus library here: the store hands in plain values, the
rules below decide. The vehicle-health list evaluates the same access rule in
SQL for speed (``crm.store.access``); a test runs both over the same cases.

Access: a dealer sees a field of a vehicle only while

* a grant (dealer, vehicle, purposes, fields, valid from/to) is in force, and
* the field's purpose is among the grant's purposes, and
* the owner's consent for that purpose is in force, either for every dealer
  or for this dealer, and not withdrawn.

Times are microseconds since the Unix epoch (UTC), like the cloud's CAN times.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "DATA_FIELDS",
    "FIELD_PURPOSE",
    "PURPOSES",
    "AccessDecision",
    "ConsentTerm",
    "GrantTerm",
    "LeadState",
    "MaintenanceSchedule",
    "RecallStatus",
    "Reminder",
    "backoff_seconds",
    "decide_access",
    "in_force",
    "lead_transition",
    "maintenance_reminder",
    "recall_transition",
]

#: The purposes of the cloud's consent (``cloud.domain.Purpose``), as plain strings.
PURPOSES = frozenset({"diagnostics", "after_sales", "location", "recommendations", "analytics"})

#: Which purpose each data field a dealer can be granted serves. Raw positions and raw
#: CAN samples are no field at all: no grant can expose them.
FIELD_PURPOSE: dict[str, str] = {
    "health": "diagnostics",
    "faults": "diagnostics",
    "mileage": "after_sales",
    "service": "after_sales",
}
DATA_FIELDS = frozenset(FIELD_PURPOSE)


def in_force(valid_from_us: int, valid_to_us: int | None, now_us: int) -> bool:
    """Whether ``[valid_from, valid_to)`` holds ``now`` (no end: open-ended)."""
    return valid_from_us <= now_us and (valid_to_us is None or now_us < valid_to_us)


@dataclass(frozen=True, slots=True)
class GrantTerm:
    dealer_id: int
    purposes: frozenset[str]
    fields: frozenset[str]
    valid_from_us: int
    valid_to_us: int | None


@dataclass(frozen=True, slots=True)
class ConsentTerm:
    purpose: str
    #: ``None``: the consent covers every dealer of the automaker.
    dealer_id: int | None
    valid_from_us: int
    valid_to_us: int | None
    withdrawn_at_us: int | None = None

    def covers(self, purpose: str, dealer_id: int, now_us: int) -> bool:
        return (
            self.purpose == purpose
            and (self.dealer_id is None or self.dealer_id == dealer_id)
            and self.withdrawn_at_us is None
            and in_force(self.valid_from_us, self.valid_to_us, now_us)
        )


@dataclass(frozen=True, slots=True)
class AccessDecision:
    """The fields a dealer may read now; ``reason`` says why when there are none."""

    fields: frozenset[str]
    reason: str

    @property
    def allowed(self) -> bool:
        return bool(self.fields)


def decide_access(
    dealer_id: int,
    grants: Iterable[GrantTerm],
    consents: Iterable[ConsentTerm],
    now_us: int,
    wanted: frozenset[str] = DATA_FIELDS,
) -> AccessDecision:
    """The fields of ``wanted`` that ``dealer_id`` may read at ``now_us``."""
    live = [
        g
        for g in grants
        if g.dealer_id == dealer_id and in_force(g.valid_from_us, g.valid_to_us, now_us)
    ]
    if not live:
        return AccessDecision(frozenset(), "no grant in force for this dealer and vehicle")
    consents = list(consents)
    fields: set[str] = set()
    for grant in live:
        for name in grant.fields & wanted:
            purpose = FIELD_PURPOSE[name]
            if purpose in grant.purposes and any(
                c.covers(purpose, dealer_id, now_us) for c in consents
            ):
                fields.add(name)
    if not fields:
        return AccessDecision(frozenset(), "the owner's consent does not cover what is granted")
    return AccessDecision(frozenset(fields), "granted")


# ---------------------------------------------------------------------- leads


class LeadState(StrEnum):
    """A service lead's life: opened by an event, closed by its repair order."""

    OPEN = "open"
    PROPOSED = "proposed"  # the dealer offered appointment slots
    BOOKED = "booked"  # a slot was chosen
    IN_SERVICE = "in_service"  # a repair order is open
    CLOSED = "closed"
    CANCELLED = "cancelled"

    @property
    def is_open(self) -> bool:
        return self not in (LeadState.CLOSED, LeadState.CANCELLED)


_LEAD_MOVES: dict[LeadState, frozenset[LeadState]] = {
    LeadState.OPEN: frozenset({LeadState.PROPOSED, LeadState.CANCELLED}),
    # New slots may be proposed again while none is booked.
    LeadState.PROPOSED: frozenset({LeadState.PROPOSED, LeadState.BOOKED, LeadState.CANCELLED}),
    LeadState.BOOKED: frozenset({LeadState.IN_SERVICE, LeadState.CANCELLED}),
    LeadState.IN_SERVICE: frozenset({LeadState.CLOSED}),
    LeadState.CLOSED: frozenset(),
    LeadState.CANCELLED: frozenset(),
}


def lead_transition(current: LeadState, target: LeadState) -> LeadState:
    """``target`` if a lead in ``current`` may move there; ``ValueError`` says why not."""
    if target not in _LEAD_MOVES[current]:
        raise ValueError(f"a lead that is {current.value} cannot become {target.value}")
    return target


# ---------------------------------------------------------------------- recalls


class RecallStatus(StrEnum):
    """A recalled vehicle's progress: each step only forward."""

    OPEN = "open"
    NOTIFIED = "notified"
    BOOKED = "booked"
    DONE = "done"


_RECALL_ORDER = list(RecallStatus)


def recall_transition(current: RecallStatus, target: RecallStatus) -> RecallStatus:
    """``target`` if it is a later step than ``current``; ``ValueError`` otherwise."""
    if _RECALL_ORDER.index(target) <= _RECALL_ORDER.index(current):
        raise ValueError(f"a recall that is {current.value} cannot go back to {target.value}")
    return target


# ---------------------------------------------------------------------- maintenance

_DAY_US = 86_400_000_000


@dataclass(frozen=True, slots=True)
class MaintenanceSchedule:
    """A model's service interval, by distance and/or time, and how early to remind."""

    interval_km: float | None
    interval_days: float | None
    remind_before_km: float = 1_000.0
    remind_before_days: float = 30.0


@dataclass(frozen=True, slots=True)
class Reminder:
    """Maintenance coming due (or overdue): by what, when, at what mileage."""

    by: str  # "distance" or "time", whichever comes first
    due_at_us: int | None
    due_km: float | None
    overdue: bool


def maintenance_reminder(
    schedule: MaintenanceSchedule,
    *,
    last_service_us: int,
    last_service_km: float,
    mileage_km: float | None,
    now_us: int,
) -> Reminder | None:
    """A reminder when the vehicle is within the reminder window of its next service.

    The last service is the newest closed repair order, or the vehicle's
    registration (at 0 km) before it had any.
    """
    due_at = (
        None
        if schedule.interval_days is None
        else last_service_us + int(schedule.interval_days * _DAY_US)
    )
    due_km = None if schedule.interval_km is None else last_service_km + schedule.interval_km
    by_time = due_at is not None and now_us >= due_at - int(schedule.remind_before_days * _DAY_US)
    by_distance = (
        due_km is not None
        and mileage_km is not None
        and mileage_km >= due_km - schedule.remind_before_km
    )
    if not (by_time or by_distance):
        return None
    overdue = (due_at is not None and now_us >= due_at) or (
        due_km is not None and mileage_km is not None and mileage_km >= due_km
    )
    # Which limit comes first: the one with less of its reminder window left.
    time_left = (
        None if due_at is None else (due_at - now_us) / (schedule.remind_before_days * _DAY_US or 1)
    )
    km_left = (
        None
        if due_km is None or mileage_km is None
        else (due_km - mileage_km) / (schedule.remind_before_km or 1)
    )
    by = (
        "distance" if km_left is not None and (time_left is None or km_left < time_left) else "time"
    )
    return Reminder(by, due_at, due_km, overdue)


# ---------------------------------------------------------------------- webhooks


def backoff_seconds(attempt: int, base: float, cap: float) -> float:
    """Delay before retry ``attempt`` (1-based): ``base * 2**(attempt-1)``, at most ``cap``."""
    if attempt < 1:
        raise ValueError("attempts count from 1")
    return float(min(cap, base * 2 ** (attempt - 1)))
