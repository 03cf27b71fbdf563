"""The service loop: leads opened by rule events, appointment slots, repair orders, the
service history, and recall campaigns with their per-vehicle status.

Each state change is one transaction with the webhook deliveries that report it
(``crm.store.hooks.enqueue_deliveries``). The lead's moves are checked by the
pure ``crm.domain.lead_transition``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import ColumnElement, Connection, and_, exists, func, or_, select, update

from crm.domain import LeadState, RecallStatus, lead_transition, recall_transition
from crm.errors import Conflict, InvalidInput, NotFound, PreconditionFailed
from crm.store.access import visible_to_dealer
from crm.store.base import Page, Row, StoreBase, now_us
from crm.store.hooks import enqueue_deliveries
from crm.store.tables import (
    appointments,
    consents,
    grants,
    lead_events,
    leads,
    maintenance_schedules,
    recall_vehicles,
    recalls,
    repair_orders,
    vehicles,
)

__all__ = ["LeadOutcome", "MaintenanceStore", "ServiceStore"]

_OPEN_STATES = [state.value for state in LeadState if state.is_open]


class LeadOutcome:
    """What ``open_lead_from_event`` did with one event."""

    OPENED = "opened"  # a new lead at the owner's dealer
    MERGED = "merged"  # the vehicle already had an open lead there: the event joined it
    NO_VEHICLE = "no_vehicle"  # no CRM vehicle carries this telemetry id
    NO_DEALER = "no_dealer"  # the owner chose no dealer
    NO_CONSENT = "no_consent"  # the owner's after-sales consent does not cover that dealer


def _move(conn: Connection, lead: Row, target: LeadState) -> Row:
    try:
        lead_transition(LeadState(lead["state"]), target)
    except ValueError as exc:
        raise Conflict(f"lead {lead['id']}: {exc}") from exc
    closed = now_us() if target in (LeadState.CLOSED, LeadState.CANCELLED) else None
    conn.execute(
        update(leads)
        .where(leads.c.id == lead["id"])
        .values(state=target.value, closed_us=closed, version=leads.c.version + 1)
    )
    return StoreBase._one(conn, leads, lead["id"], "lead")


def _owned(row: Row, dealer_id: int | None, what: str, what_id: int | None = None) -> Row:
    """``row`` if it is ``dealer_id``'s (or the caller is an admin); else ``NotFound``
    naming ``what`` (``what_id`` when the row is the lead behind it, e.g. an appointment)."""
    # Another dealer's lead is reported as absent, not as forbidden: its existence is
    # already information about someone else's customer.
    if dealer_id is not None and row["dealer_id"] != dealer_id:
        raise NotFound(f"{what} {row['id'] if what_id is None else what_id} does not exist")
    return row


class ServiceStore(StoreBase):
    """Leads, appointments, repair orders and recalls of one tenant."""

    # ------------------------------------------------------------------ leads

    def open_lead_from_event(
        self, event_id: str, kind: str, telemetry_id: str, reason: str, odometer_km: float | None
    ) -> tuple[str, Row | None]:
        """Open (or join) a lead for a rule event; the same event id is handled once."""
        stamp = now_us()
        with self._tx("open lead") as conn:
            seen = conn.execute(
                select(lead_events.c.outcome, lead_events.c.lead_id).where(
                    lead_events.c.event_id == event_id
                )
            ).first()
            if seen is not None:
                lead = None if seen.lead_id is None else self._one(conn, leads, seen.lead_id, "")
                return seen.outcome, lead
            outcome, lead = self._lead_for(conn, telemetry_id, kind, reason, odometer_km, stamp)
            conn.execute(
                lead_events.insert().values(
                    event_id=event_id,
                    lead_id=None if lead is None else lead["id"],
                    kind=kind,
                    outcome=outcome,
                    received_us=stamp,
                )
            )
            return outcome, lead

    def _lead_for(
        self,
        conn: Connection,
        telemetry_id: str,
        kind: str,
        reason: str,
        odometer_km: float | None,
        stamp: int,
    ) -> tuple[str, Row | None]:
        # The row lock (PostgreSQL) keeps two events of one vehicle from opening two leads.
        vehicle = conn.execute(
            select(vehicles).where(vehicles.c.telemetry_id == telemetry_id).with_for_update()
        ).first()
        if vehicle is None:
            return LeadOutcome.NO_VEHICLE, None
        if odometer_km is not None:
            conn.execute(
                update(vehicles).where(vehicles.c.id == vehicle.id).values(mileage_km=odometer_km)
            )
        dealer_id = vehicle.preferred_dealer_id
        if dealer_id is None:
            return LeadOutcome.NO_DEALER, None
        c = consents.c
        consented = conn.execute(
            select(
                exists().where(
                    c.vehicle_id == vehicle.id,
                    c.purpose == "after_sales",
                    or_(c.dealer_id.is_(None), c.dealer_id == dealer_id),
                    c.withdrawn_at_us.is_(None),
                    c.valid_from_us <= stamp,
                    or_(c.valid_to_us.is_(None), c.valid_to_us > stamp),
                )
            )
        ).scalar()
        if not consented:
            return LeadOutcome.NO_CONSENT, None
        open_lead = conn.execute(
            select(leads).where(
                leads.c.vehicle_id == vehicle.id,
                leads.c.dealer_id == dealer_id,
                leads.c.state.in_(_OPEN_STATES),
            )
        ).first()
        if open_lead is not None:
            return LeadOutcome.MERGED, dict(open_lead._mapping)
        lead = self._insert(
            conn,
            leads,
            {
                "vehicle_id": vehicle.id,
                "dealer_id": dealer_id,
                "kind": kind,
                "reason": reason,
                "state": LeadState.OPEN.value,
                "opened_us": stamp,
                "closed_us": None,
                "version": 1,
            },
        )
        enqueue_deliveries(
            conn, dealer_id, "lead.opened", {"lead_id": lead["id"], "vin": vehicle.vin,
                                             "kind": kind, "reason": reason},
        )  # fmt: skip
        return LeadOutcome.OPENED, lead

    def lead(self, lead_id: int, *, dealer_id: int | None) -> Row:
        with self._tx("read lead") as conn:
            return _owned(self._one(conn, leads, lead_id, "lead"), dealer_id, "lead")

    def leads(
        self,
        *,
        dealer_id: int | None,
        state: str | None,
        vehicle_id: int | None,
        after: int | None,
        limit: int,
    ) -> Page:
        where: list[ColumnElement[bool]] = []
        if dealer_id is not None:
            where.append(leads.c.dealer_id == dealer_id)
        if state is not None:
            where.append(leads.c.state == state)
        if vehicle_id is not None:
            where.append(leads.c.vehicle_id == vehicle_id)
        with self._tx("list leads") as conn:
            return self._page(conn, leads, where=where, after=after, limit=limit)

    def cancel_lead(self, lead_id: int, *, dealer_id: int | None) -> Row:
        with self._tx("cancel lead") as conn:
            lead = _owned(self._one(conn, leads, lead_id, "lead"), dealer_id, "lead")
            return _move(conn, lead, LeadState.CANCELLED)

    # ------------------------------------------------------------------ appointments

    def propose_slots(
        self, lead_id: int, slots: Sequence[Mapping[str, Any]], *, dealer_id: int | None
    ) -> list[Row]:
        """The dealer offers appointment slots for the lead; earlier offers stay listed."""
        for slot in slots:
            if slot["end_us"] <= slot["start_us"]:
                raise InvalidInput("an appointment slot must end after it starts")
        with self._tx("propose slots") as conn:
            lead = _owned(self._one(conn, leads, lead_id, "lead"), dealer_id, "lead")
            _move(conn, lead, LeadState.PROPOSED)
            return [
                self._insert(
                    conn,
                    appointments,
                    {**slot, "lead_id": lead_id, "state": "proposed", "version": 1},
                )
                for slot in slots
            ]

    def appointments(self, lead_id: int, *, dealer_id: int | None) -> list[Row]:
        with self._tx("list appointments") as conn:
            _owned(self._one(conn, leads, lead_id, "lead"), dealer_id, "lead")
            query = select(appointments).where(appointments.c.lead_id == lead_id)
            return [dict(r._mapping) for r in conn.execute(query.order_by(appointments.c.id))]

    def book(self, appointment_id: int, *, dealer_id: int | None) -> Row:
        """Book one proposed slot; the lead's other slots are declined."""
        with self._tx("book appointment") as conn:
            slot = self._one(conn, appointments, appointment_id, "appointment")
            lead = self._one(conn, leads, slot["lead_id"], "lead")
            _owned(lead, dealer_id, "appointment", appointment_id)
            if slot["state"] != "proposed":
                raise Conflict(f"appointment {appointment_id} is {slot['state']}")
            _move(conn, lead, LeadState.BOOKED)
            conn.execute(
                update(appointments)
                .where(appointments.c.lead_id == lead["id"], appointments.c.state == "proposed")
                .values(state="declined", version=appointments.c.version + 1)
            )
            conn.execute(
                update(appointments)
                .where(appointments.c.id == appointment_id)
                .values(state="booked")
            )
            booked = self._one(conn, appointments, appointment_id, "appointment")
            enqueue_deliveries(
                conn, lead["dealer_id"], "appointment.booked",
                {"lead_id": lead["id"], "appointment_id": appointment_id,
                 "start_us": booked["start_us"], "end_us": booked["end_us"]},
            )  # fmt: skip
            return booked

    # ------------------------------------------------------------------ repair orders

    def open_repair_order(self, appointment_id: int, concern: str, *, dealer_id: int | None) -> Row:
        """The booked appointment becomes a repair order; the lead is in service."""
        with self._tx("open repair order") as conn:
            slot = self._one(conn, appointments, appointment_id, "appointment")
            lead = self._one(conn, leads, slot["lead_id"], "lead")
            _owned(lead, dealer_id, "appointment", appointment_id)
            if slot["state"] != "booked":
                raise Conflict(f"appointment {appointment_id} is {slot['state']}, not booked")
            _move(conn, lead, LeadState.IN_SERVICE)
            return self._insert(
                conn,
                repair_orders,
                {
                    "lead_id": lead["id"],
                    "appointment_id": appointment_id,
                    "vehicle_id": lead["vehicle_id"],
                    "dealer_id": lead["dealer_id"],
                    "concern": concern,
                    "cause": "",
                    "correction": "",
                    "parts": [],
                    "labour_hours": 0.0,
                    "mileage_km": None,
                    "state": "open",
                    "opened_us": now_us(),
                    "closed_us": None,
                    "version": 1,
                },
            )

    def repair_order(self, order_id: int, *, dealer_id: int | None) -> Row:
        with self._tx("read repair order") as conn:
            row = self._one(conn, repair_orders, order_id, "repair order")
            return _owned(row, dealer_id, "repair order")

    def update_repair_order(
        self, order_id: int, version: int, values: Mapping[str, Any], *, dealer_id: int | None
    ) -> Row:
        with self._tx("update repair order") as conn:
            row = _owned(self._one(conn, repair_orders, order_id, "repair order"), dealer_id,
                         "repair order")  # fmt: skip
            if row["state"] != "open":
                raise Conflict(f"repair order {order_id} is closed")
            return self._update_versioned(
                conn, repair_orders, order_id, version, values, "repair order"
            )

    def close_repair_order(
        self, order_id: int, version: int, *, dealer_id: int | None
    ) -> tuple[Row, Row]:
        """Close the order and its lead; returns the order and its vehicle (for the cloud)."""
        with self._tx("close repair order") as conn:
            row = _owned(self._one(conn, repair_orders, order_id, "repair order"), dealer_id,
                         "repair order")  # fmt: skip
            if row["state"] != "open":
                raise Conflict(f"repair order {order_id} is already closed")
            closed = self._update_versioned(
                conn, repair_orders, order_id, version,
                {"state": "closed", "closed_us": now_us()}, "repair order",
            )  # fmt: skip
            _move(conn, self._one(conn, leads, row["lead_id"], "lead"), LeadState.CLOSED)
            if closed["mileage_km"] is not None:
                conn.execute(
                    update(vehicles)
                    .where(vehicles.c.id == row["vehicle_id"])
                    .values(mileage_km=closed["mileage_km"])
                )
            enqueue_deliveries(
                conn, row["dealer_id"], "repair_order.closed",
                {"repair_order_id": order_id, "lead_id": row["lead_id"]},
            )  # fmt: skip
            return closed, self._one(conn, vehicles, row["vehicle_id"], "vehicle")

    def service_history(self, vehicle_id: int) -> list[Row]:
        """The vehicle's closed repair orders, newest first, at every dealer."""
        query = (
            select(repair_orders)
            .where(repair_orders.c.vehicle_id == vehicle_id, repair_orders.c.state == "closed")
            .order_by(repair_orders.c.closed_us.desc())
        )
        with self._tx("read service history") as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    # ------------------------------------------------------------------ recalls

    def create_recall(self, code: str, title: str, vins: Sequence[str]) -> Row:
        stamp = now_us()
        with self._tx("create recall") as conn:
            recall = self._insert(
                conn, recalls, {"code": code, "title": title, "created_us": stamp}
            )
            conn.execute(
                recall_vehicles.insert(),
                [
                    {"recall_id": recall["id"], "vin": vin, "status": "open",
                     "updated_us": stamp, "version": 1}
                    for vin in sorted(set(vins))
                ],
            )  # fmt: skip
            recall["vehicles"] = len(set(vins))
            return recall

    def recalls(self, *, after: int | None, limit: int) -> Page:
        with self._tx("list recalls") as conn:
            return self._page(conn, recalls, where=[], after=after, limit=limit)

    def recall_vehicles(self, recall_id: int, *, dealer_id: int | None) -> list[Row]:
        """The campaign's vehicles; a dealer sees those it holds a grant in force on."""
        query = select(recall_vehicles).where(recall_vehicles.c.recall_id == recall_id)
        if dealer_id is not None:
            stamp = now_us()
            g = grants.c
            query = query.where(
                recall_vehicles.c.vin.in_(
                    select(vehicles.c.vin)
                    .join(grants, g.vehicle_id == vehicles.c.id)
                    .where(
                        and_(
                            g.dealer_id == dealer_id,
                            g.valid_from_us <= stamp,
                            or_(g.valid_to_us.is_(None), g.valid_to_us > stamp),
                        )
                    )
                )
            )
        with self._tx("list recall vehicles") as conn:
            self._one(conn, recalls, recall_id, "recall")
            return [dict(r._mapping) for r in conn.execute(query.order_by(recall_vehicles.c.vin))]

    def set_recall_status(self, recall_id: int, vin: str, version: int, status: str) -> Row:
        rv = recall_vehicles.c
        with self._tx("update recall status") as conn:
            row = conn.execute(
                select(recall_vehicles).where(rv.recall_id == recall_id, rv.vin == vin)
            ).first()
            if row is None:
                raise NotFound(f"vehicle {vin} is not in recall {recall_id}")
            try:
                recall_transition(RecallStatus(row.status), RecallStatus(status))
            except ValueError as exc:
                raise Conflict(str(exc)) from exc
            changed = conn.execute(
                update(recall_vehicles)
                .where(rv.recall_id == recall_id, rv.vin == vin, rv.version == version)
                .values(status=status, updated_us=now_us(), version=rv.version + 1)
                .returning(*recall_vehicles.c)
            ).first()
            if changed is None:
                raise PreconditionFailed(
                    f"recall {recall_id} vehicle {vin} is at version {row.version}, not {version}"
                )
            return dict(changed._mapping)


