"""Writers for ``telehub decode``: decoded batches to Parquet, CSV or JSON Lines, chunk by chunk.

Two layouts:

- **wide**: one table per message, columns ``timestamp`` (float64 seconds as in
  the log), ``channel``, then one column per signal (``<signal>.label`` next to
  it when choices are written as text); a multiplexed signal is null in the
  frames of other branches; a signal named like a fixed column (``timestamp``,
  ``channel``, ``message``) becomes ``signal.<name>``. A directory gets one file
  per message; a single file holds one message (JSON Lines: several, each line
  naming its ``message``).
- **long**: one table ``timestamp, channel, message, signal, value`` (and
  ``label`` with choices as text), one row per value, in log order. ``value`` is
  float64 in Parquet and CSV, so integers beyond 2**53 lose their last bits there
  (:func:`inexact_in_long` names such signals); JSON Lines keeps every value as is.

Numbers are written exactly: float64 columns in Parquet, the shortest text that
reads back to the same float in CSV and JSON; integers that fit no 64-bit type
are written as decimal text. JSON has no NaN or infinity: they become null.
Columns every row fills (``timestamp``, signals outside multiplexer branches,
and in the long layout all but ``channel`` and ``label``) are declared without
nulls (Parquet ``required``): the writer then stores no definition levels.

Every file is written under a temporary name and renamed into place by
:meth:`Sink.close`; :meth:`Sink.abort` removes them, so a failed run never leaves
a truncated table that looks complete.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa

from tools.decode.files import (
    Files,
    Format,
    JsonFile,
    Sink,
    SinkError,
    TableFile,
    reason,
)
from vehicle_agent.vector import Column, MessageBatch, OutputMessage, OutputSignal

__all__ = [
    "FORMATS",
    "RESERVED",
    "Format",
    "Layout",
    "Sink",
    "SinkError",
    "column_name",
    "inexact_in_long",
    "open_sink",
    "suffix_format",
]

Layout = Literal["wide", "long"]
FORMATS: tuple[Format, ...] = ("parquet", "csv", "jsonl")
_SUFFIXES: dict[str, Format] = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}
#: The file a long layout writes into a directory.
LONG_NAME = "signals"
_FLOAT_EXACT_INT = 1 << 53


def suffix_format(path: Path) -> Format | None:
    """The format a file suffix names (``.parquet``, ``.csv``, ``.jsonl``), or None."""
    return _SUFFIXES.get(path.suffix.lower())


def inexact_in_long(outputs: Sequence[OutputMessage]) -> list[str]:
    """``message.signal`` of integer signals a float64 ``value`` column may round."""
    names: list[str] = []
    for output in outputs:
        for signal in output.signals:
            if signal.dtype.kind in "iuO" and not signal.float_exact:
                names.append(f"{output.name}.{signal.name}")
    return names


def open_sink(
    out: Path,
    fmt: Format,
    layout: Layout,
    outputs: Sequence[OutputMessage],
    *,
    directory: bool,
    metadata: dict[str, str] | None = None,
) -> Sink:
    """The sink for *out*: a directory (one file per message, or the long table) or a file.

    Raises :class:`SinkError` when the directory cannot be created or a single
    wide table is asked for several messages in a tabular format.
    """
    meta = {"telehub.decode": json.dumps(metadata or {}, sort_keys=True)}
    if directory:
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SinkError(f"cannot create output directory {str(out)!r}: {reason(exc)}") from exc
        if layout == "long":
            return _LongSink(out / f"{LONG_NAME}.{fmt}", fmt, outputs, meta)
        return _WideDirectory(out, fmt, outputs, meta)
    if not out.parent.is_dir():
        raise SinkError(f"cannot write {str(out)!r}: no directory {str(out.parent)!r}")
    if out.is_dir():
        raise SinkError(f"cannot write {str(out)!r}: it is a directory")
    if layout == "long":
        return _LongSink(out, fmt, outputs, meta)
    if fmt == "jsonl":
        return _WideJsonFile(out, outputs)
    if len(outputs) != 1:
        raise SinkError(
            f"a wide {fmt} file holds one message, and {len(outputs)} are selected: "
            "write to a directory (one file per message), select one with --message, "
            "or use --layout long or --format jsonl"
        )
    return _WideDirectory(out.parent, fmt, outputs, meta, single=out)


# --- columns -------------------------------------------------------------------


class _Channels:
    """The ``channel`` column: integers when the log numbers its channels, else text.

    Decided by the first batch; every file of a run uses the same type.
    """

    def __init__(self) -> None:
        self.type: pa.DataType | None = None

    def array(self, batch: MessageBatch) -> pa.Array:
        channels = list(batch.channels)
        if self.type is None:
            numeric = all(
                isinstance(c, int) and not isinstance(c, bool) for c in channels if c is not None
            )
            self.type = pa.int64() if numeric else pa.string()
        if self.type == pa.int64():
            for c in channels:
                if c is not None and not isinstance(c, int):
                    raise SinkError(f"channel {c!r} is not a number like the log's first channels")
            values = pa.array(channels, type=pa.int64())
        else:
            values = pa.array([None if c is None else str(c) for c in channels], type=pa.string())
        return values.take(pa.array(batch.channel))

    def field_type(self) -> pa.DataType:
        return self.type if self.type is not None else pa.int64()


def _arrow_type(signal: OutputSignal) -> pa.DataType:
    kind = signal.dtype.kind
    if kind == "i":
        return pa.int64()
    if kind == "u":
        return pa.uint64()
    if kind == "f":
        return pa.float64()
    return pa.string()  # integers wider than 64 bits, as exact decimal text


def _values(column: Column) -> pa.Array:
    mask = None if column.valid is None else ~column.valid
    if column.signal.dtype.kind == "O":
        return pa.array([str(v) for v in column.values.tolist()], type=pa.string(), mask=mask)
    return pa.array(column.values, mask=mask)


def _labels(column: Column) -> pa.Array:
    labels = column.signal.labels or ()
    codes = column.label_codes
    if codes is None:
        return pa.nulls(len(column.values), pa.string())
    missing = codes < 0
    if column.valid is not None:
        missing = missing | ~column.valid
    indices = pa.array(codes, mask=missing)
    return pa.array(labels, type=pa.string()).take(indices)


#: Columns of the wide layout that a signal's column must not replace.
RESERVED = frozenset({"timestamp", "channel", "message"})


def column_name(signal: str) -> str:
    """A signal's wide column: its name, or ``signal.<name>`` where that is a reserved one."""
    return f"signal.{signal}" if signal in RESERVED else signal


