"""The telemetry side of a tenant's store: batches of samples in, samples and latest state out.

A batch is stored exactly once: its ledger row (vehicle, sequence), its
samples, the vehicle's latest state, and the evictions and trigger firings it
carries are written in one transaction, and the ledger's primary key decides
between two streams racing with the same batch (see ``ingest``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Engine,
    bindparam,
    case,
    func,
    select,
    update,
)

from cloud.domain import (
    Eviction,
    IngestResult,
    LatestValue,
    SampleColumns,
    SignalStats,
    StoredEviction,
    StoredTrigger,
    TriggerMark,
    newest_per_signal,
)
from cloud.errors import StoreError
from cloud.store.base import StoreBase, now, require_vehicle, table
from cloud.store.dialect import (
    BatchWriter,
    MissingPartition,
    NewestUpsert,
    SamplePartitions,
    insert_ignoring_conflicts,
)
from cloud.store.models import (
    Batch,
    EvictionRow,
    LatestState,
    Sample,
    Signal,
    TriggerRow,
    Vehicle,
)

__all__ = ["TelemetryStore"]

_SAMPLES = table(Sample)
_BATCHES = table(Batch)
_LATEST = table(LatestState)
_EVICTIONS = table(EvictionRow)
_TRIGGERS = table(TriggerRow)
_VEHICLES = table(Vehicle)


class TelemetryStore(StoreBase):
    """Batches, samples, latest state, evictions and trigger firings of the tenant's vehicles."""

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        # The same statements serve every batch: build them once per store.
        # RETURNING tells a new ledger row from a skipped one on every driver
        # (rowcount of ON CONFLICT DO NOTHING is not reported by all of them).
        # The vehicle is looked up by the same statement (one round trip less per
        # batch); no row back means a duplicate, or a vehicle not enrolled.
        ledger = [
            _BATCHES.c.sequence,
            _BATCHES.c.samples,
            _BATCHES.c.received_at,
            _BATCHES.c.first_ts_us,
            _BATCHES.c.last_ts_us,
        ]
        self._ledger_insert = (
            insert_ignoring_conflicts(engine, _BATCHES)
            .from_select(
                ["vehicle_id", *(column.name for column in ledger)],
                select(Vehicle.id, *(bindparam(c.name, type_=c.type) for c in ledger)).where(
                    Vehicle.vehicle_id == bindparam("vehicle")
                ),
            )
            .returning(_BATCHES.c.vehicle_id)
        )
        self._latest_upsert = NewestUpsert(
            engine,
            _LATEST,
            key=[_LATEST.c.vehicle_id, _LATEST.c.signal_id],
            order=_LATEST.c.ts_us,
            update=[_LATEST.c.value, _LATEST.c.updated_at],
            shared=[_LATEST.c.vehicle_id, _LATEST.c.updated_at],
        )
        newer = bindparam("sequence", type_=BigInteger)
        self._vehicle_seen = (
            update(Vehicle)
            .where(Vehicle.id == bindparam("pk"))
            .values(
                last_seen_at=bindparam("seen", type_=_VEHICLES.c.last_seen_at.type),
                # Batches may commit out of order (two streams): only ever move forward.
                last_sequence=case(
                    (Vehicle.last_sequence < newer, newer), else_=Vehicle.last_sequence
                ),
            )
        )
        self._evictions_insert = _EVICTIONS.insert()
        self._triggers_insert = _TRIGGERS.insert()
        self._partitions = SamplePartitions(engine)
        self._batches = BatchWriter(engine, _SAMPLES)

    def last_sequence(self, vehicle_id: str) -> int:
        """Highest batch sequence stored for the vehicle, 0 when none is."""
        with self._connection("read last sequence") as conn:
            highest = conn.execute(
                select(func.max(Batch.sequence))
                .join(Vehicle, Vehicle.id == Batch.vehicle_id)
                .where(Vehicle.vehicle_id == vehicle_id)
            ).scalar_one()
        return int(highest) if highest is not None else 0

    # ------------------------------------------------------------------ ingest

    def ingest(
        self,
        vehicle_id: str,
        sequence: int,
        samples: SampleColumns,
        *,
        evictions: Sequence[Eviction] = (),
        triggers: Sequence[TriggerMark] = (),
    ) -> IngestResult:
        """Store one batch, with the evictions and trigger firings it carries, exactly once.

        Everything is written in one transaction. The ledger row (vehicle,
        sequence) is inserted first with ON CONFLICT DO NOTHING: if it already
        exists the batch was stored before and nothing at all is written. The
        primary key decides, so two streams racing with the same batch store it
        once (the loser waits for the winner's commit, then sees the conflict).
        Returns only after the commit. How the statements travel (one binary
        COPY for the samples on PostgreSQL) is the dialect's ``Batch``.

        The samples' time partitions are made first, outside the transaction
        (see ``SamplePartitions``), so a day no partition covers yet never fails
        a batch; should one have been dropped since (by another process), the
        partitions are looked up again and the batch written once more.
        """
        for attempt in range(2):
            with self._translated("create sample partitions"):
                self._partitions.ensure(samples.ts_us)
            try:
                return self._ingest(vehicle_id, sequence, samples, evictions, triggers)
            except MissingPartition as exc:
                if attempt:
                    raise StoreError(f"cannot ingest batch: {exc}") from exc
                self._partitions.forget()
        raise AssertionError("unreachable")

    def _ingest(
        self,
        vehicle_id: str,
        sequence: int,
        samples: SampleColumns,
        evictions: Sequence[Eviction],
        triggers: Sequence[TriggerMark],
    ) -> IngestResult:
        received = now()
        count = len(samples)
        with self._connection("ingest batch") as conn:
            batch = self._batches.begin(conn)
            pk = batch.claim(
                self._ledger_insert,
                {
                    "vehicle": vehicle_id,
                    "sequence": sequence,
                    "samples": count,
                    "received_at": received,
                    # The rules read the batch back by its time range.
                    "first_ts_us": int(min(samples.ts_us)) if count else None,
                    "last_ts_us": int(max(samples.ts_us)) if count else None,
                },
            )
            if pk is None:
                require_vehicle(conn, vehicle_id)
                conn.rollback()
                return IngestResult(stored=0, duplicate=True)
            if count:
                batch.copy_samples(pk, samples)
                newest = newest_per_signal(samples)
                columns: dict[str, list[Any]] = {
                    "signal_id": [sid for sid, _ in newest],
                    "ts_us": [ts for _, (ts, _) in newest],
                    "value": [value for _, (_, value) in newest],
                }
                shared = {"vehicle_id": pk, "updated_at": received}
                batch.execute(
                    self._latest_upsert.statement, self._latest_upsert.params(shared, columns)
                )
            if evictions:
                batch.execute(
                    self._evictions_insert,
                    [
                        {
                            "vehicle_id": pk,
                            "sequence": sequence,
                            "signal_id": item.signal_id,
                            "samples": item.samples,
                            "first_ts_us": item.first_ts_us,
                            "last_ts_us": item.last_ts_us,
                        }
                        for item in evictions
                    ],
                )
            if triggers:
                batch.execute(
                    self._triggers_insert,
                    [
                        {
                            "vehicle_id": pk,
                            "sequence": sequence,
                            "name": item.name,
                            "ts_us": item.ts_us,
                            "plan_version": item.plan_version,
                        }
                        for item in triggers
                    ],
                )
            batch.execute(self._vehicle_seen, {"pk": pk, "seen": received, "sequence": sequence})
            batch.commit()
        return IngestResult(stored=count, duplicate=False)

    # ------------------------------------------------------------------ read side

    def count_samples(self, vehicle_id: str | None = None) -> int:
        """Number of stored samples, of one vehicle or of the whole tenant."""
        query = select(func.count()).select_from(Sample)
        if vehicle_id is not None:
            query = query.join(Vehicle, Vehicle.id == Sample.vehicle_id).where(
                Vehicle.vehicle_id == vehicle_id
            )
        with self._connection("count samples") as conn:
            return int(conn.execute(query).scalar_one())

    def batch_count(self, vehicle_id: str) -> int:
        """Number of distinct batches stored for the vehicle."""
        query = (
            select(func.count())
            .select_from(Batch)
            .join(Vehicle, Vehicle.id == Batch.vehicle_id)
            .where(Vehicle.vehicle_id == vehicle_id)
        )
        with self._connection("count batches") as conn:
            return int(conn.execute(query).scalar_one())

    def latest(self, vehicle_id: str) -> list[LatestValue]:
        """The newest value of every signal the vehicle has sent, by bus, message, signal."""
        query = (
            select(
                Signal.bus,
                Signal.message,
                Signal.name,
                Signal.unit,
                Signal.choices,
                LatestState.ts_us,
                LatestState.value,
            )
            .join(LatestState, LatestState.signal_id == Signal.id)
            .join(Vehicle, Vehicle.id == LatestState.vehicle_id)
            .where(Vehicle.vehicle_id == vehicle_id)
            .order_by(Signal.bus, Signal.message, Signal.name)
        )
        with self._connection("read latest state") as conn:
            rows = conn.execute(query).all()
        return [
            LatestValue(
                bus=bus,
                message=message,
                signal=name,
                unit=unit,
                ts_us=ts_us,
                value=value,
                label=_label(choices, value),
            )
            for bus, message, name, unit, choices, ts_us, value in rows
        ]

    def samples(
        self, vehicle_id: str, bus: str, message: str, signal: str
    ) -> list[tuple[int, float]]:
        """Every stored (ts_us, value) of one signal of one vehicle, oldest first."""
        query = (
            select(Sample.ts_us, Sample.value)
            .join(Vehicle, Vehicle.id == Sample.vehicle_id)
            .join(Signal, Signal.id == Sample.signal_id)
            .where(*_one_signal(vehicle_id, message, signal, bus))
            # Samples have no key: ties in time (rare) come out by value.
            .order_by(Sample.ts_us, Sample.value)
        )
        with self._connection("read samples") as conn:
            return [(int(ts), float(value)) for ts, value in conn.execute(query)]

    def signal_stats(
        self, vehicle_id: str, message: str, signal: str, *, bus: str | None = None
    ) -> SignalStats:
        """Count, mean, minimum and maximum of one signal's samples, computed in SQL."""
        query = (
            select(
                func.count(Sample.value),
                func.avg(Sample.value),
                func.min(Sample.value),
                func.max(Sample.value),
            )
            .join(Vehicle, Vehicle.id == Sample.vehicle_id)
            .join(Signal, Signal.id == Sample.signal_id)
            .where(*_one_signal(vehicle_id, message, signal, bus))
        )
        with self._connection("compute signal statistics") as conn:
            count, mean, low, high = conn.execute(query).one()
        return SignalStats(
            count=int(count),
            mean=_float_or_none(mean),
            minimum=_float_or_none(low),
            maximum=_float_or_none(high),
        )

    def evictions(self, vehicle_id: str) -> list[StoredEviction]:
        """Every eviction the vehicle reported, by batch sequence and signal."""
        query = (
            select(
                EvictionRow.sequence,
                Signal.bus,
                Signal.message,
                Signal.name,
                EvictionRow.samples,
                EvictionRow.first_ts_us,
                EvictionRow.last_ts_us,
            )
            .join(Signal, Signal.id == EvictionRow.signal_id)
            .join(Vehicle, Vehicle.id == EvictionRow.vehicle_id)
            .where(Vehicle.vehicle_id == vehicle_id)
            .order_by(EvictionRow.sequence, EvictionRow.id)
        )
        with self._connection("read evictions") as conn:
            return [StoredEviction(*row) for row in conn.execute(query)]

    def trigger_firings(self, vehicle_id: str) -> list[StoredTrigger]:
        """Every trigger firing the vehicle reported, by CAN time."""
        query = (
            select(TriggerRow.sequence, TriggerRow.name, TriggerRow.ts_us, TriggerRow.plan_version)
            .join(Vehicle, Vehicle.id == TriggerRow.vehicle_id)
            .where(Vehicle.vehicle_id == vehicle_id)
            .order_by(TriggerRow.ts_us, TriggerRow.id)
        )
        with self._connection("read trigger firings") as conn:
            return [StoredTrigger(*row) for row in conn.execute(query)]


def _label(choices: dict[str, str] | None, value: float) -> str | None:
    if not choices or not value.is_integer():
        return None
    return choices.get(str(int(value)))


def _float_or_none(value: Any) -> float | None:
    return None if value is None else float(value)


def _one_signal(
    vehicle_id: str, message: str, signal: str, bus: str | None
) -> list[ColumnElement[bool]]:
    """Filter for the samples of one signal of one vehicle (any bus when *bus* is None)."""
    clauses = [
        Vehicle.vehicle_id == vehicle_id,
        Signal.message == message,
        Signal.name == signal,
    ]
    if bus is not None:
        clauses.append(Signal.bus == bus)
    return clauses
