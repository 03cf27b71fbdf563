"""Reading CAN log files fast: python-can's formats, in chunks of columns.

:func:`read_columns` picks, by the file's suffix, a fast reader of our own where
one exists and python-can's reader otherwise (or when asked with
``reader="python-can"``). A fast reader is only a faster way to the same frames:
each one is tested to yield exactly what python-can's reader yields for every
bundled log. A fast reader that meets something it does not handle exactly
raises :class:`Unsupported` before its first chunk, and the file is read with
python-can instead; a corrupt file raises
:class:`vehicle_agent.errors.LogFormatError` naming the file and the position.

Each fast reader is a module here with one function,
``read(path: Path, chunk_frames: int) -> Iterator[FrameColumns]``, and may have
``warm_up() -> bool``, which loads what it loads for a large log only (the
candump reader's compiled scanner): :func:`warm_up` calls it.
"""

from __future__ import annotations

import importlib
import itertools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal

from vehicle_agent.logs.columns import DEFAULT_CHUNK, FrameColumns

__all__ = [
    "DEFAULT_CHUNK",
    "FAST_READERS",
    "FrameColumns",
    "ReaderChoice",
    "Unsupported",
    "fast_reader_for",
    "log_suffix",
    "open_fast",
    "read_columns",
    "warm_up",
]

ReaderChoice = Literal["auto", "fast", "python-can"]

#: Fast readers by log suffix (lower case, ``.gz`` kept): the module under
#: ``vehicle_agent.logs`` that reads it.
FAST_READERS: dict[str, str] = {
    ".blf": "blf",
    ".mf4": "mf4_native",  # which hands what it does not read to "mf4" (asammdf)
    ".log": "candump",
    ".log.gz": "candump",
    ".asc": "asc",
    ".asc.gz": "asc",
    ".trc": "trc",
    ".trc.gz": "trc",
}

_Read = Callable[[Path, int], Iterator[FrameColumns]]


class Unsupported(Exception):
    """A fast reader cannot read this file exactly; python-can's reader must.

    Raised before the reader yields its first chunk, never after.
    """


def log_suffix(path: Path) -> str:
    """The suffix that names the log format: ``.blf``, ``.asc.gz``, …, lower case."""
    suffixes = [s.lower() for s in path.suffixes]
    if len(suffixes) >= 2 and suffixes[-1] == ".gz":
        return suffixes[-2] + suffixes[-1]
    return suffixes[-1] if suffixes else ""


def fast_reader_for(path: Path) -> _Read | None:
    """The fast reader for *path*'s format, or None when python-can reads it."""
    module_name = FAST_READERS.get(log_suffix(path))
    if module_name is None:
        return None
    try:
        module = importlib.import_module(f"vehicle_agent.logs.{module_name}")
    except ModuleNotFoundError:
        return None
    read: _Read = module.read
    return read


def warm_up(path: Path) -> None:
    """Load now what the fast reader for *path*'s format loads for a large log (a
    benchmark's untimed warm-up, say); nothing for most formats."""
    module_name = FAST_READERS.get(log_suffix(path))
    if module_name is None:
        return
    module = importlib.import_module(f"vehicle_agent.logs.{module_name}")
    load: Callable[[], bool] | None = getattr(module, "warm_up", None)
    if load is not None:
        load()


def open_fast(
    path: Path, *, chunk_frames: int = DEFAULT_CHUNK, reader: ReaderChoice = "auto"
) -> Iterator[FrameColumns] | None:
    """The chunks of *path* from its fast reader, or None when python-can must read it.

    None for ``reader="python-can"``, for a format without a fast reader and for a
    file the fast reader declines (:class:`Unsupported`); with ``reader="fast"``
    those raise :class:`Unsupported` instead. The first chunk is read here, so a
    reader that declines does so before this returns.
    """
    if chunk_frames < 1:
        raise ValueError(f"chunk_frames must be at least 1, got {chunk_frames}")
    if reader == "python-can":
        return None
    fast = fast_reader_for(path)
    if fast is None:
        if reader == "fast":
            raise Unsupported(f"no fast reader for {log_suffix(path) or 'files without a suffix'}")
        return None
    chunks = fast(path, chunk_frames)
    try:
        first = next(chunks)
    except StopIteration:
        return iter(())
    except Unsupported:
        if reader == "fast":
            raise
        return None
    return itertools.chain((first,), chunks)


def read_columns(
    path: Path, *, chunk_frames: int = DEFAULT_CHUNK, reader: ReaderChoice = "auto"
) -> Iterator[FrameColumns]:
    """The frames of the log at *path*, in chunks of at most *chunk_frames*.

    ``reader="auto"`` uses the fast reader where there is one and python-can's
    otherwise; ``"fast"`` fails with :class:`Unsupported` where there is none;
    ``"python-can"`` always uses python-can's reader.
    """
    chunks = open_fast(path, chunk_frames=chunk_frames, reader=reader)
    if chunks is not None:
        return chunks
    from vehicle_agent.logs.generic import read as read_generic

    return read_generic(path, chunk_frames)
