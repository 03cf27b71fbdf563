"""The rules worker over a real tenant store, on SQLite and on PostgreSQL.

The drive recording is ingested as the gateway would store it (batches of
samples in time order); processing the batches one by one through the store
must give what the engine gives over the whole recording in one go.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import text

from cloud.domain import FaultCode, FaultState, SampleColumns, SignalDef
from cloud.errors import UnknownBatch, UnknownVehicle
from cloud.rules import EventKind, RuleConfig, RuleEngine, ServiceRecord
from cloud.rules.worker import RulesWorker, configs_from_directory
from cloud.store import TenantStore
from cloud.store.dialect import create_tenant_engine
from cloud.store.rules import RuleResults, RuleStateMoved
from cloud.store.schema import upgrade_schema
from tests.cloud.rules.scenarios import drive

CAR, OTHER = "car-1", "car-2"
SIGNALS = {"Speed": "gnss_speed", "Latitude": "gnss_pos", "Longitude": "gnss_pos",
           "DistanceTrip": "gnss_odo"}  # fmt: skip
CONFIG = RuleConfig.model_validate(
    {
        "signals": {
            "speed": {"name": "Speed", "unit": "m/s"},
            "latitude": {"name": "Latitude", "unit": "deg"},
            "longitude": {"name": "Longitude", "unit": "deg"},
            "odometer": {"name": "DistanceTrip", "unit": "m"},
        },
        "thresholds": {"trip_end_gap_s": 10},
        "geofences": [
            {"kind": "circle", "name": "home", "latitude": 56.0987, "longitude": 10.2183,
             "radius_m": 300},
        ],
    }
)  # fmt: skip
TENANT = "acme"


def enrol(store: TenantStore, vehicle: str) -> dict[str, int]:
    store.enroll_vehicle(vehicle)
    defs = [SignalDef(i, "can1", msg, name) for i, (name, msg) in enumerate(SIGNALS.items())]
    catalog = store.register_catalog(vehicle, "agent/1", 1, defs)
    return {name: catalog.signal_ids[i] for i, name in enumerate(SIGNALS)}


def ingest_drive(store: TenantStore, vehicle: str, batches: int) -> int:
    """The drive's mapped signals stored as ``batches`` consecutive batches; their count."""
    ids = enrol(store, vehicle)
    samples = drive()
    ts = np.concatenate([samples[name][0] for name in SIGNALS])
    vs = np.concatenate([samples[name][1] for name in SIGNALS])
    sid = np.concatenate([np.full(len(samples[name][0]), ids[name]) for name in SIGNALS])
    order = np.argsort(ts, kind="stable")
    for sequence, part in enumerate(np.array_split(order, batches), start=1):
        columns = SampleColumns(sid[part].tolist(), ts[part].tolist(), vs[part].tolist())
        assert not store.ingest(vehicle, sequence, columns).duplicate
    return batches


def one_go() -> RuleEngine:
    engine = RuleEngine.new(CONFIG, CAR)
    engine.process({name: drive()[name] for name in SIGNALS})
    return engine


def test_batches_processed_one_by_one_store_what_the_engine_makes_in_one_go(
    store: TenantStore,
) -> None:
    worker = RulesWorker({TENANT: CONFIG})
    count = ingest_drive(store, CAR, 9)
    published = []
    for sequence in range(1, count + 1):
        published += worker.process_batch(store, CAR, sequence, tenant=TENANT)
    expected = one_go()
    whole = RuleEngine.new(CONFIG, CAR).process({name: drive()[name] for name in SIGNALS})
    assert published == whole.events
    assert store.events(CAR) == whole.events
    kinds = {event.kind for event in published}
    assert {EventKind.TRIP_STARTED, EventKind.TRIP_ENDED, EventKind.GEOFENCE_EXIT} <= kinds
    trips = store.trips(CAR)
    assert len(trips) == 3
    assert trips == whole.trips
    assert [trip.end_us is None for trip in trips] == [False, False, True]
    assert store.health(CAR) == expected.health()
    assert store.daily_idle(CAR) == []  # no idling: every stop of this drive ended its trip
    assert store.rule_batches_processed(CAR) == list(range(1, count + 1))
    # Queries filter by kind and time.
    ended = store.events(CAR, kinds=[EventKind.TRIP_ENDED])
    assert [event.ts_us for event in ended] == [trip.end_us for trip in trips[:2]]
    assert store.events(CAR, since_us=ended[1].ts_us, until_us=ended[1].ts_us + 1) == [ended[1]]
    assert store.trips(CAR, since_us=trips[1].start_us) == trips[1:]


