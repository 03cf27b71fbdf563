"""The diagnostics side of a tenant's store: fault codes and agent health reports.

Fault codes are events (set or cleared at a CAN time); their unique key makes
a resent report, or the same event in another report, store nothing twice.
Which codes are active is computed from the newest event of each code.
Every health report is kept; a retention job will prune them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Executable, func, select

from cloud.domain import FaultCode, FaultEntry, FaultState, HealthReport
from cloud.store.base import StoreBase, now, require_vehicle, table
from cloud.store.dialect import insert_ignoring_conflicts
from cloud.store.models import AgentHealthRow, FaultCodeRow, Vehicle

__all__ = ["FAULT_COLUMNS", "DiagnosticsStore", "fault_entry"]

_FAULTS = table(FaultCodeRow)
_HEALTH = table(AgentHealthRow)
FAULT_COLUMNS = (
    FaultCodeRow.protocol,
    FaultCodeRow.bus,
    FaultCodeRow.source,
    FaultCodeRow.code,
    FaultCodeRow.state,
    FaultCodeRow.ts_us,
    FaultCodeRow.spn,
    FaultCodeRow.fmi,
    FaultCodeRow.occurrences,
    FaultCodeRow.dtc,
    FaultCodeRow.status,
    FaultCodeRow.report_id,
    FaultCodeRow.received_at,
)
_HEALTH_FIELDS = (
    "time_us", "uptime_ms", "decode_errors", "unknown_ids", "outbox_batches", "outbox_bytes",
    "evicted_samples", "reconnects", "ack_latency_p50_ms", "ack_latency_p99_ms",
    "plan_version", "consent_version",
)  # fmt: skip
#: What identifies one code on one ECU (its events differ by state and time).
_FAULT_KEY = (FaultCodeRow.protocol, FaultCodeRow.bus, FaultCodeRow.source, FaultCodeRow.code)


class DiagnosticsStore(StoreBase):
    """Fault codes and agent health of the tenant's vehicles."""

    # ------------------------------------------------------------------ fault codes

    def store_fault_report(
        self, vehicle_id: str, report_id: int, codes: Sequence[FaultCode]
    ) -> int:
        """Store the report's fault codes once; returns how many were new."""
        received = now()
        with self._connection("store fault codes") as conn:
            pk = require_vehicle(conn, vehicle_id)
            if not codes:
                return 0
            rows = [
                {
                    "vehicle_id": pk,
                    "report_id": report_id,
                    "protocol": code.protocol,
                    "bus": code.bus,
                    "source": code.source,
                    "code": code.code,
                    "state": code.state.value,
                    "ts_us": code.ts_us,
                    "spn": code.spn,
                    "fmi": code.fmi,
                    "occurrences": code.occurrences,
                    "dtc": code.dtc,
                    "status": code.status,
                    "received_at": received,
                }
                for code in codes
            ]
            new = 0
            statement = insert_ignoring_conflicts(self._engine, _FAULTS).returning(_FAULTS.c.id)
            # One row per statement: RETURNING then tells a new row from a skipped
            # one on every driver, and reports are a handful of codes.
            for row in rows:
                new += conn.execute(statement, row).first() is not None
            conn.commit()
        return new

    def fault_history(self, vehicle_id: str, *, limit: int | None = None) -> list[FaultEntry]:
        """The vehicle's fault-code events, newest (by CAN time) first."""
        query = (
            select(*FAULT_COLUMNS)
            .join(Vehicle, Vehicle.id == FaultCodeRow.vehicle_id)
            .where(Vehicle.vehicle_id == vehicle_id)
            .order_by(FaultCodeRow.ts_us.desc(), FaultCodeRow.id.desc())
            .limit(limit)
        )
        return self._faults("read fault history", query)

    def active_faults(self, vehicle_id: str) -> list[FaultEntry]:
        """Codes whose newest event set them, newest first."""
        ranked = (
            select(
                *FAULT_COLUMNS,
                func.row_number()
                .over(
                    partition_by=_FAULT_KEY,
                    order_by=(FaultCodeRow.ts_us.desc(), FaultCodeRow.id.desc()),
                )
                .label("rank"),
            )
            .join(Vehicle, Vehicle.id == FaultCodeRow.vehicle_id)
            .where(Vehicle.vehicle_id == vehicle_id)
            .subquery()
        )
        query = (
            select(*(ranked.c[column.key] for column in FAULT_COLUMNS))
            .where(ranked.c.rank == 1, ranked.c.state == FaultState.SET.value)
            .order_by(ranked.c.ts_us.desc(), ranked.c.bus, ranked.c.source, ranked.c.code)
        )
        return self._faults("read active fault codes", query)

    # ------------------------------------------------------------------ health

    def record_health(self, vehicle_id: str, report: HealthReport) -> None:
        """Keep one health report of the vehicle's agent."""
        with self._connection("store health report") as conn:
            pk = require_vehicle(conn, vehicle_id)
            conn.execute(
                _HEALTH.insert(),
                {
                    "vehicle_id": pk,
                    "received_at": now(),
                    "time_us": report.time_us,
                    "uptime_ms": report.uptime_ms,
                    "frames_by_bus": dict(report.frames_by_bus),
                    "decode_errors": report.decode_errors,
                    "unknown_ids": report.unknown_ids,
                    "outbox_batches": report.outbox_batches,
                    "outbox_bytes": report.outbox_bytes,
                    "evicted_samples": report.evicted_samples,
                    "reconnects": report.reconnects,
                    "ack_latency_p50_ms": report.ack_latency_p50_ms,
                    "ack_latency_p99_ms": report.ack_latency_p99_ms,
                    "plan_version": report.plan_version,
                    "consent_version": report.consent_version,
                    "counters": dict(report.counters),
                },
            )
            conn.commit()

    def latest_health(self, vehicle_id: str) -> HealthReport | None:
        """The newest health report the vehicle sent, ``None`` before the first."""
        query = (
            select(AgentHealthRow)
            .join(Vehicle, Vehicle.id == AgentHealthRow.vehicle_id)
            .where(Vehicle.vehicle_id == vehicle_id)
            .order_by(AgentHealthRow.received_at.desc(), AgentHealthRow.id.desc())
            .limit(1)
        )
        with self._connection("read health report") as conn:
            row = conn.execute(query).mappings().first()
        if row is None:
            return None
        return HealthReport(
            **{name: row[name] for name in _HEALTH_FIELDS},
            frames_by_bus=dict(row["frames_by_bus"]),
            counters=dict(row["counters"]),
            received_at=row["received_at"],
        )

    def health_report_count(self, vehicle_id: str) -> int:
        """How many health reports are kept for the vehicle."""
        query = (
            select(func.count())
            .select_from(AgentHealthRow)
            .join(Vehicle, Vehicle.id == AgentHealthRow.vehicle_id)
            .where(Vehicle.vehicle_id == vehicle_id)
        )
        with self._connection("count health reports") as conn:
            return int(conn.execute(query).scalar_one())

    # ------------------------------------------------------------------ internals

    def _faults(self, action: str, query: Executable) -> list[FaultEntry]:
        with self._connection(action) as conn:
            return [fault_entry(row) for row in conn.execute(query)]


def fault_entry(row: Sequence[Any]) -> FaultEntry:
    (protocol, bus, source, code, state, ts_us, spn, fmi, occurrences, dtc, status,
     report_id, received_at) = row  # fmt: skip
    return FaultEntry(
        fault=FaultCode(
            protocol=str(protocol),
            bus=str(bus),
            source=int(source),
            code=str(code),
            state=FaultState(state),
            ts_us=int(ts_us),
            spn=int(spn),
            fmi=int(fmi),
            occurrences=int(occurrences),
            dtc=int(dtc),
            status=int(status),
        ),
        report_id=int(report_id),
        received_at=received_at,
    )
