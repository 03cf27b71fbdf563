"""``telehub decode``'s engine: CAN logs to columns of signal values, exactly as cantools decodes.

- :class:`VectorDecoder` (:mod:`vehicle_agent.vector`) decodes a chunk of frame
  columns message by message with numpy; every value equals, in value and type,
  what cantools' ``Message.decode`` gives for that frame (messages it cannot
  vectorise exactly are decoded by cantools frame by frame). Its
  :attr:`~VectorDecoder.counts` say what happened to every frame.
- :func:`decode_log` reads a log in chunks and yields each chunk's
  :class:`MessageBatch` list: the simplest way to decode from Python.
- :mod:`tools.decode.sinks` writes batches as Parquet, CSV or JSON Lines.

Example::

    from tools.decode import DbcSource, decode_log
    from vehicle_agent.catalog import load_dbc

    source = DbcSource(load_dbc(Path("canmod-gps.dbc")), "gnss")
    for batches in decode_log(Path("drive.MF4"), [source]):
        for batch in batches:
            print(batch.message.name, len(batch), batch.columns[0].values[:3])
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence
from pathlib import Path

from vehicle_agent.logs import DEFAULT_CHUNK, ReaderChoice, read_columns
from vehicle_agent.vector import (
    Column,
    DbcSource,
    DecodeCounts,
    Engine,
    MessageBatch,
    OutputMessage,
    OutputSignal,
    VectorDecoder,
    message_names,
)

__all__ = [
    "Column",
    "DbcSource",
    "DecodeCounts",
    "Engine",
    "MessageBatch",
    "OutputMessage",
    "OutputSignal",
    "VectorDecoder",
    "decode_log",
    "message_names",
]


def decode_log(
    path: Path,
    sources: Sequence[DbcSource],
    *,
    choices: bool = False,
    scaling: bool = True,
    selection: Mapping[str, Collection[str] | None] | None = None,
    engine: Engine = "vector",
    reader: ReaderChoice = "auto",
    chunk_frames: int = DEFAULT_CHUNK,
    decoder: VectorDecoder | None = None,
) -> Iterator[list[MessageBatch]]:
    """The decoded batches of the log at *path*, one list per chunk of frames.

    Pass your own *decoder* to read its counters afterwards (the other decoding
    arguments are then ignored). Raises what :func:`vehicle_agent.logs.read_columns`
    raises for a missing or corrupt log (:class:`vehicle_agent.errors.SourceError`).
    """
    if decoder is None:
        decoder = VectorDecoder(
            sources, choices=choices, scaling=scaling, selection=selection, engine=engine
        )
    for chunk in read_columns(path, chunk_frames=chunk_frames, reader=reader):
        yield decoder.decode(chunk)