def test_processing_a_batch_again_stores_nothing_twice(store: TenantStore) -> None:
    worker = RulesWorker({TENANT: CONFIG})
    ingest_drive(store, CAR, 3)
    first = worker.process_batch(store, CAR, 2, tenant=TENANT)
    assert first
    assert worker.process_batch(store, CAR, 2, tenant=TENANT) == []
    assert store.events(CAR) == first
    assert store.rule_batches_processed(CAR) == [2]


def test_a_stale_state_is_refused_and_nothing_of_it_is_stored(store: TenantStore) -> None:
    worker = RulesWorker({TENANT: CONFIG})
    ingest_drive(store, CAR, 3)
    keys = [(name, None, None) for name in SIGNALS]
    stale = store.rule_input(CAR, 2, keys)
    assert stale is not None
    assert stale.version == 0
    worker.process_batch(store, CAR, 1, tenant=TENANT)
    with pytest.raises(RuleStateMoved):
        store.store_rule_results(
            CAR, 2, RuleResults(version=stale.version, state={}, last_fault_id=0)
        )
    assert store.rule_batches_processed(CAR) == [1]
    # The worker itself reads again and builds on the newer state.
    worker.process_batch(store, CAR, 2, tenant=TENANT)
    assert store.rule_batches_processed(CAR) == [1, 2]
    fresh = store.rule_input(CAR, 3, keys)
    assert fresh is not None
    assert fresh.version == 2


def test_vehicles_processed_concurrently_get_what_they_get_alone(store: TenantStore) -> None:
    worker = RulesWorker({TENANT: CONFIG})
    count = ingest_drive(store, CAR, 6)
    ingest_drive(store, OTHER, 6)

    def run(vehicle: str) -> int:
        return sum(
            len(worker.process_batch(store, vehicle, s, tenant=TENANT)) for s in range(1, count + 1)
        )

    with ThreadPoolExecutor(max_workers=2) as pool:
        totals = list(pool.map(run, [CAR, OTHER]))
    assert totals[0] == totals[1] == len(store.events(CAR)) > 0
    assert store.trips(CAR) == store.trips(OTHER)
    assert [(e.kind, e.ts_us) for e in store.events(CAR)] == [
        (e.kind, e.ts_us) for e in store.events(OTHER)
    ]


def test_workers_racing_on_one_vehicle_process_each_batch_once(store: TenantStore) -> None:
    count = ingest_drive(store, CAR, 8)

    def run(sequences: range) -> None:
        # Each thread its own worker, as separate processes would be.
        worker = RulesWorker({TENANT: CONFIG})
        for sequence in sequences:
            worker.process_batch(store, CAR, sequence, tenant=TENANT)

    with ThreadPoolExecutor(max_workers=2) as pool:
        for future in [pool.submit(run, range(1, count + 1, 2)), pool.submit(run, range(2, 9, 2))]:
            future.result()
    assert store.rule_batches_processed(CAR) == list(range(1, count + 1))
    events = store.events(CAR)
    assert len({event.id for event in events}) == len(events) > 0
    keys = [(name, None, None) for name in SIGNALS]
    assert store.rule_input(CAR, count, keys) is None


def test_fault_codes_stored_between_batches_are_fed_once(store: TenantStore) -> None:
    cfg = RuleConfig.model_validate(
        {"signals": CONFIG.signals.model_dump(), "fault_severity": {"P03": "critical"}}
    )
    worker = RulesWorker(lambda tenant: cfg)
    ingest_drive(store, CAR, 3)
    t0 = int(drive()["Speed"][0][0])
    store.store_fault_report(
        CAR, 1, [FaultCode("uds", "can1", 0x10, "P0301", FaultState.SET, t0 + 5)]
    )
    first = worker.process_batch(store, CAR, 1)
    assert [(e.kind, e.details["code"]) for e in first if e.kind.startswith("fault")] == [
        (EventKind.FAULT_SET, "P0301")
    ]
    health = store.health(CAR)
    assert health is not None
    assert [reason.code for reason in health.reasons] == ["fault:uds/can1/16/P0301"]
    assert health.score == 100 - 35
    # The same code again (resent) and its clearing, stored before the next batch.
    store.store_fault_report(
        CAR, 2, [FaultCode("uds", "can1", 0x10, "P0301", FaultState.CLEARED, t0 + 9)]
    )
    second = worker.process_batch(store, CAR, 2)
    assert [e.kind for e in second if e.kind.startswith("fault")] == [EventKind.FAULT_CLEARED]
    third = worker.process_batch(store, CAR, 3)
    assert [e for e in third if e.kind.startswith("fault")] == []
    health = store.health(CAR)
    assert health is not None
    assert health.reasons == ()


