"""The vectorised decoder on the real CSS Electronics recordings, against python-can + cantools.

The reference reads each log with python-can's ``LogReader`` and decodes frame by
frame with ``Message.decode`` (matched by id and extended flag, J1939 by PGN);
the engine reads the same log with :func:`vehicle_agent.logs.read_columns`. Every
frame must give the same message, signals, values and types, and the README's
reference figures must come out.
"""

from __future__ import annotations

import statistics
from functools import cache
from pathlib import Path

import can
import pytest

from tests.tools.decode_reference import (
    RefSource,
    assert_same_records,
    flatten,
    reference,
)
from tools.decode import decode_log
from vehicle_agent.catalog import is_j1939_database, load_dbc
from vehicle_agent.logs import read_columns
from vehicle_agent.vector import DbcSource, VectorDecoder

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
DRIVE = ROOT / "tools" / "demo_data" / "drive-gnss"
TRUCK = ROOT / "tools" / "demo_data" / "truck-j1939"
TP = ROOT / "tests" / "data" / "css-electronics" / "transport-protocols"
DRIVE_LOG, DRIVE_DBC = DRIVE / "drive_545s.MF4", DRIVE / "canmod-gps.dbc"
TRUCK_LOG, J1939_DBC = TRUCK / "truck_idle_127s.MF4", TRUCK / "CSS-Electronics-SAE-J1939-DEMO.dbc"
GNSS_DBC = TRUCK / "canmod-gps.dbc"

Frames = list[tuple[int, bytes, bool, bool, object]]


@cache
def python_can_frames(path: Path) -> Frames:
    with can.LogReader(str(path)) as reader:
        return [
            (
                msg.arbitration_id,
                bytes(msg.data),
                msg.is_extended_id,
                msg.is_remote_frame or msg.is_error_frame,
                msg.channel,
            )
            for msg in reader
        ]


def _compare(
    log: Path,
    dbcs: list[tuple[Path, str | None]],
    *,
    choices: bool = False,
    scaling: bool = True,
    chunk: int = 65_536,
) -> VectorDecoder:
    databases = [(load_dbc(path), channel) for path, channel in dbcs]
    decoder = VectorDecoder(
        [DbcSource(db, "dbc", is_j1939_database(db), channel) for db, channel in databases],
        choices=choices,
        scaling=scaling,
    )
    batches = [
        (columns.first_position, batch)
        for columns in read_columns(log, chunk_frames=chunk)
        for batch in decoder.decode(columns)
    ]
    expected = reference(
        python_can_frames(log),
        [RefSource(db, is_j1939_database(db), channel) for db, channel in databases],
        choices=choices,
        scaling=scaling,
    )
    assert_same_records(flatten(batches), expected.records)
    counts = decoder.counts
    assert counts.frames == len(python_can_frames(log))
    assert (counts.decode_errors, counts.unknown_ids, counts.skipped) == (
        expected.decode_errors,
        expected.unknown,
        expected.skipped,
    )
    return decoder


def _values(decoder: VectorDecoder, log: Path, message: str, signal: str) -> list[float]:
    """One signal's values, decoding the log again (the decoder's counters keep counting)."""
    out: list[float] = []
    for columns in read_columns(log):
        for batch in decoder.decode(columns):
            if batch.message.name == message:
                (column,) = [c for c in batch.columns if c.signal.name == signal]
                assert column.valid is None
                out += column.values.tolist()
    return out


def test_drive_equals_cantools_and_the_readme() -> None:
    decoder = _compare(DRIVE_LOG, [(DRIVE_DBC, None)])
    assert decoder.counts.frames_decoded == 57_604
    assert all(output.vectorised for output in decoder.outputs)
    speed = _values(decoder, DRIVE_LOG, "gnss_speed", "Speed")
    assert (len(speed), round(statistics.fmean(speed), 6)) == (510, 9.499214)


def test_drive_with_labels_and_raw_values() -> None:
    _compare(DRIVE_LOG, [(DRIVE_DBC, None)], choices=True, scaling=False, chunk=10_000)


def test_truck_j1939_equals_cantools_and_the_readme() -> None:
    decoder = _compare(TRUCK_LOG, [(J1939_DBC, None)])
    assert decoder.counts.frames_decoded == 13_991
    engine_speed = _values(decoder, TRUCK_LOG, "EEC1", "EngineSpeed")
    assert (len(engine_speed), round(statistics.fmean(engine_speed), 6)) == (12_719, 650.048569)


def test_truck_with_both_dbcs() -> None:
    both = _compare(TRUCK_LOG, [(J1939_DBC, None), (GNSS_DBC, None)], choices=True)
    assert both.counts.frames_decoded == 13_991 + 12_278
    # The README's channel assignment gives the same frames.
    by_channel = _compare(TRUCK_LOG, [(J1939_DBC, "1"), (GNSS_DBC, "2")])
    assert by_channel.counts.by_message == both.counts.by_message


def test_transport_protocol_logs() -> None:
    """Multi-frame messages (longer than one frame) fail like cantools: nothing decodes."""
    j1939 = _compare(TP / "j1939_tp.MF4", [(TP / "tp_j1939.dbc", None)])
    uds = _compare(TP / "uds_isotp.MF4", [(TP / "tp_uds.dbc", None)], choices=True)
    assert j1939.counts.frames_decoded == 0
    assert uds.counts.decode_errors == uds.counts.frames == 2_010


def test_decode_log() -> None:
    """The documented entry point: a log and sources to batches, chunk by chunk."""
    decoder = VectorDecoder([DbcSource(load_dbc(DRIVE_DBC), "gnss")])
    sizes = [
        sum(len(batch) for batch in batches)
        for batches in decode_log(DRIVE_LOG, [], decoder=decoder, chunk_frames=20_000)
    ]
    assert len(sizes) == 4
    assert sum(sizes) == decoder.counts.frames_decoded == 57_604
