"""The per-frame cantools reference the decode tests compare the vectorised engine with.

Independent of :mod:`vehicle_agent.vector.decoder` on purpose: frames are matched with
plain dicts (first message wins, J1939 by parameter group number) and decoded
with ``Message.decode`` one by one; the engine's output is flattened to the same
shape, one record per decoded frame.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from cantools.database.can import Database, Message
from cantools.database.errors import DecodeError
from cantools.database.namedsignalvalue import NamedSignalValue

from vehicle_agent.catalog import j1939_pgn
from vehicle_agent.logs.columns import ERROR, EXTENDED, REMOTE, FrameColumns
from vehicle_agent.vector import MessageBatch

#: One decoded frame: {signal: (numeric value, label or None)}.
Record = dict[str, tuple[object, str | None]]


@dataclass(frozen=True)
class RefSource:
    database: Database
    j1939: bool = False
    channel: str | None = None


@dataclass
class Reference:
    """Records by frame position and message name, and the counters."""

    records: dict[int, tuple[str, Record]]
    decode_errors: int
    unknown: int
    skipped: int


def lookup(sources: Sequence[RefSource]) -> list[tuple[RefSource, dict[object, Message]]]:
    tables: list[tuple[RefSource, dict[object, Message]]] = []
    for source in sources:
        table: dict[object, Message] = {}
        for message in source.database.messages:
            if source.j1939 and message.is_extended_frame:
                table.setdefault(("pgn", j1939_pgn(message.frame_id)), message)
            else:
                table.setdefault((message.frame_id, message.is_extended_frame), message)
        tables.append((source, table))
    return tables


def find(
    tables: list[tuple[RefSource, dict[object, Message]]],
    ident: int,
    extended: bool,
    channel: object,
) -> Message | None:
    for source, table in tables:
        if source.channel is not None and source.channel != str(channel):
            continue
        key: object = ("pgn", j1939_pgn(ident)) if source.j1939 and extended else (ident, extended)
        message = table.get(key)
        if message is not None:
            return message
    return None


def decode_one(message: Message, data: bytes, choices: bool, scaling: bool) -> Record | None:
    """cantools' decode of one payload, as the engine reports it; None on DecodeError.

    With choices the signals and labels are ``decode_choices=True``'s; a labelled
    signal's number is ``decode_choices=False``'s value (the same decode without
    labels), or its conversion's value for the choice when that decode differs.
    """
    errors = (DecodeError, ValueError, OverflowError, KeyError)
    try:
        plain = message.decode(data, decode_choices=False, scaling=scaling)
    except errors:
        plain = None
    if not choices:
        if plain is None:
            return None
        assert isinstance(plain, dict)
        return {name: (value, None) for name, value in plain.items()}
    try:
        named = message.decode(data, decode_choices=True, scaling=scaling)
    except errors:
        return None
    assert isinstance(named, dict)
    record: Record = {}
    for name, value in named.items():
        if isinstance(value, NamedSignalValue):
            if isinstance(plain, dict) and name in plain:
                number: object = plain[name]
            else:
                conversion = message.get_signal_by_name(name).conversion
                inner = getattr(conversion, "_conversion", conversion)
                number = inner.raw_to_scaled(value.value, False) if scaling else value.value
            record[name] = (number, value.name)
        else:
            record[name] = (value, None)
    return record


def reference(
    frames: Iterable[tuple[int, bytes, bool, bool, object]],
    sources: Sequence[RefSource],
    *,
    choices: bool = False,
    scaling: bool = True,
) -> Reference:
    """Decode (id, data, extended, remote-or-error, channel) frames one by one."""
    tables = lookup(sources)
    records: dict[int, tuple[str, Record]] = {}
    errors = unknown = skipped = 0
    for position, (ident, data, extended, skip, channel) in enumerate(frames):
        if skip:
            skipped += 1
            continue
        message = find(tables, ident, extended, channel)
        if message is None:
            unknown += 1
            continue
        record = decode_one(message, data, choices, scaling)
        if record is None:
            errors += 1
            continue
        records[position] = (message.name, record)
    return Reference(records, errors, unknown, skipped)


def frames_of(chunks: Iterable[FrameColumns]) -> list[tuple[int, bytes, bool, bool, object]]:
    out: list[tuple[int, bytes, bool, bool, object]] = []
    for chunk in chunks:
        for msg in chunk.messages():
            out.append(
                (
                    msg.arbitration_id,
                    bytes(msg.data),
                    msg.is_extended_id,
                    msg.is_remote_frame or msg.is_error_frame,
                    msg.channel,
                )
            )
    return out


def flatten(batches: Iterable[tuple[int, MessageBatch]]) -> dict[int, tuple[str, Record]]:
    """(chunk's first position, batch) pairs as records by frame position."""
    records: dict[int, tuple[str, Record]] = {}
    for first, batch in batches:
        columns = [
            (
                column.signal,
                column.values.tolist(),
                None if column.valid is None else column.valid.tolist(),
                None if column.label_codes is None else column.label_codes.tolist(),
            )
            for column in batch.columns
        ]
        for k, row in enumerate(batch.rows.tolist()):
            record: Record = {}
            for signal, values, valid, codes in columns:
                if valid is not None and not valid[k]:
                    continue
                label = None
                if codes is not None and codes[k] >= 0:
                    assert signal.labels is not None
                    label = signal.labels[codes[k]]
                record[signal.name] = (values[k], label)
            assert first + row not in records
            records[first + row] = (batch.message.message.name, record)
    return records


def same_value(a: object, b: object) -> bool:
    """Equal and of the same type; NaN equals NaN."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def assert_same_records(
    actual: dict[int, tuple[str, Record]], expected: dict[int, tuple[str, Record]]
) -> None:
    """Every frame decodes to the same message, signals, values, types and labels."""
    assert actual.keys() == expected.keys(), sorted(actual.keys() ^ expected.keys())[:10]
    for position, (name, record) in expected.items():
        got_name, got = actual[position]
        assert got_name == name, position
        assert got.keys() == record.keys(), (position, name, got.keys(), record.keys())
        for signal, (value, label) in record.items():
            got_value, got_label = got[signal]
            assert same_value(got_value, value), (position, name, signal, got_value, value)
            assert got_label == label, (position, name, signal, got_label, label)


def columns_from(
    frames: Sequence[tuple[int, bytes, bool]], first_position: int = 0
) -> FrameColumns:
    """Frame columns of (id, payload, extended) triples on channel 0."""
    n = len(frames)
    width = max((len(data) for _, data, _ in frames), default=0)
    data = np.zeros((n, width), dtype=np.uint8)
    for row, (_, payload, _) in enumerate(frames):
        data[row, : len(payload)] = np.frombuffer(payload, dtype=np.uint8)
    lengths = [len(payload) for _, payload, _ in frames]
    return FrameColumns(
        timestamp=np.arange(n, dtype=np.float64) * 0.001,
        arbitration_id=np.array([i for i, _, _ in frames], dtype=np.uint32),
        flags=np.array([EXTENDED if e else 0 for _, _, e in frames], dtype=np.uint8),
        dlc=np.array(lengths, dtype=np.uint8),
        length=np.array(lengths, dtype=np.uint8),
        data=data,
        channel=np.zeros(n, dtype=np.int32),
        channels=[0],
        first_position=first_position,
    )


__all__ = [
    "ERROR",
    "REMOTE",
    "RefSource",
    "Reference",
    "assert_same_records",
    "columns_from",
    "decode_one",
    "flatten",
    "frames_of",
    "reference",
    "same_value",
]
