"""python-can's log readers behind the fast readers' interface: the generic path.

Every format python-can reads (ASC, BLF, CSV, candump ``.log``, MF4, SQLite
``.db``, TRC, and their ``.gz`` variants) through python-can's own reader, with
its exceptions translated into :class:`vehicle_agent.errors.SourceError`.
"""

from __future__ import annotations

import gzip
import sqlite3
import struct
import zlib
from collections.abc import Iterator
from contextlib import ExitStack
from io import BufferedIOBase
from pathlib import Path
from typing import TextIO, cast

import can
from asammdf.blocks.utils import MdfException
from can.io.blf import BLFParseError
from can.io.generic import BinaryIOMessageReader, MessageReader, TextIOMessageReader
from isal.isal_zlib import error as isal_error

from vehicle_agent.errors import LogFormatError, SourceError
from vehicle_agent.logs.columns import FrameColumns, columns_from_messages

__all__ = ["READ_ERRORS", "open_reader", "read", "read_messages"]

# What python-can's readers (and asammdf, gzip, sqlite underneath) raise for a
# file that is missing, truncated, corrupt or in another format than its suffix.
READ_ERRORS = (
    OSError,  # includes gzip.BadGzipFile
    EOFError,
    ValueError,  # includes UnicodeDecodeError and unknown suffixes
    KeyError,
    IndexError,
    struct.error,
    zlib.error,
    sqlite3.Error,
    BLFParseError,
    MdfException,
    # asammdf inflates MF4 data blocks with isal, not zlib (its stubs type the
    # exception class as an instance).
    cast("type[Exception]", isal_error),
    can.CanError,
)

_MDF_MAGICS = (b"MDF     ", b"UnFinMF ")


def open_reader(path: Path) -> MessageReader:
    """Pick python-can's reader by suffix and open the file for it.

    ``can.LogReader`` does the same dispatch but leaves the file open when the
    reader rejects it; opening the file here lets us close it on every failure.
    """
    suffixes = [suffix.lower() for suffix in path.suffixes]
    compressed = bool(suffixes) and suffixes[-1] == ".gz"
    suffix = (suffixes[-2] if len(suffixes) >= 2 else "") if compressed else path.suffix.lower()
    reader_type = can.io.MESSAGE_READERS.get(suffix)
    if reader_type is None:
        raise SourceError(
            f"cannot read log file {str(path)!r}: unknown log format {''.join(path.suffixes)!r}"
        )
    try:
        with ExitStack() as cleanup:
            reader = _make_reader(reader_type, path, compressed, cleanup)
            cleanup.pop_all()  # the reader owns the file from now on
            return reader
    except READ_ERRORS as exc:
        raise SourceError(
            f"cannot read log file {str(path)!r}: {type(exc).__name__}: {exc}"
        ) from exc


def _make_reader(
    reader_type: type[MessageReader], path: Path, compressed: bool, cleanup: ExitStack
) -> MessageReader:
    if issubclass(reader_type, can.MF4Reader) and not compressed:
        _check_mdf_magic(path)
        # Given an open file, MF4Reader reads it all into memory; given a path,
        # asammdf reads the blocks it needs from disk.
        return reader_type(path)
    # The exit stack owns the file until the reader is built (ruff cannot see
    # that through gzip.open, hence the noqa).
    if issubclass(reader_type, TextIOMessageReader):
        text: TextIO
        if compressed:
            text = cleanup.enter_context(gzip.open(path, "rt", encoding="utf-8"))  # noqa: SIM115
        else:
            text = cleanup.enter_context(path.open(encoding="utf-8"))
        return reader_type(text)
    if issubclass(reader_type, BinaryIOMessageReader):
        binary: BufferedIOBase
        if compressed:
            binary = cleanup.enter_context(gzip.open(path, "rb"))  # noqa: SIM115
        else:
            binary = cleanup.enter_context(path.open("rb"))
        return reader_type(binary)
    if compressed:  # readers that open the file by name (sqlite)
        raise SourceError(f"cannot read log file {str(path)!r}: cannot decompress it")
    return reader_type(path)


def _check_mdf_magic(path: Path) -> None:
    # asammdf reports a foreign file well but then fails in its own destructor;
    # checking the identification block first keeps that noise out.
    with path.open("rb") as file:
        magic = file.read(8)
    if magic not in _MDF_MAGICS:
        raise SourceError(f"cannot read log file {str(path)!r}: not an MDF file")


def read_messages(path: Path) -> Iterator[can.Message]:
    """python-can's messages of the log at *path*, its errors translated."""
    reader = open_reader(path)
    count = 0
    try:
        iterator = iter(reader)
        while True:
            try:
                msg = next(iterator)
            except StopIteration:
                return
            except READ_ERRORS as exc:
                raise LogFormatError(
                    path, f"frame {count}", f"{type(exc).__name__}: {exc}"
                ) from exc
            count += 1
            yield msg
    finally:
        reader.stop()


def read(path: Path, chunk_frames: int) -> Iterator[FrameColumns]:
    """The log at *path* in chunks of columns, read by python-can."""
    return columns_from_messages(read_messages(path), chunk_frames)