def test_maintenance_is_measured_from_the_stored_service_record(store: TenantStore) -> None:
    cfg = RuleConfig.model_validate(
        {
            "signals": CONFIG.signals.model_dump(),
            "models": {"van": {"service_every_km": 2.0, "service_every_days": None}},
        }
    )
    ingest_drive(store, CAR, 2)
    record = ServiceRecord(model="van", serviced_at_us=1, odometer_km=0.0)
    store.set_service_record(CAR, record)
    assert store.service_record(CAR) == record
    events = RulesWorker({"": cfg}).process_batch(store, CAR, 1)
    events += RulesWorker({"": cfg}).process_batch(store, CAR, 2)
    (due,) = [e for e in events if e.kind is EventKind.MAINTENANCE_DUE]
    # DistanceTrip (m) as the odometer: due at the first sample at or past 2 km.
    t, metres = drive()["DistanceTrip"]
    assert due.ts_us == int(t[np.argmax(metres >= 2000)])
    assert due.details["reason"] == "distance"


def test_unknown_vehicles_and_batches_are_refused(store: TenantStore) -> None:
    worker = RulesWorker({})
    with pytest.raises(UnknownVehicle):
        worker.process_batch(store, "ghost", 1)
    store.enroll_vehicle(CAR)
    with pytest.raises(UnknownBatch):
        worker.process_batch(store, CAR, 7)
    assert store.health(CAR) is None
    assert store.daily_idle(CAR, since=date(2020, 1, 1)) == []


def test_configs_come_from_a_directory_per_tenant(tmp_path: Path) -> None:
    (tmp_path / "acme.json").write_text(CONFIG.model_dump_json())
    config_for = configs_from_directory(tmp_path)
    assert config_for("acme") == CONFIG
    assert config_for("globex") == RuleConfig()


def test_a_batch_stored_before_revision_0003_is_read_back_whole(tenant_url: str) -> None:
    engine = create_tenant_engine(tenant_url)
    try:
        # At 0001 samples are one plain table (0002 makes the day partitions it needs).
        upgrade_schema(engine, "0001")
        speed = drive()["Speed"]
        with engine.connect() as conn:
            conn.execute(
                text("INSERT INTO vehicles (id, vehicle_id, enrolled_at, last_sequence) "
                     "VALUES (1, :v, :t, 1)"),
                {"v": CAR, "t": datetime.now(UTC)},
            )  # fmt: skip
            conn.execute(
                text("INSERT INTO signals (id, bus, message, name, frame_id, is_extended, unit,"
                     " choices, is_float, pgn) VALUES (1, 'can1', 'gnss_speed', 'Speed', 7,"
                     " false, 'm/s', '{}', false, 0)")
            )  # fmt: skip
            conn.execute(
                text(
                    "INSERT INTO samples (vehicle_id, signal_id, ts_us, value) "
                    "VALUES (1, 1, :t, :v)"
                ),
                [{"t": int(t), "v": float(v)} for t, v in zip(*speed, strict=True)],
            )
            conn.execute(
                text("INSERT INTO batches (vehicle_id, sequence, samples, received_at) "
                     "VALUES (1, 1, :n, :t)"),
                {"n": len(speed[0]), "t": datetime.now(UTC)},
            )  # fmt: skip
            conn.commit()
    finally:
        engine.dispose()
    store = TenantStore.open(tenant_url)
    try:
        events = RulesWorker({"": CONFIG}).process_batch(store, CAR, 1)
        whole = RuleEngine.new(CONFIG, CAR).process({"Speed": speed})
        assert events == whole.events
        assert [e.kind for e in events].count(EventKind.TRIP_ENDED) == 2
    finally:
        store.close()
