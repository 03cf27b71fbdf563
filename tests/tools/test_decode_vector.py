"""Exactness of the vectorised decoder against cantools, frame by frame.

Every message of every DBC file of the cantools corpus that cantools loads gets
random payloads, payloads with each multiplexer branch selected, all-zero and
all-one payloads and wrong lengths; the engine's values (and their types, and
labels) must equal ``Message.decode``'s for every frame, with scaling on and off
and choices as labels or not. Hand-written DBCs cover what the corpus lacks.
The bundled recordings are compared in ``test_decode_recordings.py``.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import cantools
import numpy as np
import pytest
from cantools.database.can import Database, Message, Signal
from cantools.database.conversion import BaseConversion
from cantools.database.errors import UnsupportedDatabaseFormatError

from tests.tools.decode_reference import (
    RefSource,
    assert_same_records,
    columns_from,
    flatten,
    reference,
)
from vehicle_agent.catalog import is_j1939_database
from vehicle_agent.logs import columns as log_columns
from vehicle_agent.logs.columns import FrameColumns
from vehicle_agent.vector import DbcSource, VectorDecoder

ROOT = Path(__file__).resolve().parents[2]
CORPUS_DIR = ROOT / "tests" / "data" / "cantools-dbc"
CORPUS = sorted(p for p in CORPUS_DIR.iterdir() if p.suffix.lower() == ".dbc")
KNOWN_REJECTED = {
    "incorrect-sig_valtype.dbc",
    "incorrect-val.dbc",
    "issue_199.dbc",
    "issue_199_extended.dbc",
}
LOADABLE = [p for p in CORPUS if p.name not in KNOWN_REJECTED]
RANDOM_PAYLOADS = 16
MUX_PATHS = 24  # at most this many multiplexer branch paths per message, 2 payloads each
OPTIONS = [(False, True), (False, False), (True, True), (True, False)]  # (choices, scaling)
Frame = tuple[int, bytes, bool]


def _load(path: Path) -> Database:
    database = cantools.database.load_file(path, database_format="dbc", strict=False)
    assert isinstance(database, Database)
    return database


def _load_text(text: str) -> Database:
    database = cantools.database.load_string(text, database_format="dbc", strict=False)
    assert isinstance(database, Database)
    return database


# --- payloads ----------------------------------------------------------------


def _set_raw(payload: bytearray, signal: Signal, raw: int, length: int) -> None:
    """Write *raw* into *signal*'s bits (two's complement for negative values)."""
    bits = signal.length
    mask = (1 << bits) - 1
    if signal.byte_order == "little_endian":
        value = int.from_bytes(payload, "little")
        shift = signal.start
        value = (value & ~(mask << shift)) | ((raw & mask) << shift)
        payload[:] = value.to_bytes(length, "little")
    else:
        start = 8 * (signal.start // 8) + 7 - signal.start % 8
        shift = 8 * length - start - bits
        if shift < 0:
            return
        value = int.from_bytes(payload, "big")
        value = (value & ~(mask << shift)) | ((raw & mask) << shift)
        payload[:] = value.to_bytes(length, "big")


def _mux_paths(
    message: Message, codec: Mapping[str, Any], path: tuple[tuple[Signal, int], ...]
) -> Iterator[tuple[tuple[Signal, int], ...]]:
    """Every chain of (multiplexer, raw value) assignments that reaches a branch."""
    for mux_name, branches in codec["multiplexers"].items():
        signal = message.get_signal_by_name(mux_name)
        for branch, child in branches.items():
            try:
                raw = int(signal.conversion.numeric_scaled_to_raw(branch))
            except (TypeError, ValueError, ZeroDivisionError):
                raw = branch
            chain = (*path, (signal, raw))
            yield chain
            yield from _mux_paths(message, child, chain)


def payloads(message: Message, rng: random.Random) -> list[bytes]:
    length = message.length
    out = [bytes(length), b"\xff" * length]
    out += [rng.randbytes(length) for _ in range(RANDOM_PAYLOADS)]
    codecs = message._codecs
    if codecs is not None and codecs["multiplexers"]:
        paths = list(_mux_paths(message, codecs, ()))
        if len(paths) > MUX_PATHS:
            paths = [paths[i * len(paths) // MUX_PATHS] for i in range(MUX_PATHS)]
        for chain in paths:
            for _ in range(2):
                payload = bytearray(rng.randbytes(length))
                for signal, raw in chain:
                    _set_raw(payload, signal, raw, length)
                out.append(bytes(payload))
    # Shorter fails (DecodeError), longer is cut; CAN FD keeps to 64 bytes.
    if length:
        out += [rng.randbytes(length - 1), b""]
    out += [rng.randbytes(min(length + extra, 64)) for extra in (1, 8)]
    return out


def corpus_frames(database: Database, seed: str) -> list[Frame]:
    rng = random.Random(seed)
    frames: list[Frame] = []
    for message in database.messages:
        ident, extended = message.frame_id, message.is_extended_frame
        frames += [(ident, data, extended) for data in payloads(message, rng)]
    # Ids no message has (unknown), then a shuffle: grouping must restore log order.
    frames += [(0x7FF, b"\x01" * 8, False), (0x1FFFFFFF, b"", True)]
    rng.shuffle(frames)
    return frames


# --- comparing -----------------------------------------------------------------


def _chunks(frames: list[Frame], size: int) -> list[FrameColumns]:
    return [columns_from(frames[i : i + size], i) for i in range(0, len(frames), size)]


def assert_engine_equals_cantools(
    database: Database,
    frames: list[Frame],
    *,
    choices: bool,
    scaling: bool,
    j1939: bool = False,
    chunk: int = 1_000_000,
) -> VectorDecoder:
    decoder = VectorDecoder([DbcSource(database, "db", j1939)], choices=choices, scaling=scaling)
    batches = [
        (chunk_columns.first_position, batch)
        for chunk_columns in _chunks(frames, chunk)
        for batch in decoder.decode(chunk_columns)
    ]
    expected = reference(
        [(i, d, e, False, 0) for i, d, e in frames],
        [RefSource(database, j1939)],
        choices=choices,
        scaling=scaling,
    )
    assert_same_records(flatten(batches), expected.records)
    for _, batch in batches:
        for column in batch.columns:
            # A signal promised in every frame (a Parquet column without nulls) is in every frame.
            assert column.signal.optional or column.valid is None or column.valid.all()
    counts = decoder.counts
    assert counts.decode_errors == expected.decode_errors
    assert counts.unknown_ids == expected.unknown
    assert counts.frames_decoded == len(expected.records)
    assert counts.frames == (
        counts.skipped
        + counts.unknown_ids
        + counts.not_selected
        + counts.decode_errors
        + counts.frames_decoded
    )
    return decoder


def test_flag_bits_agree_with_the_log_columns() -> None:
    from vehicle_agent import vector

    assert (vector.EXTENDED, vector.REMOTE, vector.ERROR) == (
        log_columns.EXTENDED,
        log_columns.REMOTE,
        log_columns.ERROR,
    )


def test_the_corpus_loads_except_the_known_rejections() -> None:
    rejected = set()
    for path in CORPUS:
        try:
            _load(path)
        except UnsupportedDatabaseFormatError:
            rejected.add(path.name)
    assert rejected == KNOWN_REJECTED


@pytest.mark.parametrize("path", LOADABLE, ids=[p.name for p in LOADABLE])
def test_corpus_vector_equals_cantools(path: Path) -> None:
    database = _load(path)
    frames = corpus_frames(database, path.name)
    j1939 = is_j1939_database(database)
    for choices, scaling in OPTIONS:
        assert_engine_equals_cantools(
            database, frames, choices=choices, scaling=scaling, j1939=j1939
        )


def test_corpus_in_small_chunks() -> None:
    """Chunk boundaries change nothing (positions, grouping, multiplexing)."""
    for name in ("multiplex_2.dbc", "vehicle.dbc", "fd_test.dbc"):
        database = _load(CORPUS_DIR / name)
        frames = corpus_frames(database, name)
        assert_engine_equals_cantools(database, frames, choices=True, scaling=True, chunk=37)


def test_the_corpus_is_vectorised() -> None:
    """Every message of the corpus but the overlapping layouts takes the vector path."""
    fallbacks: dict[str, str | None] = {}
    total = 0
    for path in LOADABLE:
        decoder = VectorDecoder([DbcSource(_load(path), path.name)], choices=True)
        for output in decoder.outputs:
            total += 1
            if not output.vectorised:
                fallbacks[f"{path.name}:{output.name}"] = output.fallback_reason
    assert total > 400
    assert len(fallbacks) <= total // 20, fallbacks
    assert all("overlaps or leaves" in str(reason) for reason in fallbacks.values()), fallbacks


# --- what the corpus lacks ------------------------------------------------------

EDGE_DBC = """VERSION ""
BS_:
BU_: X
BO_ 1 ScaledMux: 4 X
 SG_ Mux M : 0|8@1+ (2,1) [0|0] "" X
 SG_ A m3 : 8|8@1- (1,0) [0|0] "" X
 SG_ B m5 : 8|16@1+ (0.5,0) [0|0] "" X
