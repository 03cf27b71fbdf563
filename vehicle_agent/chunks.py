"""Decode a chunk of log frames at once, exactly as the agent's decoder does frame by frame.

A log replay reads frames in chunks of columns (:mod:`vehicle_agent.logs`). When
the running plan sends every sample as decoded, the pipeline hands whole runs of
a chunk to :class:`ChunkDecoder`, which mirrors the agent's
:class:`~vehicle_agent.decoding.Decoder` (same DBC files, routes, channels and
selection) with the vectorised engine of :mod:`vehicle_agent.vector`: the
samples, their catalog indices and the decoder's counters come out as the
per-frame path gives them, at a fraction of the cost per frame.

Some frames depend on more than themselves and always go frame by frame
(:meth:`ChunkDecoder.frame_by_frame_rows`): those the diagnostics tap takes in
(ISO-TP and J1939 transport, DM1), messages that decode shorter payloads
(multi-frame messages) and messages whose repeated payloads are skipped.

Within one frame, samples come in the message's signal order (cantools' own
decode may order a multiplexed message's signals differently; nothing
downstream depends on that order).

Pure module: numpy and cantools, no bus or transport library.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt
from cantools.database.can import Message

from vehicle_agent.decoding import Decoder
from vehicle_agent.diagnostics import DiagnosticsTap
from vehicle_agent.frames import Frame
from vehicle_agent.vector import (
    ERROR,
    EXTENDED,
    REMOTE,
    DbcSource,
    Frames,
    MessageBatch,
    VectorDecoder,
    message_names,
)

__all__ = ["ChunkDecoder", "ChunkSamples", "FrameChunk", "microseconds"]

IntArray = npt.NDArray[np.intp]


class FrameChunk(Frames, Protocol):
    """Consecutive frames in columns that can also be had as :class:`Frame` objects.

    :class:`vehicle_agent.logs.FrameColumns` is one, its channels already named
    as the agent names them.
    """

    def __len__(self) -> int: ...

    def frames(self, *, rows: IntArray | None = None) -> list[Frame]:
        """The frames (of *rows* only, if given) as :class:`Frame` objects."""
        ...


@dataclass(frozen=True, slots=True)
class ChunkSamples:
    """Decoded samples in columns, in frame order then signal order.

    ``frame_row`` is each sample's row in the chunk (non-decreasing).
    """

    frame_row: IntArray
    signal_index: npt.NDArray[np.uint32]
    value: npt.NDArray[np.float64]

    def __len__(self) -> int:
        return int(self.frame_row.shape[0])


def microseconds(timestamp: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
    """Seconds to whole microseconds as :func:`~vehicle_agent.batching.to_microseconds`.

    ``round(t * 1_000_000)`` and ``rint`` both round the same double to the
    nearest integer, halves to even.
    """
    return np.rint(timestamp * 1_000_000.0).astype(np.int64)


@dataclass(frozen=True, slots=True)
class _Rows:
    """Some rows of a chunk, as the vectorised decoder reads them."""

    timestamp: npt.NDArray[np.float64]
    arbitration_id: npt.NDArray[np.uint32]
    flags: npt.NDArray[np.uint8]
    length: npt.NDArray[np.uint8]
    data: npt.NDArray[np.uint8]
    channel: npt.NDArray[np.int32]
    channels: tuple[object, ...]


class ChunkDecoder:
    """Vectorised decoding that mirrors a :class:`Decoder`, and counts in its stats.

    :attr:`available` is False when the decoder's set-up cannot be mirrored (one
    DBC file bound to two buses gives its signals two catalog indices, while the
    vectorised engine decodes a message once); the caller then decodes frame by
    frame. Call :meth:`refresh` after :meth:`Decoder.select`.
    """

    def __init__(self, decoder: Decoder, tap: DiagnosticsTap | None = None) -> None:
        self.decoder = decoder
        self.tap = tap
        self._vector: VectorDecoder | None = None
        self._indices: list[npt.NDArray[np.uint32]] = []
        self._single: dict[tuple[str | None, int, bool], bool] = {}
        self.refresh()

    @property
    def available(self) -> bool:
        return self._vector is not None

    def refresh(self) -> None:
        """Follow the decoder's current selection."""
        decoder = self.decoder
        self._single.clear()
        bound = decoder.bound
        if len({id(b.dbc.database) for b in bound}) != len(bound):
            self._vector = None
            return
        sources = [
            DbcSource(b.dbc.database, b.spec.bus, j1939=b.j1939, channel=b.spec.channel)
            for b in bound
        ]
        bus_of = {id(m): b.spec.bus for b in bound for m in b.dbc.database.messages}
        catalog = decoder.catalog

        def indices(message: Message) -> list[int]:
            bus = bus_of[id(message)]
            return [catalog.index_of(bus, message.name, s.name) for s in message.signals]

        selected = decoder.selected
        # As the decoder: a message is decoded when it carries a selected signal,
        # or has no signals at all (it still says its id is alive).
        selection: dict[str, None] = {
            name: None
            for name, message in message_names(sources).items()
            if selected is None or not message.signals or not selected.isdisjoint(indices(message))
        }
        vector = VectorDecoder(sources, selection=selection)
        self._indices = [np.array(indices(out.message), dtype=np.uint32) for out in vector.outputs]
        self._vector = vector

    def frame_by_frame_rows(self, chunk: Frames) -> IntArray:
        """The rows of *chunk* that must go through the per-frame path, ascending."""
        key = chunk.arbitration_id.astype(np.uint64)
        key |= (chunk.flags & EXTENDED).astype(np.uint64) << np.uint64(32)
        key |= chunk.channel.astype(np.uint64) << np.uint64(33)
        distinct = np.unique(key)
        channels = chunk.channels
        single = [k for k in distinct.tolist() if self._is_single(k, channels)]
        if not single:
            return np.empty(0, dtype=np.intp)
        return np.flatnonzero(np.isin(key, np.array(single, dtype=np.uint64)))

    def _is_single(self, key: int, channels: Sequence[object]) -> bool:
        ident = key & 0xFFFFFFFF
        extended = bool((key >> 32) & 1)
        label = channels[key >> 33]
        channel = None if label is None else str(label)
        cache = (channel, ident, extended)
        found = self._single.get(cache)
        if found is None:
            tap = self.tap
            found = self.decoder.frame_by_frame(channel, ident, extended) or (
                tap is not None and tap.intercepts(channel, ident, extended)
            )
            self._single[cache] = found
        return found

    def decode(self, chunk: Frames, rows: IntArray | None = None) -> ChunkSamples:
        """The samples of the frames at *rows* of *chunk* (ascending; None: all of them).

        They are counted in the decoder's stats; ``frame_row`` gives chunk rows.
        """
        vector = self._vector
        if vector is None:
            raise RuntimeError("this decoder's set-up cannot be decoded in chunks")
        frames: Frames = chunk
        if rows is not None:
            frames = _Rows(
                chunk.timestamp[rows],
                chunk.arbitration_id[rows],
                chunk.flags[rows],
                chunk.length[rows],
                chunk.data[rows],
                chunk.channel[rows],
                tuple(chunk.channels),
            )
        counts = vector.counts
        before = (counts.unknown_ids, counts.not_selected, counts.decode_errors)
        decoded_before = counts.frames_decoded
        batches = vector.decode(frames)
        flags = frames.flags
        stats = self.decoder.stats
        stats.frames += int(flags.shape[0])
        stats.error_frames += int(np.count_nonzero(flags & ERROR))
        stats.remote_frames += int(np.count_nonzero((flags & (REMOTE | ERROR)) == REMOTE))
        stats.unknown_id += counts.unknown_ids - before[0]
        stats.not_selected += counts.not_selected - before[1]
        stats.decode_errors += counts.decode_errors - before[2]
        stats.decoded += counts.frames_decoded - decoded_before
        samples = self._samples(batches, rows)
        stats.samples += len(samples)
        return samples

    def _samples(self, batches: list[MessageBatch], chunk_rows: IntArray | None) -> ChunkSamples:
        rows: list[IntArray] = []
        indices: list[npt.NDArray[np.uint32]] = []
        values: list[npt.NDArray[np.float64]] = []
        for batch in batches:
            signals = self._indices[batch.message.index]
            width = int(signals.shape[0])
            if not width:
                continue
            count = len(batch)
            # One row a frame, one column a signal: raveled, frame then signal order.
            table = np.empty((count, width), dtype=np.float64)
            valid: npt.NDArray[np.bool_] | None = None
            for j, column in enumerate(batch.columns):
                table[:, j] = column.values
                if column.valid is not None:
                    if valid is None:
                        valid = np.ones((count, width), dtype=np.bool_)
                    valid[:, j] = column.valid
            frame_rows = np.repeat(batch.rows, width)
            signal_column = np.tile(signals, count)
            if valid is None:
                rows.append(frame_rows)
                indices.append(signal_column)
                values.append(table.ravel())
            else:
                keep = valid.ravel()
                rows.append(frame_rows[keep])
                indices.append(signal_column[keep])
                values.append(table.ravel()[keep])
        if not rows:
            empty = np.empty(0, dtype=np.intp)
            return ChunkSamples(empty, np.empty(0, np.uint32), np.empty(0, np.float64))
        row = np.concatenate(rows)
        # Messages come one after another: a stable sort by frame puts every
        # frame's samples back in log order, keeping each frame's signal order.
        order = np.argsort(row, kind="stable")
        row = row[order]
        return ChunkSamples(
            (row if chunk_rows is None else chunk_rows[row]).astype(np.intp, copy=False),
            np.concatenate(indices)[order],
            np.concatenate(values)[order],
        )
