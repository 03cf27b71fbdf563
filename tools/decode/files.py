"""The files ``telehub decode`` writes, each under a temporary name until it is complete.

:class:`TableFile` writes Parquet or CSV in row groups, :class:`JsonFile` JSON
Lines; :class:`Files` is a :class:`Sink` that closes (commits) or discards every
file it opened, so a failed run never leaves a truncated table that looks
complete. The layouts themselves are in :mod:`tools.decode.sinks`.
"""

from __future__ import annotations

import contextlib
import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, Protocol

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from vehicle_agent.vector import MessageBatch

__all__ = [
    "PENDING_ROWS",
    "ROW_GROUP",
    "File",
    "Files",
    "Format",
    "JsonFile",
    "Pending",
    "Sink",
    "SinkError",
    "TableFile",
    "partial",
    "reason",
]

Format = Literal["parquet", "csv", "jsonl"]


class SinkError(Exception):
    """The output cannot be written (the message names the path and why)."""


class Sink(ABC):
    """Where decoded batches go; written chunk by chunk, committed by :meth:`close`."""

    @abstractmethod
    def write(self, batches: Sequence[MessageBatch]) -> None:
        """Write the batches of one chunk."""

    @abstractmethod
    def close(self) -> list[Path]:
        """Finish every file and move it into place; the paths written."""

    @abstractmethod
    def abort(self) -> None:
        """Remove what was written so far."""


def reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


def partial(path: Path) -> Path:
    return path.with_name(f".{path.name}.partial")


class File(Protocol):
    path: Path

    def close(self) -> None: ...
    def discard(self) -> None: ...


#: Rows a table file gathers before writing them (one Parquet row group), and rows
#: all the files of a sink may hold before every file writes what it holds: a
#: rare message then still gets few, large row groups, and memory stays bounded.
ROW_GROUP = 65_536
PENDING_ROWS = 1_048_576


class Pending:
    """The table files of one sink and the rows they hold back."""

    def __init__(self) -> None:
        self.rows = 0
        self.files: list[TableFile] = []

    def flush_all(self) -> None:
        for file in self.files:
            file.flush()


class TableFile:
    """A Parquet or CSV file written in row groups under a temporary name."""

    def __init__(self, path: Path, fmt: Format, schema: pa.Schema, pending: Pending) -> None:
        self.path = path
        self.schema = schema
        self._pending = pending
        self._tables: list[pa.Table] = []
        self._rows = 0
        pending.files.append(self)
        self._tmp = partial(path)
        try:
            if fmt == "parquet":
                # Dictionary pages pay for names, channels, labels and integer states.
                # Timestamps and float signals are written byte-stream-split
                # instead: on the drive's 1M frames a third less CPU than plain
                # pages and 15% smaller files after snappy.
                floats = [f.name for f in schema if pa.types.is_floating(f.type)]
                dictionary = [f.name for f in schema if f.name not in floats and f.name != "value"]
                self._writer: pq.ParquetWriter | pa_csv.CSVWriter = pq.ParquetWriter(
                    self._tmp,
                    schema,
                    use_dictionary=dictionary,
                    column_encoding=dict.fromkeys(floats, "BYTE_STREAM_SPLIT"),
                )
            else:
                self._writer = pa_csv.CSVWriter(self._tmp, schema)
        except OSError as exc:
            raise SinkError(f"cannot write {str(path)!r}: {reason(exc)}") from exc

    def write(self, table: pa.Table) -> None:
        self._tables.append(table)
        self._rows += table.num_rows
        self._pending.rows += table.num_rows
        if self._rows >= ROW_GROUP:
            self.flush()
        elif self._pending.rows >= PENDING_ROWS:
            self._pending.flush_all()

    def flush(self) -> None:
        if not self._tables:
            return
        table = self._tables[0] if len(self._tables) == 1 else pa.concat_tables(self._tables)
        self._pending.rows -= self._rows
        self._tables, self._rows = [], 0
        try:
            self._writer.write_table(table)
        except OSError as exc:
            raise SinkError(f"cannot write {str(self.path)!r}: {reason(exc)}") from exc

    def close(self) -> None:
        self.flush()
        try:
            self._writer.close()
            os.replace(self._tmp, self.path)
        except OSError as exc:
            raise SinkError(f"cannot write {str(self.path)!r}: {reason(exc)}") from exc

    def discard(self) -> None:
        with contextlib.suppress(OSError, pa.ArrowException):
            self._writer.close()
        self._tmp.unlink(missing_ok=True)


class JsonFile:
    """A JSON Lines file under a temporary name."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._tmp = partial(path)
        try:
            self._file = self._tmp.open("w", encoding="utf-8")
        except OSError as exc:
            raise SinkError(f"cannot write {str(path)!r}: {reason(exc)}") from exc

    def write(self, lines: list[str]) -> None:
        if not lines:
            return
        try:
            self._file.write("\n".join(lines) + "\n")
        except OSError as exc:
            raise SinkError(f"cannot write {str(self.path)!r}: {reason(exc)}") from exc

    def close(self) -> None:
        try:
            self._file.close()
            os.replace(self._tmp, self.path)
        except OSError as exc:
            raise SinkError(f"cannot write {str(self.path)!r}: {reason(exc)}") from exc

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            self._file.close()
        self._tmp.unlink(missing_ok=True)


class Files(Sink):
    """Closes or discards every file it opened."""

    def __init__(self) -> None:
        self._files: list[File] = []
        self._pending = Pending()

    def close(self) -> list[Path]:
        self._finish()
        for file in self._files:
            file.close()
        return [file.path for file in self._files]

    def abort(self) -> None:
        for file in self._files:
            file.discard()

    def _finish(self) -> None:
        """Open files that must exist even without data."""