BO_ 2 LabelMux: 3 X
 SG_ Mux M : 0|2@1+ (1,0) [0|0] "" X
 SG_ A m0 : 8|8@1+ (1,0) [0|0] "" X
 SG_ B m1 : 8|8@1+ (3,0) [0|0] "" X
 SG_ C m2 : 16|8@1+ (1,0) [0|0] "" X
BO_ 3 Wide: 8 X
 SG_ U64 : 0|64@1+ (3,-7) [0|0] "" X
BO_ 4 WideSigned: 8 X
 SG_ S64 : 7|64@0- (-1,0) [0|0] "" X
BO_ 5 WideFloatScale: 8 X
 SG_ U64 : 0|64@1+ (0.5,0.25) [0|0] "" X
BO_ 6 WideIntFloat: 8 X
 SG_ S64 : 0|64@1- (2,0.5) [0|0] "" X
BO_ 7 IntFloat: 8 X
 SG_ U32 : 0|32@1+ (1000,0.5) [0|0] "" X
 SG_ S1 : 32|1@1- (1,0) [0|0] "" X
 SG_ S31 : 39|31@0- (7,-3) [0|0] "" X
BO_ 8 Floats: 8 X
 SG_ F32 : 0|32@1- (1,0) [0|0] "" X
 SG_ F32B : 39|32@0- (0.1,-2) [0|0] "" X