def _signal_fields(signal: OutputSignal, name: str) -> list[pa.Field]:
    meta = {"unit": signal.unit} if signal.unit else None
    # A column declared without nulls is written without definition levels: on
    # the drive's 1M frames a quarter less CPU in the Parquet writer.
    fields = [pa.field(name, _arrow_type(signal), nullable=signal.optional, metadata=meta)]
    if signal.labels is not None:
        fields.append(pa.field(f"{name}.label", pa.string()))
    return fields


# --- wide ----------------------------------------------------------------------


def _file_names(outputs: Sequence[OutputMessage], fmt: Format) -> dict[int, str]:
    names: dict[int, str] = {}
    used: set[str] = set()
    for output in outputs:
        stem = re.sub(r"[^\w.-]", "_", output.name) or "message"
        name, suffix = f"{stem}.{fmt}", 2
        while name.lower() in used:
            name, suffix = f"{stem}~{suffix}.{fmt}", suffix + 1
        used.add(name.lower())
        names[output.index] = name
    return names


class _WideDirectory(Files):
    """One table file per message (or, with ``single``, one message into one file)."""

    def __init__(
        self,
        folder: Path,
        fmt: Format,
        outputs: Sequence[OutputMessage],
        meta: dict[str, str],
        single: Path | None = None,
    ) -> None:
        super().__init__()
        self._folder = folder
        self._fmt = fmt
        self._meta = meta
        self._single = single
        self._outputs = list(outputs)
        self._names = _file_names(outputs, fmt)
        self._channels = _Channels()
        self._open: dict[int, TableFile | JsonFile] = {}

    def _file(self, output: OutputMessage) -> TableFile | JsonFile:
        found = self._open.get(output.index)
        if found is None:
            path = self._single or self._folder / self._names[output.index]
            if self._fmt == "jsonl":
                found = JsonFile(path)
            else:
                fields = [
                    pa.field("timestamp", pa.float64(), nullable=False),
                    pa.field("channel", self._channels.field_type()),
                ]
                for signal in output.signals:
                    fields += _signal_fields(signal, column_name(signal.name))
                schema = pa.schema(fields, metadata=self._meta)
                found = TableFile(path, self._fmt, schema, self._pending)
            self._open[output.index] = found
            self._files.append(found)
        return found

    def write(self, batches: Sequence[MessageBatch]) -> None:
        for batch in batches:
            if self._fmt == "jsonl":
                lines = _wide_lines(batch, with_message=False)
                json_file = self._file(batch.message)
                assert isinstance(json_file, JsonFile)
                json_file.write(lines)
                continue
            # The channel column's type is settled by the first batch, before any
            # file's schema is written.
            channel = self._channels.array(batch)
            file = self._file(batch.message)
            assert isinstance(file, TableFile)
            arrays: list[pa.Array] = [pa.array(batch.timestamp), channel]
            for column in batch.columns:
                arrays.append(_values(column))
                if column.signal.labels is not None:
                    arrays.append(_labels(column))
            file.write(pa.Table.from_arrays(arrays, schema=file.schema))

    def _finish(self) -> None:
        # A single file is written even when its message never occurs.
        if self._single is not None and not self._open and self._outputs:
            self._file(self._outputs[0])


