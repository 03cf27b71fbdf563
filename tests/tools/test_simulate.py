"""``telehub simulate``: virtual vehicles from the drive recording, streaming to a real gateway."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from pydantic import SecretStr

from cloud.auth import issue_token
from cloud.server import GatewayServer
from cloud.store import TenantRegistry
from telehub.v1 import telemetry_pb2 as pb
from tests.conftest import E2E_SECRET, E2E_TENANT
from tools.bench.loopback import TENANT, LoopbackCloud
from tools.simulate.client import Pacer, SimVehicle, run_fleet
from tools.simulate.fleet import Recording, SimulationError, VehicleFeed, load_recording
from tools.simulate_cmd import main
from vehicle_agent.catalog import DbcSpec
from vehicle_agent.decoding import Decoder
from vehicle_agent.sources import LogSource
from vehicle_agent.wire import hello

ROOT = Path(__file__).resolve().parents[2]
DRIVE = ROOT / "tools" / "demo_data" / "drive-gnss"
SPECS = [DbcSpec(DRIVE / "canmod-gps.dbc", bus="gnss")]


@pytest.fixture(scope="module")
def recording() -> Recording:
    return load_recording(DRIVE / "drive_545s.MF4", SPECS, batch_samples=2_000)


def _batches(feed: VehicleFeed, count: int) -> list[pb.TelemetryBatch]:
    out = []
    for _ in range(count):
        _, _, payload = feed.next_batch()
        out.append(pb.VehicleMessage.FromString(payload).batch)
    return out


def _times(batch: pb.TelemetryBatch) -> np.ndarray:
    return batch.base_time_us + np.cumsum(np.array(batch.time_delta_us, dtype=np.int64))


def test_the_recording_holds_every_sample_the_agent_decodes(recording: Recording) -> None:
    decoder = Decoder(SPECS)
    with LogSource(DRIVE / "drive_545s.MF4") as source:
        expected = sum(len(decoder.decode(frame)) for frame in source)
    assert recording.frames == 65_296
    assert recording.samples == expected
    assert all(len(b.value) <= 2_000 for b in recording.batches)
    assert recording.span_us > 545_000_000 * 0.95


def test_a_feed_numbers_from_one_starts_now_and_laps_on_in_time(recording: Recording) -> None:
    start = 1_800_000_000_000_000
    feed = VehicleFeed(recording, start_us=start)
    laps = len(recording.batches)
    batches = _batches(feed, laps + 2)
    assert [b.sequence for b in batches] == list(range(1, laps + 3))
    assert _times(batches[0]).min() == start
    firsts = [int(_times(b).min()) for b in batches]
    # The second lap starts after the first one ended, by the recording's span.
    assert firsts[laps] == start + recording.span_us
    assert firsts[laps] > max(int(_times(b).max()) for b in batches[:laps])
    assert np.array_equal(np.array(batches[laps].value), np.array(batches[0].value))


def test_vehicles_start_at_their_own_phase_with_their_own_variation(recording: Recording) -> None:
    choices = {s.index for s in recording.catalog.signals if s.choices}
    assert choices  # the drive's DBC has enumerations, which must never be scaled
    plain = _batches(VehicleFeed(recording, start_us=0, phase=3), 1)[0]
    same = _batches(VehicleFeed(recording, start_us=0, phase=3, jitter=0.05, seed=7), 1)[0]
    again = _batches(VehicleFeed(recording, start_us=0, phase=3, jitter=0.05, seed=7), 1)[0]
    other = _batches(VehicleFeed(recording, start_us=0, phase=3, jitter=0.05, seed=8), 1)[0]
    assert np.array_equal(np.array(plain.value), recording.batches[3].value)
    assert list(same.value) == list(again.value)  # seeded: repeatable
    assert list(same.value) != list(other.value)
    index = np.array(plain.signal_index)
    base, varied = np.array(plain.value), np.array(same.value)
    enum = np.isin(index, list(choices))
    assert np.array_equal(base[enum], varied[enum])
    moved = ~enum & (base != 0)
    assert moved.any()
    assert not np.array_equal(base[moved], varied[moved])
    # One factor per signal and vehicle: the ratio is the same for every sample of a signal.
    for signal in np.unique(index[moved])[:5]:
        ratios = varied[moved & (index == signal)] / base[moved & (index == signal)]
        assert np.allclose(ratios, ratios[0], rtol=1e-12)


def test_bad_settings_are_refused(recording: Recording) -> None:
    with pytest.raises(SimulationError, match="at least 1 sample"):
        load_recording(DRIVE / "drive_545s.MF4", SPECS, batch_samples=0)
    with pytest.raises(SimulationError, match="jitter"):
        VehicleFeed(recording, start_us=0, jitter=-1)
    with pytest.raises(ValueError, match="rate must be positive"):
        Pacer(0)


def _fleet(registry: TenantRegistry, recording: Recording, ids: list[str]) -> list[SimVehicle]:
    registry.store(E2E_TENANT).enroll_vehicles(ids)
    return [
        SimVehicle(
            v,
            issue_token(E2E_TENANT, v, E2E_SECRET),
            recording.hello(v),
            VehicleFeed(recording, start_us=time.time_ns() // 1000, phase=i * 5),
        )
        for i, v in enumerate(ids)
    ]


async def test_a_fleet_is_stored_exactly_and_goes_on_where_it_stopped(
    gateway: GatewayServer, registry: TenantRegistry, recording: Recording
) -> None:
    ids = ["SIM-A", "SIM-B", "SIM-C"]
    fleet = _fleet(registry, recording, ids)
    stats = await run_fleet(gateway.target, fleet, batches=3, window=2)
    store = registry.store(E2E_TENANT)
    assert stats.connected == 3
    assert not stats.errors
    assert stats.batches_acked == 9
    assert stats.duplicates == 0
    assert stats.samples_acked == stats.samples_sent == store.count_samples()
    assert len(stats.latencies_ms) == 9
    assert stats.percentile_ms(99) is not None
    # A new run of the same vehicles (new feeds) continues after the stored sequences.
    again = await run_fleet(gateway.target, _fleet(registry, recording, ids), batches=2)
    assert again.duplicates == 0
    assert not again.errors
    assert all(store.last_sequence(v) == 5 for v in ids)
    assert store.count_samples() == stats.samples_acked + again.samples_acked


async def test_a_paced_fleet_holds_its_rate(
    gateway: GatewayServer, registry: TenantRegistry, recording: Recording
) -> None:
    fleet = _fleet(registry, recording, ["SIM-P1", "SIM-P2"])
    per_batch = 2_000
    rate = 10 * per_batch  # samples/s: about ten batches a second
    stats = await run_fleet(gateway.target, fleet, samples_per_s=rate, batches=4)
    assert stats.batches_acked == 8
    # 8 batches at 10 a second: the last one is sent after ~0.7 s, not at once.
    assert stats.wall_seconds >= 0.6 * (stats.samples_sent - per_batch) / rate


async def test_a_vehicle_that_is_not_enrolled_is_counted_as_an_error(
    gateway: GatewayServer, recording: Recording
) -> None:
    ghost = SimVehicle(
        "GHOST",
        issue_token(E2E_TENANT, "GHOST", E2E_SECRET),
        hello("GHOST", "test", recording.catalog, 0).SerializeToString(),
        VehicleFeed(recording, start_us=0),
    )
    stats = await run_fleet(gateway.target, [ghost], batches=1)
    assert stats.connected == 0
    assert sum(stats.errors.values()) == 1
    assert stats.samples_acked == 0


def test_the_command_streams_a_fleet_and_reports_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = SecretStr("simulate-secret-" + "x" * 32)
    monkeypatch.setenv(
        "TELEHUB_TENANTS", json.dumps({TENANT: {"token_secret": secret.get_secret_value()}})
    )
    with LoopbackCloud(tmp_path, secret=secret) as cloud:
        argv = ["--gateway", cloud.target, "--tenant", TENANT, "--data-dir", str(tmp_path)]
        argv += ["--vehicles", "3", "--batches", "2", "--max-rate", "--json"]
        code = main(argv)
        stored = sum(cloud.count_samples(f"SIM{i:05d}") for i in (1, 2, 3))
    out, err = capsys.readouterr()
    assert code == 0, err
    summary = json.loads(out)
    assert summary["connected"] == 3
    assert summary["batches_acked"] == 6
    assert summary["samples_acked"] == summary["samples_sent"] == stored > 0
    assert summary["errors"] == {}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--vehicles", "0"], "--vehicles must be at least 1"),
        (["--log", "missing.blf"], "--log needs at least one --dbc"),
        (["--tenant", "nobody"], "tenant 'nobody' is not configured"),
        (["--rate", "-5"], "--rate must be positive"),
    ],
)
def test_bad_arguments_exit_1_with_the_reason(
    extra: list[str],
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("TELEHUB_TENANTS", json.dumps({TENANT: {"token_secret": "y" * 40}}))
    argv = ["--gateway", "127.0.0.1:1", "--tenant", TENANT, "--data-dir", str(tmp_path), *extra]
    assert main(argv) == 1
    assert message in capsys.readouterr().err