class MaintenanceStore(StoreBase):
    """Service schedules per model and the vehicles whose maintenance comes due."""

    def put_schedule(self, model: str, values: Mapping[str, Any], version: int | None) -> Row:
        """Create the model's schedule (``version`` None) or replace it at ``version``."""
        s = maintenance_schedules.c
        with self._tx("store maintenance schedule") as conn:
            if version is None:
                return self._insert(
                    conn, maintenance_schedules, {**values, "model": model, "version": 1}
                )
            changed = conn.execute(
                update(maintenance_schedules)
                .where(s.model == model, s.version == version)
                .values(**values, version=s.version + 1)
                .returning(*maintenance_schedules.c)
            ).first()
            if changed is None:
                raise PreconditionFailed(f"the schedule of {model!r} is not at version {version}")
            return dict(changed._mapping)

    def schedule(self, model: str) -> Row:
        with self._tx("read maintenance schedule") as conn:
            row = conn.execute(
                select(maintenance_schedules).where(maintenance_schedules.c.model == model)
            ).first()
            if row is None:
                raise NotFound(f"model {model!r} has no maintenance schedule")
            return dict(row._mapping)

    def reminder_candidates(
        self, dealer_id: int | None, *, after: int | None, limit: int
    ) -> list[Row]:
        """Vehicles with a schedule, their last service, in id order (a dealer: its granted
        ones with after-sales consent); ``crm.domain.maintenance_reminder`` decides."""
        v, ro = vehicles.c, repair_orders.c
        closed = and_(ro.vehicle_id == v.id, ro.state == "closed")
        query = (
            select(
                v.id, v.vin, v.model, v.mileage_km, v.created_us,
                select(func.max(ro.closed_us)).where(closed).scalar_subquery().label("served_us"),
                select(func.max(ro.mileage_km)).where(closed).scalar_subquery().label("served_km"),
                maintenance_schedules.c.interval_km, maintenance_schedules.c.interval_days,
                maintenance_schedules.c.remind_before_km,
                maintenance_schedules.c.remind_before_days,
            )
            .join(maintenance_schedules, maintenance_schedules.c.model == v.model)
            .where(v.id > (after or 0))
            .order_by(v.id)
            .limit(limit)
        )  # fmt: skip
        params: dict[str, Any] = {"after": after or 0}
        if dealer_id is not None:
            query = query.where(visible_to_dealer("service"))
            params.update(dealer_id=dealer_id, at=now_us())
        with self._tx("read maintenance candidates") as conn:
            return [dict(r._mapping) for r in conn.execute(query, params)]