BO_ 9 Double: 8 X
 SG_ F64 : 7|64@0- (1,0) [0|0] "" X
BO_ 10 FloatChoice: 4 X
 SG_ F : 0|32@1- (1,0) [0|0] "" X
BO_ 11 Overlap: 8 X
 SG_ A : 0|16@1+ (1,0) [0|0] "" X
 SG_ B : 8|16@1+ (1,0) [0|0] "" X
BO_ 12 PastEnd: 2 X
 SG_ A : 8|16@1+ (1,0) [0|0] "" X
BO_ 13 Fd: 64 X
 SG_ High : 448|64@1+ (1,0) [0|0] "" X
 SG_ HighBig : 431|16@0- (0.25,1) [0|0] "" X
 SG_ Mid : 260|40@1- (1,0) [0|0] "" X
 SG_ Straddle : 66|63@1+ (1,0) [0|0] "" X
BO_ 14 Choices: 2 X
 SG_ Gear : 0|4@1+ (1,0) [0|0] "" X
 SG_ Mode : 4|4@1- (2,1) [0|0] "" X
BO_ 15 NoSignals: 8 X
VAL_ 2 Mux 0 "A" 1 "A" 2 "B" ;
VAL_ 10 F 1 "one" 2 "two" ;
VAL_ 14 Gear 0 "P" 1 "R" 2 "N" 3 "D" ;
VAL_ 14 Mode -1 "back" 0 "off" 3 "sport" ;
SIG_VALTYPE_ 8 F32 : 1;
SIG_VALTYPE_ 8 F32B : 1;
SIG_VALTYPE_ 9 F64 : 2;
SIG_VALTYPE_ 10 F : 1;
"""


def _special_payloads(length: int) -> list[bytes]:
    floats = [
        np.array(v, dtype=">f4").tobytes() + np.array(v, dtype="<f4").tobytes()
        for v in (0.0, -0.0, 1.0, 2.0, 1.5, np.inf, -np.inf, np.nan, 1e-45, 3.4e38)
    ]
    doubles = [
        np.array(v, dtype=">f8").tobytes() for v in (-0.0, np.nan, np.inf, 5e-324, 1.7e308, 0.1)
    ]
    return [(p + bytes(length))[:length] for p in floats + doubles]


def edge_frames(database: Database, seed: str) -> list[Frame]:
    rng = random.Random(seed)
    frames: list[Frame] = []
    for message in database.messages:
        length = message.length
        data = payloads(message, rng) + [rng.randbytes(length) for _ in range(40)]
        data += _special_payloads(length)
        data += [bytes([value]) + rng.randbytes(length - 1) for value in range(8) if length]
        frames += [(message.frame_id, d, message.is_extended_frame) for d in data]
    rng.shuffle(frames)
    return frames


@pytest.mark.parametrize(("choices", "scaling"), OPTIONS)
def test_edge_cases_equal_cantools(choices: bool, scaling: bool) -> None:
    database = _load_text(EDGE_DBC)
    frames = edge_frames(database, "edge")
    decoder = assert_engine_equals_cantools(database, frames, choices=choices, scaling=scaling)
    paths = {o.name: o.vectorised for o in decoder.outputs}
    assert not paths["Overlap"]
    assert not paths["PastEnd"]
    assert not paths["Fd"]  # Straddle spans 9 bytes
    assert paths["FloatChoice"] is not choices
    vectorised = {"ScaledMux", "LabelMux", "Wide", "WideSigned", "WideFloatScale"}
    vectorised |= {"WideIntFloat", "IntFloat", "Floats", "Double", "Choices", "NoSignals"}
    assert all(paths[name] for name in vectorised)


def test_output_dtypes_hold_every_value() -> None:
    decoder = VectorDecoder([DbcSource(_load_text(EDGE_DBC), "edge")])
    dtypes = {(o.name, s.name): s.dtype.kind for o in decoder.outputs for s in o.signals}
    assert dtypes[("Wide", "U64")] == "O"  # 3 * (2**64 - 1) - 7
    assert dtypes[("WideSigned", "S64")] == "O"  # -(-2**63)
    assert dtypes[("WideFloatScale", "U64")] == "f"
    assert dtypes[("IntFloat", "U32")] == "f"
    assert dtypes[("IntFloat", "S1")] == "i"
    raw = VectorDecoder([DbcSource(_load_text(EDGE_DBC), "edge")], scaling=False)
    assert {(o.name, s.name): s.dtype.kind for o in raw.outputs for s in o.signals}[
        ("Wide", "U64")
    ] == "u"


def test_fd_message_without_the_straddling_signal_is_vectorised() -> None:
    database = _load_text(EDGE_DBC.replace(' SG_ Straddle : 66|63@1+ (1,0) [0|0] "" X\n', ""))
    frames = edge_frames(database, "fd")
    decoder = assert_engine_equals_cantools(database, frames, choices=False, scaling=True)
    assert all(o.vectorised for o in decoder.outputs if o.name == "Fd")


def test_float16_signals() -> None:
    """DBC files cannot say it, but cantools decodes 16-bit floats too."""
    signals = [
        Signal(name="F", start=0, length=16, conversion=BaseConversion.factory(is_float=True)),
        Signal(
            name="G",
            start=23,
            length=16,
            byte_order="big_endian",
            conversion=BaseConversion.factory(scale=2, offset=1, is_float=True),
        ),
    ]
    database = Database(messages=[Message(frame_id=0x10, name="M", length=4, signals=signals)])
    database.refresh()
    frames = edge_frames(database, "f16")
    decoder = assert_engine_equals_cantools(database, frames, choices=False, scaling=True)
    assert decoder.outputs[0].vectorised


def test_first_source_wins_and_j1939_matches_the_pgn() -> None:
    j1939 = _load(CORPUS_DIR / "j1939.dbc")
    message = j1939.messages[0]
    other_sender = (message.frame_id & ~0xFF) | 0x42
    frames = [(other_sender, bytes(8), True), (message.frame_id, bytes(8), True)]
    decoder = VectorDecoder([DbcSource(j1939, "j", j1939=True)])
    decoder.decode(columns_from(frames))
    assert decoder.counts.frames_decoded == 2
    exact = VectorDecoder([DbcSource(j1939, "j", j1939=False)])
    exact.decode(columns_from(frames))
    assert (exact.counts.frames_decoded, exact.counts.unknown_ids) == (1, 1)


def test_selection_remote_and_error_frames() -> None:
    database = _load(CORPUS_DIR / "motohawk.dbc")
    message = database.messages[0]
    frames = [(message.frame_id, bytes(message.length), message.is_extended_frame)] * 4
    chunk = columns_from(frames)
    chunk.flags[1] |= log_columns.REMOTE
    chunk.flags[2] |= log_columns.ERROR
    decoder = VectorDecoder(
        [DbcSource(database, "m")], selection={message.name: [message.signals[0].name]}
    )
    (batch,) = decoder.decode(chunk)
    assert batch.rows.tolist() == [0, 3]
    assert [c.signal.name for c in batch.columns] == [message.signals[0].name]
    assert decoder.counts.skipped == 2
    assert decoder.counts.samples == 2
    nothing = VectorDecoder([DbcSource(database, "m")], selection={})
    assert nothing.decode(chunk) == []
    assert nothing.counts.not_selected == 2
    with pytest.raises(ValueError, match="unknown messages: Nope"):
        VectorDecoder([DbcSource(database, "m")], selection={"Nope": None})


def test_channel_limited_sources() -> None:
    database = _load(CORPUS_DIR / "motohawk.dbc")
    message = database.messages[0]
    chunk = columns_from([(message.frame_id, bytes(message.length), False)] * 2)
    chunk.channel[1] = 1
    chunk.channels = [1, 2]
    decoder = VectorDecoder([DbcSource(database, "m", channel="2")])
    (batch,) = decoder.decode(chunk)
    assert batch.rows.tolist() == [1]
    assert decoder.counts.unknown_ids == 1
