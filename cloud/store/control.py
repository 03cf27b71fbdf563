"""The control side of a tenant's store: collection plans, the owner's consent, plan status.

Plans and consents keep every version (for the audit trail); the highest
version is the one in force. Versions are per vehicle and start at 1; the
vehicle's row is locked while a version is allocated (on SQLite the single
writer does the same), and a lost race on the primary key is retried.

A vehicle without a consent row has the tenant's default consent, version 0.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any

from sqlalchemy import Connection, Engine, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from cloud.domain import Consent, PlanReport, Purpose, StoredPlan, VehicleControlStatus
from cloud.errors import StoreError
from cloud.store.base import StoreBase, now, require_vehicle
from cloud.store.models import ConsentRow, PlanRow, PlanStatusRow, Vehicle

__all__ = ["ControlStore"]

#: Vehicles per query of a poll (SQLite allows a few thousand bound parameters).
_POLL_CHUNK = 1_000

#: Attempts at allocating a version before giving up (only concurrent writers retry).
_VERSION_ATTEMPTS = 5
#: Longest rejection reason kept; a car's reason is for an engineer's eyes.
_MAX_REASON = 2_000


class ControlStore(StoreBase):
    """Plans, consents and the plan status cars report."""

    def __init__(self, engine: Engine, *, default_consent: Collection[Purpose]) -> None:
        super().__init__(engine)
        self._default_consent = frozenset(default_consent)

    @property
    def default_consent(self) -> frozenset[Purpose]:
        """The consent (version 0) of a vehicle whose owner's consent was never set."""
        return self._default_consent

    # ------------------------------------------------------------------ plans

    def add_plan(self, vehicle_id: str, name: str, document: Mapping[str, Any]) -> int:
        """Store a new version of the vehicle's plan; returns its version (1, 2, ...)."""
        return self._add_version(
            "store collection plan",
            vehicle_id,
            lambda conn, pk, version: conn.execute(
                insert(PlanRow).values(
                    vehicle_id=pk,
                    version=version,
                    name=name,
                    document=dict(document),
                    created_at=now(),
                )
            ),
            PlanRow,
        )

    def newest_plan(self, vehicle_id: str) -> StoredPlan | None:
        """The vehicle's current plan, ``None`` when none was ever set."""
        with self._connection("read collection plan") as conn:
            pk = require_vehicle(conn, vehicle_id)
            return _newest_plan(conn, pk)

    def record_plan_status(self, vehicle_id: str, report: PlanReport) -> None:
        """Keep what the car reports about its plan.

        A rejection is remembered until the car runs that version or a newer
        one, so a later report without a rejection does not hide why a plan
        was refused.
        """
        reported_at = now()
        with self._connection("store plan status") as conn:
            pk = require_vehicle(conn, vehicle_id, for_update=True)
            old = conn.execute(
                select(PlanStatusRow.rejected_version, PlanStatusRow.reason).where(
                    PlanStatusRow.vehicle_id == pk
                )
            ).one_or_none()
            rejected, reason = report.rejected_version, report.reason[:_MAX_REASON]
            if not rejected and old is not None:
                rejected, reason = old.rejected_version, old.reason
            if rejected and report.running_version >= rejected:
                rejected, reason = 0, ""
            values = {
                "running_version": report.running_version,
                "state": report.state,
                "rejected_version": rejected,
                "reason": reason,
                "consent_version": report.consent_version,
                "reported_at": reported_at,
            }
            if old is None:
                conn.execute(insert(PlanStatusRow).values(vehicle_id=pk, **values))
            else:
                conn.execute(
                    update(PlanStatusRow).where(PlanStatusRow.vehicle_id == pk).values(**values)
                )
            conn.commit()

    def plan_report(self, vehicle_id: str) -> PlanReport | None:
        """The car's last report about its plan, ``None`` before the first one."""
        with self._connection("read plan status") as conn:
            pk = require_vehicle(conn, vehicle_id)
            return _plan_report(conn, pk)

    # ------------------------------------------------------------------ consent

    def add_consent(self, vehicle_id: str, purposes: Collection[Purpose]) -> int:
        """Store the owner's new consent (every purpose not listed is withdrawn); its version."""
        granted = sorted(Purpose(purpose).value for purpose in purposes)
        return self._add_version(
            "store consent",
            vehicle_id,
            lambda conn, pk, version: conn.execute(
                insert(ConsentRow).values(
                    vehicle_id=pk, version=version, purposes=granted, updated_at=now()
                )
            ),
            ConsentRow,
        )

    def consent(self, vehicle_id: str) -> Consent:
        """The consent in force: the newest one set, else the tenant's default (version 0)."""
        with self._connection("read consent") as conn:
            pk = require_vehicle(conn, vehicle_id)
            return self._consent(conn, pk)

    # ------------------------------------------------------------------ both

    def control_versions(self, vehicle_id: str) -> tuple[int, int]:
        """(plan version, consent version) in force, 0 for none: one cheap query for polling."""
        with self._connection("read control versions") as conn:
            pk = require_vehicle(conn, vehicle_id)
            plan = select(func.max(PlanRow.version)).where(PlanRow.vehicle_id == pk)
            consent = select(func.max(ConsentRow.version)).where(ConsentRow.vehicle_id == pk)
            row = conn.execute(select(plan.scalar_subquery(), consent.scalar_subquery())).one()
        return int(row[0] or 0), int(row[1] or 0)

    def control_versions_of(self, vehicle_ids: Collection[str]) -> dict[str, tuple[int, int]]:
        """:meth:`control_versions` of many vehicles at once (unknown ones left out).

        One query per thousand vehicles: a gateway holding ten thousand streams
        polls them all in ten queries instead of ten thousand.
        """
        ids = sorted(vehicle_ids)
        plan = select(func.max(PlanRow.version)).where(PlanRow.vehicle_id == Vehicle.id)
        consent = select(func.max(ConsentRow.version)).where(ConsentRow.vehicle_id == Vehicle.id)
        query = select(Vehicle.vehicle_id, plan.scalar_subquery(), consent.scalar_subquery())
        versions: dict[str, tuple[int, int]] = {}
        with self._connection("read control versions") as conn:
            for i in range(0, len(ids), _POLL_CHUNK):
                chunk = ids[i : i + _POLL_CHUNK]
                for vehicle_id, plan_version, consent_version in conn.execute(
                    query.where(Vehicle.vehicle_id.in_(chunk))
                ):
                    versions[vehicle_id] = (int(plan_version or 0), int(consent_version or 0))
        return versions

    def vehicle_status(self, vehicle_id: str) -> VehicleControlStatus:
        """The plan and consent in force, and what the car last said it runs."""
        with self._connection("read vehicle status") as conn:
            pk = require_vehicle(conn, vehicle_id)
            return VehicleControlStatus(
                vehicle_id=vehicle_id,
                plan=_newest_plan(conn, pk),
                reported=_plan_report(conn, pk),
                consent=self._consent(conn, pk),
            )

    # ------------------------------------------------------------------ internals

    def _consent(self, conn: Connection, pk: int) -> Consent:
        row = conn.execute(
            select(ConsentRow.version, ConsentRow.purposes, ConsentRow.updated_at)
            .where(ConsentRow.vehicle_id == pk)
            .order_by(ConsentRow.version.desc())
            .limit(1)
        ).one_or_none()
        if row is None:
            return Consent(version=0, purposes=self._default_consent)
        return Consent(
            version=row.version,
            purposes=frozenset(Purpose(value) for value in row.purposes),
            updated_at=row.updated_at,
        )

    def _add_version(
        self,
        action: str,
        vehicle_id: str,
        write: Callable[[Connection, int, int], object],
        model: type[PlanRow] | type[ConsentRow],
    ) -> int:
        with self._connection(action) as conn:
            for _ in range(_VERSION_ATTEMPTS):
                pk = require_vehicle(conn, vehicle_id, for_update=True)
                highest = conn.execute(
                    select(func.max(model.version)).where(model.vehicle_id == pk)
                ).scalar_one()
                version = int(highest or 0) + 1
                try:
                    write(conn, pk, version)
                except IntegrityError:
                    # Another process took this version between our read and write.
                    conn.rollback()
                    continue
                conn.commit()
                return version
        raise StoreError(f"cannot {action}: too many concurrent writers for {vehicle_id!r}")


def _newest_plan(conn: Connection, pk: int) -> StoredPlan | None:
    row = conn.execute(
        select(PlanRow.version, PlanRow.name, PlanRow.document, PlanRow.created_at)
        .where(PlanRow.vehicle_id == pk)
        .order_by(PlanRow.version.desc())
        .limit(1)
    ).one_or_none()
    if row is None:
        return None
    return StoredPlan(
        version=row.version, name=row.name, document=row.document, created_at=row.created_at
    )


def _plan_report(conn: Connection, pk: int) -> PlanReport | None:
    row = conn.execute(
        select(
            PlanStatusRow.running_version,
            PlanStatusRow.state,
            PlanStatusRow.rejected_version,
            PlanStatusRow.reason,
            PlanStatusRow.consent_version,
            PlanStatusRow.reported_at,
        ).where(PlanStatusRow.vehicle_id == pk)
    ).one_or_none()
    return None if row is None else PlanReport(*row)
