"""The rules' side of a tenant's store: their input read back, their results written once.

``rule_input`` reads what processing one batch needs (the engine's state, the
vehicle's service record, the batch's samples by its time range, and fault
codes stored since the last batch processed); ``store_rule_results`` writes
everything one processing produced in one transaction: the ledger row
(vehicle, sequence) first, so a batch processed twice stores nothing twice,
then the state under a version check, so two workers racing on one vehicle
cannot both build on the same state (the loser gets ``RuleStateMoved``, rolls
back, and reads again). Events are keyed by their deterministic id; trips,
daily idle and health are rows replaced with their newest figures.

Fault codes are fed by row id: those above the state's ``last_fault_id``.
A vehicle's reports are stored by its one stream, each committed before the
next, so its ids commit in order; two streams of one vehicle storing reports
at the same moment could commit a lower id after a higher one was read, and
that code would not be fed.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, TypeVarTuple

import numpy as np
import numpy.typing as npt
from sqlalchemy import ColumnElement, Select, and_, or_, select, update

from cloud.domain import FaultCode
from cloud.errors import StoreError, UnknownBatch
from cloud.rules.events import DayIdle, Event, EventKind, HealthReason, HealthScore, Severity, Trip
from cloud.rules.state import ServiceRecord
from cloud.store.base import StoreBase, now, require_vehicle, table
from cloud.store.diagnostics import FAULT_COLUMNS, fault_entry
from cloud.store.dialect import insert_ignoring_conflicts, upsert
from cloud.store.models import (
    Batch,
    DailyIdleRow,
    EventRow,
    FaultCodeRow,
    HealthRow,
    RuleBatchRow,
    RuleStateRow,
    Sample,
    ServiceRecordRow,
    Signal,
    TripRow,
    Vehicle,
)

__all__ = ["RuleInput", "RuleResults", "RuleStateMoved", "RulesStore", "SignalKey"]

_EVENTS = table(EventRow)
_TRIPS = table(TripRow)
_IDLE = table(DailyIdleRow)
_HEALTH = table(HealthRow)
_STATE = table(RuleStateRow)
_LEDGER = table(RuleBatchRow)
_SERVICE = table(ServiceRecordRow)

#: A catalog signal as the rules name it: (name, message or None, bus or None).
SignalKey = tuple[str, str | None, str | None]
Columns = tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]
_Ts = TypeVarTuple("_Ts")


class RuleStateMoved(StoreError):
    """Another worker stored the vehicle's rule state since it was read: read again."""


@dataclass(frozen=True, slots=True)
class RuleInput:
    """What processing one batch of one vehicle starts from."""

    #: The engine's snapshot (``None`` before the first batch) and its version (0 then).
    state: dict[str, Any] | None
    version: int
    last_fault_id: int
    service: ServiceRecord
    #: Per signal name: the batch's samples (timestamps, values), sorted by time.
    samples: dict[str, Columns]
    #: Fault codes stored since the last batch processed, with their row ids.
    faults: list[tuple[int, FaultCode]]


@dataclass(frozen=True, slots=True)
class RuleResults:
    """What processing one batch produced, to store at once."""

    version: int
    state: dict[str, Any]
    last_fault_id: int
    events: Sequence[Event] = ()
    trips: Sequence[Trip] = ()
    idle_days: Sequence[DayIdle] = ()
    health: HealthScore | None = None