def _json_number(value: object) -> str:
    """A decoded number as JSON text (what json.dumps writes; null for NaN and infinities)."""
    if type(value) is float:
        return repr(value) if math.isfinite(value) else "null"
    return str(value)


def _wide_lines(batch: MessageBatch, *, with_message: bool) -> list[str]:
    """One JSON object per frame: timestamp, channel, [message,] values and labels."""
    encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
    channels = [encode(c) for c in batch.channels]
    head = f',"message":{encode(batch.message.name)}' if with_message else ""
    parts: list[tuple[str, list[Any], list[bool] | None, list[int] | None, list[str], str]] = []
    for column in batch.columns:
        name = column_name(column.signal.name)
        parts.append(
            (
                f",{encode(name)}:",
                column.values.tolist(),
                None if column.valid is None else column.valid.tolist(),
                None if column.label_codes is None else column.label_codes.tolist(),
                [encode(text) for text in column.signal.labels or ()],
                f",{encode(name + '.label')}:",
            )
        )
    lines: list[str] = []
    for k, (ts, channel) in enumerate(
        zip(batch.timestamp.tolist(), batch.channel.tolist(), strict=True)
    ):
        pieces = [f'{{"timestamp":{ts!r},"channel":{channels[channel]}{head}']
        for key, values, valid, codes, labels, label_key in parts:
            if valid is not None and not valid[k]:
                continue
            pieces += (key, _json_number(values[k]))
            if codes is not None and codes[k] >= 0:
                pieces += (label_key, labels[codes[k]])
        pieces.append("}")
        lines.append("".join(pieces))
    return lines


class _WideJsonFile(Files):
    """Every message into one JSON Lines file, one object per frame, in log order."""

    def __init__(self, path: Path, outputs: Sequence[OutputMessage]) -> None:
        super().__init__()
        self._file = JsonFile(path)
        self._files.append(self._file)
        self._with_message = len(outputs) != 1

    def write(self, batches: Sequence[MessageBatch]) -> None:
        rows: list[int] = []
        lines: list[str] = []
        for batch in batches:
            rows += batch.rows.tolist()
            lines += _wide_lines(batch, with_message=self._with_message)
        order = np.argsort(np.array(rows, dtype=np.int64), kind="stable")
        self._file.write([lines[i] for i in order.tolist()])


# --- long ----------------------------------------------------------------------


