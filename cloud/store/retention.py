"""Retention and downsampling of one tenant's store: what expires, and the history that stays.

Raw samples are folded into per-minute aggregates (count, minimum, maximum,
total: ``sample_minutes``) in the same transaction that deletes them, so
every sample is counted exactly once however late it arrived: a sample that
comes in after its minute was aggregated is merged into the same row when it
expires in turn. :meth:`RetentionStore.history` then serves a signal's
per-minute history across both: stored aggregates where the raw samples are
gone, aggregates computed on the fly where they are still there.

Every other data class (aggregates, events, trips with their daily idle
totals) is simply deleted past its cutoff; a trip still under way is kept.
A run holds the database's maintenance lock, so two runs (two gateway
processes, or a cron job beside them) never fold the same samples twice.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import (
    ColumnElement,
    Connection,
    Delete,
    and_,
    case,
    delete,
    func,
    literal_column,
    select,
    union_all,
)

from cloud.errors import UnknownSignal
from cloud.store.base import StoreBase, require_vehicle, table
from cloud.store.dialect import insert_for, maintenance_transaction
from cloud.store.models import (
    DailyIdleRow,
    EventRow,
    Sample,
    SampleMinuteRow,
    Signal,
    TripRow,
)

__all__ = ["MINUTE_US", "ExpiredSamples", "MinuteStats", "RetentionStore"]

#: Microseconds in a minute, the aggregates' resolution.
MINUTE_US = 60_000_000

_SAMPLES = table(Sample)
_MINUTES = table(SampleMinuteRow)
_EVENTS = table(EventRow)
_TRIPS = table(TripRow)
_DAILY_IDLE = table(DailyIdleRow)


@dataclass(frozen=True, slots=True)
class ExpiredSamples:
    """What folding and deleting raw samples did."""

    samples: int  # raw samples deleted (each one folded into a minute first)
    minutes: int  # per-minute rows written or merged into


@dataclass(frozen=True, slots=True)
class MinuteStats:
    """One minute of one signal: how many samples, their minimum, maximum and mean."""

    minute_us: int
    count: int
    minimum: float
    maximum: float
    mean: float


def _minute(ts: ColumnElement[int]) -> ColumnElement[int]:
    # The start of the sample's minute, also for times before 1970 (SQL's % keeps
    # the dividend's sign on both databases).
    return ts - ((ts % MINUTE_US) + MINUTE_US) % MINUTE_US


class RetentionStore(StoreBase):
    """Expiry per data class and the per-minute history (part of ``TenantStore``)."""

    def expire_samples(self, before_us: int) -> ExpiredSamples:
        """Fold every raw sample older than *before_us* into its minute, then delete it."""
        minute = _minute(_SAMPLES.c.ts_us).label("minute_us")
        folded = (
            select(
                _SAMPLES.c.vehicle_id,
                _SAMPLES.c.signal_id,
                minute,
                func.count().label("count"),
                func.min(_SAMPLES.c.value).label("minimum"),
                func.max(_SAMPLES.c.value).label("maximum"),
                func.sum(_SAMPLES.c.value).label("total"),
            )
            .where(_SAMPLES.c.ts_us < before_us)
            .group_by(_SAMPLES.c.vehicle_id, _SAMPLES.c.signal_id, minute)
        )
        insert = insert_for(self._engine, _MINUTES).from_select(
            ["vehicle_id", "signal_id", "minute_us", "count", "minimum", "maximum", "total"],
            folded,
        )
        stored, new = _MINUTES.c, insert.excluded
        merge = insert.on_conflict_do_update(
            index_elements=["vehicle_id", "signal_id", "minute_us"],
            set_={
                "count": stored.count + new.count,
                "minimum": case((new.minimum < stored.minimum, new.minimum), else_=stored.minimum),
                "maximum": case((new.maximum > stored.maximum, new.maximum), else_=stored.maximum),
                "total": stored.total + new.total,
            },
        )
        with self._translated("expire samples"), maintenance_transaction(self._engine) as conn:
            minutes = conn.execute(merge).rowcount
            samples = conn.execute(delete(_SAMPLES).where(_SAMPLES.c.ts_us < before_us)).rowcount
        return ExpiredSamples(samples=max(samples, 0), minutes=max(minutes, 0))

    def expire_aggregates(self, before_us: int) -> int:
        """Delete the per-minute aggregates of minutes before *before_us*; how many."""
        return self._delete(
            "expire aggregates", delete(_MINUTES).where(_MINUTES.c.minute_us < before_us)
        )

    def expire_events(self, before_us: int) -> int:
        """Delete events that happened before *before_us* (CAN time); how many."""
        return self._delete("expire events", delete(_EVENTS).where(_EVENTS.c.ts_us < before_us))

    def expire_trips(self, before_us: int) -> int:
        """Delete trips that ended before *before_us*, and idle totals of days before it."""
        day = dt.datetime.fromtimestamp(before_us / 1e6, tz=dt.UTC).date()
        trips = delete(_TRIPS).where(
            and_(_TRIPS.c.end_us.is_not(None), _TRIPS.c.end_us < before_us)
        )
        with self._translated("expire trips"), maintenance_transaction(self._engine) as conn:
            count = conn.execute(trips).rowcount
            conn.execute(delete(_DAILY_IDLE).where(_DAILY_IDLE.c.day < day))
        return max(count, 0)

    def _delete(self, action: str, statement: Delete) -> int:
        with self._translated(action), maintenance_transaction(self._engine) as conn:
            count = conn.execute(statement).rowcount
        return max(int(count), 0)

    # ------------------------------------------------------------------ the history

    def history(
        self, vehicle_id: str, bus: str, message: str, signal: str, start_us: int, end_us: int
    ) -> list[MinuteStats]:
        """Per-minute statistics of one signal in the minutes overlapping ``[start_us, end_us)``.

        Oldest first. Minutes whose raw samples expired come from the
        aggregates; minutes with raw samples are aggregated now; a minute with
        both (late samples not yet expired) is merged.
        """
        start_us -= start_us % MINUTE_US
        end_us += -end_us % MINUTE_US
        with self._connection("read history") as conn:
            pk = require_vehicle(conn, vehicle_id)
            signal_id = _signal_id(conn, bus, message, signal)
            if signal_id is None:
                raise UnknownSignal(f"no signal {bus}/{message}/{signal} in this tenant")
            raw_minute = _minute(_SAMPLES.c.ts_us)
            raw = (
                select(
                    raw_minute.label("minute_us"),
                    func.count().label("count"),
                    func.min(_SAMPLES.c.value).label("minimum"),
                    func.max(_SAMPLES.c.value).label("maximum"),
                    func.sum(_SAMPLES.c.value).label("total"),
                )
                .where(
                    _SAMPLES.c.vehicle_id == pk,
                    _SAMPLES.c.signal_id == signal_id,
                    _SAMPLES.c.ts_us >= start_us,
                    _SAMPLES.c.ts_us < end_us,
                )
                .group_by(literal_column("minute_us"))
            )
            stored = select(
                _MINUTES.c.minute_us, _MINUTES.c.count, _MINUTES.c.minimum,
                _MINUTES.c.maximum, _MINUTES.c.total,
            ).where(
                _MINUTES.c.vehicle_id == pk,
                _MINUTES.c.signal_id == signal_id,
                _MINUTES.c.minute_us >= start_us,
                _MINUTES.c.minute_us < end_us,
            )  # fmt: skip
            both = union_all(raw, stored).subquery()
            rows = conn.execute(
                select(
                    both.c.minute_us,
                    func.sum(both.c["count"]),
                    func.min(both.c.minimum),
                    func.max(both.c.maximum),
                    func.sum(both.c.total),
                )
                .group_by(both.c.minute_us)
                .order_by(both.c.minute_us)
            ).all()
        return [
            MinuteStats(int(m), int(n), float(lo), float(hi), float(total) / int(n))
            for m, n, lo, hi, total in rows
        ]


def _signal_id(conn: Connection, bus: str, message: str, name: str) -> int | None:
    signals = table(Signal)
    return conn.execute(
        select(signals.c.id).where(
            signals.c.bus == bus, signals.c.message == message, signals.c.name == name
        )
    ).scalar_one_or_none()