class RulesStore(StoreBase):
    """Rule input and results, events, trips, daily idle, health and service records."""

    # ------------------------------------------------------------------ service records

    def set_service_record(self, vehicle_id: str, record: ServiceRecord) -> None:
        """Record the vehicle's model and last service (maintenance is measured from it)."""
        with self._connection("store service record") as conn:
            pk = require_vehicle(conn, vehicle_id)
            conn.execute(
                upsert(self._engine, _SERVICE, key=[_SERVICE.c.vehicle_id]),
                {
                    "vehicle_id": pk,
                    "model": record.model,
                    "serviced_at_us": record.serviced_at_us,
                    "odometer_km": record.odometer_km,
                    "updated_at": now(),
                },
            )
            conn.commit()

    def service_record(self, vehicle_id: str) -> ServiceRecord:
        """The vehicle's service record; an empty one when none was recorded."""
        with self._connection("read service record") as conn:
            pk = require_vehicle(conn, vehicle_id)
            return _service(conn.execute(select(_SERVICE).where(_SERVICE.c.vehicle_id == pk)))

    # ------------------------------------------------------------------ worker side

    def rule_input(
        self, vehicle_id: str, sequence: int, signals: Sequence[SignalKey]
    ) -> RuleInput | None:
        """What processing batch ``sequence`` needs; ``None`` when it was processed already.

        Raises ``UnknownBatch`` for a batch the store does not hold. The batch's
        samples are those of ``signals`` within its time range (all of them
        for a batch stored before the range was kept).
        """
        with self._connection("read rule input") as conn:
            pk = require_vehicle(conn, vehicle_id)
            done = conn.execute(
                select(RuleBatchRow.sequence).where(
                    RuleBatchRow.vehicle_id == pk, RuleBatchRow.sequence == sequence
                )
            ).first()
            if done is not None:
                return None
            batch = conn.execute(
                select(Batch.first_ts_us, Batch.last_ts_us).where(
                    Batch.vehicle_id == pk, Batch.sequence == sequence
                )
            ).first()
            if batch is None:
                raise UnknownBatch(f"vehicle {vehicle_id!r} has no batch {sequence}")
            state_row = conn.execute(
                select(RuleStateRow.state, RuleStateRow.version, RuleStateRow.last_fault_id).where(
                    RuleStateRow.vehicle_id == pk
                )
            ).first()
            state, version, last_fault = state_row if state_row is not None else (None, 0, 0)
            service = _service(conn.execute(select(_SERVICE).where(_SERVICE.c.vehicle_id == pk)))
            faults = [
                (int(row[0]), fault_entry(row[1:]).fault)
                for row in conn.execute(
                    select(FaultCodeRow.id, *FAULT_COLUMNS)
                    .where(FaultCodeRow.vehicle_id == pk, FaultCodeRow.id > last_fault)
                    .order_by(FaultCodeRow.id)
                )
            ]
            samples = self._batch_samples(conn, pk, signals, batch[0], batch[1])
        return RuleInput(state, int(version), int(last_fault), service, samples, faults)

    def _batch_samples(
        self,
        conn: Any,
        pk: int,
        signals: Sequence[SignalKey],
        first: int | None,
        last: int | None,
    ) -> dict[str, Columns]:
        if not signals:
            return {}
        wanted: list[ColumnElement[bool]] = []
        for name, message, bus in signals:
            clauses = [Signal.name == name]
            if message is not None:
                clauses.append(Signal.message == message)
            if bus is not None:
                clauses.append(Signal.bus == bus)
            wanted.append(and_(*clauses))
        ids = dict(conn.execute(select(Signal.id, Signal.name).where(or_(*wanted))).all())
        if not ids:
            return {}
        query = select(Sample.signal_id, Sample.ts_us, Sample.value).where(
            Sample.vehicle_id == pk, Sample.signal_id.in_(sorted(ids))
        )
        if first is not None and last is not None:
            query = query.where(Sample.ts_us >= first, Sample.ts_us <= last)
        by_name: dict[str, list[tuple[int, float]]] = defaultdict(list)
        for signal_id, ts, value in conn.execute(query):
            by_name[ids[signal_id]].append((int(ts), float(value)))
        columns: dict[str, Columns] = {}
        for name, pairs in by_name.items():
            # Sorted here, by time then value, so that signals of one name on several
            # buses merge into one series the same way every time.
            pairs.sort()
            columns[name] = (
                np.fromiter((ts for ts, _ in pairs), np.int64, len(pairs)),
                np.fromiter((v for _, v in pairs), np.float64, len(pairs)),
            )
        return columns

    def store_rule_results(
        self, vehicle_id: str, sequence: int, results: RuleResults
    ) -> list[Event] | None:
        """Store one processing's results at once; the events that were new.

        ``None`` when the batch was processed already (nothing is written);
        ``RuleStateMoved`` when the state is no longer at ``results.version``.
        """
        stamp = now()
        with self._connection("store rule results") as conn:
            pk = require_vehicle(conn, vehicle_id)
            claimed = conn.execute(
                insert_ignoring_conflicts(self._engine, _LEDGER).returning(_LEDGER.c.sequence),
                {
                    "vehicle_id": pk,
                    "sequence": sequence,
                    "events": len(results.events),
                    "processed_at": stamp,
                },
            ).first()
            if claimed is None:
                return None
            state = {
                "state": results.state,
                "version": results.version + 1,
                "last_fault_id": results.last_fault_id,
                "updated_at": stamp,
            }
            if results.version == 0:
                moved = (
                    conn.execute(
                        insert_ignoring_conflicts(self._engine, _STATE).returning(
                            _STATE.c.vehicle_id
                        ),
                        {"vehicle_id": pk, **state},
                    ).first()
                    is None
                )
            else:
                moved = (
                    conn.execute(
                        update(_STATE)
                        .where(_STATE.c.vehicle_id == pk, _STATE.c.version == results.version)
                        .values(**state)
                    ).rowcount
                    != 1
                )
            if moved:
                raise RuleStateMoved(f"the rule state of {vehicle_id!r} moved on; read it again")
            new = self._write_results(conn, pk, sequence, results, stamp)
            conn.commit()
        return [event for event in results.events if event.id in new]

    def _write_results(
        self, conn: Any, pk: int, sequence: int, results: RuleResults, stamp: Any
    ) -> set[str]:
        new: set[str] = set()
        statement = insert_ignoring_conflicts(self._engine, _EVENTS).returning(_EVENTS.c.event_id)
        # One row per statement: RETURNING then tells a new event from one stored
        # before on every driver, and a batch raises a handful of events.
        for event in results.events:
            row = {
                "vehicle_id": pk,
                "event_id": event.id,
                "kind": event.kind.value,
                "ts_us": event.ts_us,
                "severity": event.severity.value,
                "details": event.details,
                "sequence": sequence,
                "created_at": stamp,
            }
            if conn.execute(statement, row).first() is not None:
                new.add(event.id)
        if results.trips:
            conn.execute(
                upsert(self._engine, _TRIPS, key=[_TRIPS.c.vehicle_id, _TRIPS.c.start_us]),
                [_trip_row(pk, trip, stamp) for trip in results.trips],
            )
        if results.idle_days:
            conn.execute(
                upsert(self._engine, _IDLE, key=[_IDLE.c.vehicle_id, _IDLE.c.day]),
                [
                    {
                        "vehicle_id": pk,
                        "day": date.fromisoformat(day.day),
                        "idle_s": day.idle_s,
                        "idle_fuel_l": day.idle_fuel_l,
                        "updated_at": stamp,
                    }
                    for day in results.idle_days
                ],
            )
        if results.health is not None:
            health = results.health
            conn.execute(
                upsert(self._engine, _HEALTH, key=[_HEALTH.c.vehicle_id]),
                {
                    "vehicle_id": pk,
                    "score": health.score,
                    "reasons": [
                        {"code": r.code, "points": r.points, "text": r.text} for r in health.reasons
                    ],
                    "as_of_us": health.as_of_us,
                    "updated_at": stamp,
                },
            )
        return new

    # ------------------------------------------------------------------ read side

    def events(
        self,
        vehicle_id: str,
        *,
        kinds: Sequence[EventKind] | None = None,
        since_us: int | None = None,
        until_us: int | None = None,
        limit: int | None = None,
    ) -> list[Event]:
        """The vehicle's events, oldest first; ``since``/``until`` bound their CAN time."""
        query = (
            select(EventRow.event_id, EventRow.kind, EventRow.ts_us, EventRow.severity,
                   EventRow.details)
            .join(Vehicle, Vehicle.id == EventRow.vehicle_id)
            .where(Vehicle.vehicle_id == vehicle_id)
            .order_by(EventRow.ts_us, EventRow.id)
            .limit(limit)
        )  # fmt: skip
        if kinds is not None:
            query = query.where(EventRow.kind.in_([kind.value for kind in kinds]))
        query = _between(query, EventRow.ts_us, since_us, until_us)
        with self._connection("read events") as conn:
            return [
                Event(event_id, EventKind(kind), vehicle_id, int(ts), Severity(severity), details)
                for event_id, kind, ts, severity, details in conn.execute(query)
            ]

    def trips(
        self, vehicle_id: str, *, since_us: int | None = None, until_us: int | None = None
    ) -> list[Trip]:
        """The vehicle's trips by start time (the one under way last, ``end_us`` None)."""
        query = (
            select(TripRow)
            .join(Vehicle, Vehicle.id == TripRow.vehicle_id)
            .where(Vehicle.vehicle_id == vehicle_id)
            .order_by(TripRow.start_us)
        )
        query = _between(query, TripRow.start_us, since_us, until_us)
        with self._connection("read trips") as conn:
            rows = conn.execute(query).mappings().all()
        return [
            Trip(
                start_us=row["start_us"],
                end_us=row["end_us"],
                distance_km=row["distance_km"],
                idle_s=row["idle_s"],
                idle_fuel_l=row["idle_fuel_l"],
                fuel_used_l=row["fuel_used_l"],
                energy_used_kwh=row["energy_used_kwh"],
                last_us=row["last_us"],
            )
            for row in rows
        ]

    def daily_idle(
        self, vehicle_id: str, *, since: date | None = None, until: date | None = None
    ) -> list[DayIdle]:
        """Idle time per UTC day, oldest first; ``until`` is exclusive."""
        query = (
            select(DailyIdleRow.day, DailyIdleRow.idle_s, DailyIdleRow.idle_fuel_l)
            .join(Vehicle, Vehicle.id == DailyIdleRow.vehicle_id)
            .where(Vehicle.vehicle_id == vehicle_id)
            .order_by(DailyIdleRow.day)
        )
        query = _between(query, DailyIdleRow.day, since, until)
        with self._connection("read daily idle") as conn:
            return [DayIdle(day.isoformat(), idle, fuel) for day, idle, fuel in conn.execute(query)]

    def health(self, vehicle_id: str) -> HealthScore | None:
        """The vehicle's latest health score, ``None`` before its first batch was processed."""
        query = (
            select(HealthRow.score, HealthRow.reasons, HealthRow.as_of_us)
            .join(Vehicle, Vehicle.id == HealthRow.vehicle_id)
            .where(Vehicle.vehicle_id == vehicle_id)
        )
        with self._connection("read health") as conn:
            row = conn.execute(query).first()
        if row is None:
            return None
        score, reasons, as_of = row
        return HealthScore(
            int(score),
            tuple(HealthReason(r["code"], float(r["points"]), r["text"]) for r in reasons),
            int(as_of),
        )

    def rule_batches_processed(self, vehicle_id: str) -> list[int]:
        """Sequences of the vehicle's batches the rules processed, in order."""
        query = (
            select(RuleBatchRow.sequence)
            .join(Vehicle, Vehicle.id == RuleBatchRow.vehicle_id)
            .where(Vehicle.vehicle_id == vehicle_id)
            .order_by(RuleBatchRow.sequence)
        )
        with self._connection("read rule ledger") as conn:
            return [int(sequence) for sequence in conn.execute(query).scalars()]


def _between(
    query: Select[*_Ts], column: Any, since: object | None, until: object | None
) -> Select[*_Ts]:
    """``query`` limited to ``since <= column < until`` (either bound may be open)."""
    if since is not None:
        query = query.where(column >= since)
    if until is not None:
        query = query.where(column < until)
    return query


def _service(result: Any) -> ServiceRecord:
    row = result.mappings().first()
    if row is None:
        return ServiceRecord()
    return ServiceRecord(row["model"], row["serviced_at_us"], row["odometer_km"])


def _trip_row(pk: int, trip: Trip, stamp: Any) -> dict[str, Any]:
    return {
        "vehicle_id": pk,
        "start_us": trip.start_us,
        "end_us": trip.end_us,
        "last_us": trip.last_us,
        "distance_km": trip.distance_km,
        "duration_s": trip.duration_s,
        "idle_s": trip.idle_s,
        "idle_fuel_l": trip.idle_fuel_l,
        "fuel_used_l": trip.fuel_used_l,
        "energy_used_kwh": trip.energy_used_kwh,
        "updated_at": stamp,
    }