class _LongSink(Files):
    """One table of (timestamp, channel, message, signal, value[, label]) rows in log order."""

    def __init__(
        self, path: Path, fmt: Format, outputs: Sequence[OutputMessage], meta: dict[str, str]
    ) -> None:
        super().__init__()
        self._fmt = fmt
        self._path = path
        self._meta = meta
        self._labels = any(s.labels is not None for o in outputs for s in o.signals)
        self._messages = pa.array([o.name for o in outputs], type=pa.string())
        self._message_code = {o.index: i for i, o in enumerate(outputs)}
        names: list[str] = []
        self._signal_codes: dict[int, list[int]] = {}
        for output in outputs:
            codes = []
            for signal in output.signals:
                if signal.name not in names:
                    names.append(signal.name)
                codes.append(names.index(signal.name))
            self._signal_codes[output.index] = codes
        self._signals = pa.array(names, type=pa.string())
        self._width = max((len(o.signals) for o in outputs), default=0) + 1
        self._channels = _Channels()
        self._table: TableFile | None = None
        self._json: JsonFile | None = None
        if fmt == "jsonl":
            self._json = JsonFile(path)
            self._files.append(self._json)

    def _table_file(self) -> TableFile:
        if self._table is None:
            dictionary = pa.dictionary(pa.int32(), pa.string())
            fields = [
                pa.field("timestamp", pa.float64(), nullable=False),
                pa.field("channel", self._channels.field_type()),
                pa.field("message", dictionary, nullable=False),
                pa.field("signal", dictionary, nullable=False),
                pa.field("value", pa.float64(), nullable=False),
            ]
            if self._labels:
                fields.append(pa.field("label", pa.string()))
            schema = pa.schema(fields, metadata=self._meta)
            self._table = TableFile(self._path, self._fmt, schema, self._pending)
            self._files.append(self._table)
        return self._table

    def _finish(self) -> None:
        if self._json is None:
            self._table_file()

    def write(self, batches: Sequence[MessageBatch]) -> None:
        if not batches:
            return
        # Log order without sorting: each decoded frame's values take consecutive
        # places, from the running total of values per frame position in the chunk.
        rows = 1 + max(int(b.rows[-1]) for b in batches)
        per_row = np.zeros(rows + 1, dtype=np.int64)
        for batch in batches:
            per_frame = np.zeros(len(batch), dtype=np.int64)
            for column in batch.columns:
                per_frame += 1 if column.valid is None else column.valid
            per_row[batch.rows + 1] = per_frame
        starts = np.cumsum(per_row)
        total = int(starts[-1])
        if total == 0:
            return
        timestamp = np.empty(total, dtype=np.float64)
        frame = np.empty(total, dtype=np.int64)  # into the batches' frames, concatenated
        message = np.empty(total, dtype=np.int32)
        signal = np.empty(total, dtype=np.int32)
        value = np.empty(total, dtype=np.float64 if self._json is None else object)
        label = np.full(total, None, dtype=object) if self._labels else None
        offset = 0
        for batch in batches:
            base = starts[batch.rows]
            seen = np.zeros(len(batch), dtype=np.int64)
            codes = self._signal_codes[batch.message.index]
            for position, column in enumerate(batch.columns):
                if column.valid is None:
                    where = None
                    places = base + seen
                    seen += 1
                else:
                    where = np.flatnonzero(column.valid)
                    places = base[where] + seen[where]
                    seen[where] += 1
                timestamp[places] = batch.timestamp if where is None else batch.timestamp[where]
                frame[places] = offset + (np.arange(len(batch)) if where is None else where)
                message[places] = self._message_code[batch.message.index]
                signal[places] = codes[position]
                picked = column.values if where is None else column.values[where]
                value[places] = picked if self._json is not None else _as_float(picked)
                if label is not None and column.label_codes is not None:
                    label[places] = _label_texts(column, where)
            offset += len(batch)
        if self._json is not None:
            self._json.write(self._lines(batches, timestamp, frame, message, signal, value, label))
            return
        channel = pa.concat_arrays([self._channels.array(b) for b in batches])
        arrays = [
            pa.array(timestamp),
            channel.take(pa.array(frame)),
            pa.DictionaryArray.from_arrays(pa.array(message), self._messages),
            pa.DictionaryArray.from_arrays(pa.array(signal), self._signals),
            pa.array(value),
        ]
        if label is not None:
            arrays.append(pa.array(label, type=pa.string()))
        file = self._table_file()
        file.write(pa.Table.from_arrays(arrays, schema=file.schema))

    def _lines(
        self,
        batches: Sequence[MessageBatch],
        timestamp: np.ndarray[Any, Any],
        frame: np.ndarray[Any, Any],
        message: np.ndarray[Any, Any],
        signal: np.ndarray[Any, Any],
        value: np.ndarray[Any, Any],
        label: np.ndarray[Any, Any] | None,
    ) -> list[str]:
        channels: list[object] = []
        for batch in batches:
            known = list(batch.channels)
            channels += [known[c] for c in batch.channel.tolist()]
        # Names and channels are encoded once; values with json's own float repr.
        encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
        message_names, signal_names = self._messages.to_pylist(), self._signals.to_pylist()
        heads: dict[tuple[int, int], str] = {}
        channel_text = [encode(c) for c in channels]
        texts = label.tolist() if label is not None else None
        lines: list[str] = []
        for i, (ts, f, m, s, v) in enumerate(
            zip(
                timestamp.tolist(),
                frame.tolist(),
                message.tolist(),
                signal.tolist(),
                value.tolist(),
                strict=True,
            )
        ):
            head = heads.get((m, s))
            if head is None:
                head = f',"message":{encode(message_names[m])},"signal":{encode(signal_names[s])}'
                heads[(m, s)] = head
            text = "" if texts is None or texts[i] is None else f',"label":{encode(texts[i])}'
            lines.append(
                f'{{"timestamp":{ts!r},"channel":{channel_text[f]}{head},"value":'
                f"{_json_number(v)}{text}}}"
            )
        return lines


def _label_texts(column: Column, where: np.ndarray[Any, Any] | None) -> np.ndarray[Any, Any]:
    assert column.label_codes is not None
    assert column.signal.labels is not None
    found = column.label_codes if where is None else column.label_codes[where]
    texts: np.ndarray[Any, Any] = np.array([*column.signal.labels, None], dtype=object)
    picked: np.ndarray[Any, Any] = texts[found]  # code -1 picks the final None
    return picked


def _as_float(values: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    if values.dtype.kind == "O":
        return np.array([float(v) for v in values.tolist()], dtype=np.float64)
    return values.astype(np.float64, copy=False)
