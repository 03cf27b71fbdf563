"""``TenantStore``: one tenant's telemetry database behind a small synchronous API.

Every method opens its own connection and transaction ("commit as you go"),
so the store is safe to call from many threads at once; the gateway calls it
through ``asyncio.to_thread`` so the event loop never waits on the database.
Rows are written with Core statements (no ORM objects per sample), and every
``SQLAlchemyError`` leaves as ``StoreError`` after the transaction rolled back.

This module holds vehicles and their catalogs; telemetry lives in
``cloud.store.telemetry``, plans and consent in ``cloud.store.control``,
fault codes and health in ``cloud.store.diagnostics``, events, trips, idle
time and health scores in ``cloud.store.rules``, expiry and the per-minute
history in ``cloud.store.retention``.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Engine, delete, exists, func, select, update
from sqlalchemy.exc import SQLAlchemyError

from cloud.domain import AGENT_DEFAULT_PURPOSES, CatalogMap, Purpose, SignalDef
from cloud.errors import StoreError, UnknownVehicle
from cloud.store.base import describe, now, require_vehicle, table, vehicle_pk
from cloud.store.control import ControlStore
from cloud.store.diagnostics import DiagnosticsStore
from cloud.store.dialect import create_tenant_engine, insert_ignoring_conflicts
from cloud.store.models import Batch, Signal, Vehicle, VehicleSignal, to_signed64
from cloud.store.retention import RetentionStore
from cloud.store.rules import RulesStore
from cloud.store.schema import upgrade_schema
from cloud.store.telemetry import TelemetryStore

__all__ = ["TenantStore"]

#: A catalog by its signals: (index, bus, message, name) of each.
_CatalogKey = tuple[tuple[int, str, str, str], ...]
#: Catalog maps a store keeps in memory (one per car model and agent release).
_CATALOG_MAPS = 256

_SIGNALS = table(Signal)
_VEHICLES = table(Vehicle)
_VEHICLE_SIGNALS = table(VehicleSignal)


class TenantStore(ControlStore, TelemetryStore, DiagnosticsStore, RulesStore, RetentionStore):
    """All one tenant stores: vehicles, catalogs, telemetry, control, diagnostics, rules."""

    def __init__(
        self, engine: Engine, *, default_consent: frozenset[Purpose] = AGENT_DEFAULT_PURPOSES
    ) -> None:
        super().__init__(engine, default_consent=default_consent)
        # Catalog maps by their signals (see open_session); a few models' worth.
        self._catalog_maps: dict[_CatalogKey, dict[int, int]] = {}
        self._catalog_lock = threading.Lock()

    @classmethod
    def open(
        cls, url: str, *, default_consent: frozenset[Purpose] = AGENT_DEFAULT_PURPOSES
    ) -> TenantStore:
        """Connect to the database at ``url`` and migrate it to this release's schema.

        ``default_consent`` is the tenant's consent of a vehicle whose owner's
        consent was never set (version 0).
        """
        engine = create_tenant_engine(url)
        try:
            upgrade_schema(engine)
        except SQLAlchemyError as exc:
            engine.dispose()
            raise StoreError(f"cannot open tenant store: {describe(exc)}") from exc
        return cls(engine, default_consent=default_consent)

    # ------------------------------------------------------------------ vehicles

    def enroll_vehicle(self, vehicle_id: str) -> None:
        """Make ``vehicle_id`` known to the tenant; enrolling twice is harmless."""
        self.enroll_vehicles([vehicle_id])

    def enroll_vehicles(self, vehicle_ids: Sequence[str]) -> None:
        """Enroll every vehicle of *vehicle_ids* in one transaction (a fleet at once)."""
        if not vehicle_ids:
            return
        if not all(vehicle_ids):
            raise ValueError("vehicle_id must not be empty")
        enrolled_at = now()
        with self._connection("enroll vehicle") as conn:
            conn.execute(
                insert_ignoring_conflicts(self._engine, _VEHICLES),
                [
                    {"vehicle_id": vehicle_id, "enrolled_at": enrolled_at, "last_sequence": 0}
                    for vehicle_id in vehicle_ids
                ],
            )
            conn.commit()

    def is_enrolled(self, vehicle_id: str) -> bool:
        """Whether ``vehicle_id`` was enrolled."""
        with self._connection("look up vehicle") as conn:
            return vehicle_pk(conn, vehicle_id) is not None

    def register_catalog(
        self,
        vehicle_id: str,
        agent_version: str,
        catalog_id: int,
        signals: Sequence[SignalDef],
    ) -> CatalogMap:
        """Record what the vehicle's agent decodes and map its catalog indices to signal ids.

        Signal definitions are tenant-wide and keyed by (bus, message, name):
        missing ones are inserted, existing ones are reused as they are. The
        vehicle's own catalog (``vehicle_signals``) is rewritten only when its
        catalog id changed, so a reconnect costs no more than before.
        """
        return self.open_session(vehicle_id, agent_version, catalog_id, signals)[0]

    def open_session(
        self,
        vehicle_id: str,
        agent_version: str,
        catalog_id: int,
        signals: Sequence[SignalDef],
    ) -> tuple[CatalogMap, int]:
        """Everything a hello needs in one transaction: the catalog map and the last sequence.

        Registers the catalog as :meth:`register_catalog` says. A catalog this
        store mapped before (the same signals at the same indices, as every car
        of a model sends) is not looked up again: signal ids never change, so
        its map is kept in memory, keyed by the signals themselves, not by the
        catalog id the car claims. Raises ``UnknownVehicle`` for a vehicle that
        is not enrolled.
        """
        signed_catalog = to_signed64(catalog_id)
        key = tuple((s.index, s.bus, s.message, s.name) for s in signals)
        mapping = self._catalog_maps.get(key)
        with self._connection("register catalog") as conn:
            # Locked: two streams of one vehicle saying hello at once would
            # otherwise both rewrite its catalog (and clash on its primary key).
            row = conn.execute(
                select(Vehicle.id, Vehicle.catalog_id)
                .where(Vehicle.vehicle_id == vehicle_id)
                .with_for_update()
            ).one_or_none()
            if row is None:
                raise UnknownVehicle(f"vehicle {vehicle_id!r} is not enrolled")
            pk, previous = row
            fresh = mapping is None
            if mapping is None:
                mapping = self._map_signals(conn, signals)
            rewrite = previous != signed_catalog or (
                bool(mapping)
                and not conn.execute(
                    select(exists().where(VehicleSignal.vehicle_id == pk))
                ).scalar_one()
            )
            if rewrite:
                conn.execute(delete(VehicleSignal).where(VehicleSignal.vehicle_id == pk))
                if mapping:
                    conn.execute(
                        _VEHICLE_SIGNALS.insert(),
                        [
                            {"vehicle_id": pk, "signal_id": sid}
                            for sid in sorted(set(mapping.values()))
                        ],
                    )
            last = conn.execute(
                select(func.max(Batch.sequence)).where(Batch.vehicle_id == pk)
            ).scalar_one_or_none()
            conn.execute(
                update(Vehicle)
                .where(Vehicle.id == pk)
                .values(agent_version=agent_version, catalog_id=signed_catalog, last_seen_at=now())
            )
            conn.commit()
        if fresh:
            self._remember(key, mapping)
        return CatalogMap(mapping), int(last or 0)

    def _map_signals(self, conn: Connection, signals: Sequence[SignalDef]) -> dict[int, int]:
        if signals:
            # In key order, so two agents registering overlapping catalogs at
            # once take the unique-index locks in one order (no deadlock).
            rows = sorted(
                (_signal_row(signal) for signal in signals),
                key=lambda row: (row["bus"], row["message"], row["name"]),
            )
            conn.execute(insert_ignoring_conflicts(self._engine, _SIGNALS), rows)
        buses = sorted({signal.bus for signal in signals})
        known = {
            (bus, message, name): signal_id
            for signal_id, bus, message, name in conn.execute(
                select(Signal.id, Signal.bus, Signal.message, Signal.name).where(
                    Signal.bus.in_(buses)
                )
            )
        }
        return {s.index: known[(s.bus, s.message, s.name)] for s in signals}

    def _remember(
        self, key: tuple[tuple[int, str, str, str], ...], mapping: dict[int, int]
    ) -> None:
        with self._catalog_lock:
            if len(self._catalog_maps) >= _CATALOG_MAPS:
                self._catalog_maps.pop(next(iter(self._catalog_maps)))  # the oldest
            self._catalog_maps[key] = mapping

    def vehicle_catalog(self, vehicle_id: str) -> list[tuple[str, str, str]] | None:
        """(bus, message, name) of every signal the vehicle decodes, as of its last hello.

        ``None`` when the vehicle never said hello (its catalog is unknown).
        """
        with self._connection("read vehicle catalog") as conn:
            pk = require_vehicle(conn, vehicle_id)
            registered = conn.execute(
                select(Vehicle.catalog_id).where(Vehicle.id == pk)
            ).scalar_one()
            if registered is None:
                return None
            rows = conn.execute(
                select(Signal.bus, Signal.message, Signal.name)
                .join(VehicleSignal, VehicleSignal.signal_id == Signal.id)
                .where(VehicleSignal.vehicle_id == pk)
                .order_by(Signal.bus, Signal.message, Signal.name)
            )
            return [(bus, message, name) for bus, message, name in rows]


def _signal_row(signal: SignalDef) -> dict[str, Any]:
    return {
        "bus": signal.bus,
        "message": signal.message,
        "name": signal.name,
        "frame_id": signal.frame_id,
        "is_extended": signal.is_extended,
        "unit": signal.unit,
        "minimum": signal.minimum,
        "maximum": signal.maximum,
        "choices": {str(raw): label for raw, label in signal.choices.items()},
        "is_float": signal.is_float,
        "pgn": signal.pgn,
    }
