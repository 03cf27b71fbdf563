"""The spine end to end: real recordings → agent → real gRPC gateway on loopback → SQLite.

The stored rows are checked against an independent loop (python-can's reader and
cantools, written here without any telehub code) and against the reference values
published with the recordings.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import cast

import can
import cantools
import pytest
from sqlalchemy import select

from cloud.auth import issue_token
from cloud.server import GatewayServer
from cloud.store import TenantRegistry
from cloud.store.models import Sample, Signal, Vehicle
from tests.conftest import E2E_SECRET, E2E_TENANT
from tools.demo import Recording, demo_data, recordings
from vehicle_agent.app import Agent
from vehicle_agent.decoding import Decoder
from vehicle_agent.sources import LogSource

TENANT = E2E_TENANT
SECRET = E2E_SECRET
J1939_MASK = 0x03FFFF00

Row = tuple[str, str, int, float]  # message, signal, ts_us, value


def recording(vehicle_id: str) -> Recording:
    return next(r for r in recordings(demo_data()) if r.vehicle_id == vehicle_id)


def independent_rows(rec: Recording) -> list[Row]:
    """python-can + cantools only: what the store must hold for this recording."""
    dbs = []
    for spec in rec.dbcs:
        j1939 = "J1939" in spec.path.name
        db = cantools.database.load_file(spec.path, frame_id_mask=J1939_MASK if j1939 else None)
        assert isinstance(db, cantools.database.can.Database)
        dbs.append((spec.channel, db))
    rows: list[Row] = []
    with can.LogReader(rec.log) as reader:
        frames = list(reader)
    for msg in frames:
        if msg.is_error_frame or msg.is_remote_frame:
            continue
        for channel, db in dbs:
            if channel is not None and str(msg.channel) != channel:
                continue
            try:
                message = db.get_message_by_frame_id(msg.arbitration_id)
            except KeyError:
                continue
            if message.is_extended_frame != msg.is_extended_id:
                continue
            try:
                decoded = message.decode(bytes(msg.data), decode_choices=False)
            except cantools.database.DecodeError:
                break
            ts = round(msg.timestamp * 1_000_000)
            assert isinstance(decoded, dict)
            rows.extend((message.name, k, ts, float(cast(float, v))) for k, v in decoded.items())
            break
    return rows


def stored_rows(registry: TenantRegistry, vehicle_id: str) -> list[Row]:
    store = registry.store(TENANT)
    with store.engine.connect() as conn:
        result = conn.execute(
            select(Signal.message, Signal.name, Sample.ts_us, Sample.value)
            .join(Signal, Sample.signal_id == Signal.id)
            .join(Vehicle, Sample.vehicle_id == Vehicle.id)
            .where(Vehicle.vehicle_id == vehicle_id)
        )
        return [(m, s, int(t), float(v)) for m, s, t, v in result]


async def replay(rec: Recording, gateway: GatewayServer, registry: TenantRegistry) -> Agent:
    registry.store(TENANT).enroll_vehicle(rec.vehicle_id)
    agent = Agent(
        vehicle_id=rec.vehicle_id,
        token=issue_token(TENANT, rec.vehicle_id, SECRET),
        gateway=gateway.target,
        decoder=Decoder(rec.dbcs),
        source=LogSource(Path(rec.log)),
    )
    await agent.run(drain_timeout=120)
    return agent


@pytest.mark.slow
@pytest.mark.parametrize("vehicle_id", ["DEMO-CAR-0001", "DEMO-TRUCK-0001"])
async def test_stored_samples_equal_an_independent_decode(
    vehicle_id: str, gateway: GatewayServer, registry: TenantRegistry
) -> None:
    rec = recording(vehicle_id)
    agent = await replay(rec, gateway, registry)
    report = agent.report()

    expected = independent_rows(rec)
    stored = stored_rows(registry, vehicle_id)
    assert len(expected) > 10_000
    assert report.samples_sent == len(expected)
    assert len(stored) == len(expected)
    # Same multiset of (message, signal, CAN timestamp, value): nothing lost, nothing twice.
    assert Counter(stored) == Counter(expected)
    assert report.evicted_samples == report.rejected_samples == 0


@pytest.mark.slow
async def test_reference_values_come_back_from_the_database(
    gateway: GatewayServer, registry: TenantRegistry
) -> None:
    for rec in recordings(demo_data()):
        await replay(rec, gateway, registry)
    store = registry.store(TENANT)

    speed = store.signal_stats("DEMO-CAR-0001", "gnss_speed", "Speed")
    assert speed.count == 510
    assert speed.mean == pytest.approx(9.499214, abs=5e-7)
    assert speed.maximum == pytest.approx(20.529)
    for signal, mean in (("Latitude", 56.105229), ("Longitude", 10.187512)):
        stats = store.signal_stats("DEMO-CAR-0001", "gnss_pos", signal)
        assert stats.mean == pytest.approx(mean, abs=5e-7)
    altitude = store.signal_stats("DEMO-CAR-0001", "gnss_altitude", "Altitude")
    assert altitude.mean == pytest.approx(-1083.776078, abs=5e-7)

    rpm = store.signal_stats("DEMO-TRUCK-0001", "EEC1", "EngineSpeed")
    assert rpm.count == 12_719
    assert rpm.mean == pytest.approx(650.048569, abs=5e-7)
    assert (rpm.minimum, rpm.maximum) == (646.5, 653.75)
    wheel = store.signal_stats("DEMO-TRUCK-0001", "CCVS1", "WheelBasedVehicleSpeed")
    assert (wheel.count, wheel.minimum, wheel.maximum) == (1_272, 0, 0)

    latest = {v.signal: v for v in store.latest("DEMO-TRUCK-0001")}
    assert latest["EngineSpeed"].unit == "rpm"
    assert 646.5 <= latest["EngineSpeed"].value <= 653.75
    assert not any(math.isnan(v.value) for v in latest.values())
