"""Frames of a log in columns: what every fast log reader yields, chunk by chunk.

A :class:`FrameColumns` holds up to a chunk of consecutive frames of one log, in
file order, as numpy arrays: the vectorised decoder of the tools reads the
columns directly, and the agent turns them into :class:`Frame` objects with
:meth:`FrameColumns.frames` at a fraction of what building ``can.Message``
objects costs. Every column holds exactly what python-can's reader for the same
file puts in its messages (timestamp bit for bit, id, flags, dlc, data, channel),
so :meth:`FrameColumns.messages` rebuilds messages equal to python-can's. That
equality is what the readers' tests check on every bundled log.

:func:`columns_from_messages` is the generic path: any iterable of python-can
messages (any reader, any bus) in chunks of columns.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, cast

import can
import numpy as np
import numpy.typing as npt

from vehicle_agent.frames import Frame

__all__ = [
    "BRS",
    "DEFAULT_CHUNK",
    "ERROR",
    "ESI",
    "EXTENDED",
    "FD",
    "REMOTE",
    "RX",
    "Channel",
    "FrameColumns",
    "columns_from_messages",
    "concat",
    "select",
]

#: Flag bits of :attr:`FrameColumns.flags`, one per boolean of ``can.Message``.
EXTENDED = 0x01
REMOTE = 0x02
ERROR = 0x04
FD = 0x08
BRS = 0x10  # CAN FD bit rate switch
ESI = 0x20  # CAN FD error state indicator
RX = 0x40  # received (python-can's is_rx; False for frames the logger sent)

#: Frames per chunk unless a caller asks otherwise: ~5 MB of columns for CAN FD.
DEFAULT_CHUNK = 65_536

#: A channel as python-can reports it: an int for BLF/ASC/MF4, text for candump.
Channel = int | str | None


@dataclass(slots=True)
class FrameColumns:
    """``n`` consecutive frames of a log, one array per field.

    - ``timestamp``: float64 seconds, exactly ``msg.timestamp``.
    - ``arbitration_id``: uint32.
    - ``flags``: uint8, an OR of :data:`EXTENDED`, :data:`REMOTE`, :data:`ERROR`,
      :data:`FD`, :data:`BRS`, :data:`ESI`, :data:`RX`.
    - ``dlc``: uint8, ``msg.dlc`` (for CAN FD python-can stores the length in bytes).
    - ``length``: uint8, ``len(msg.data)`` (can differ from ``dlc``, e.g. remote frames).
    - ``data``: uint8 of shape ``(n, width)``, each row zero-padded after
      ``length`` bytes; ``width`` is at least the longest frame of the chunk.
    - ``channel``: int32 index into ``channels``, the chunk's distinct channels.
    - ``first_position``: the ordinal of the chunk's first frame in the whole log.
    """

    timestamp: npt.NDArray[np.float64]
    arbitration_id: npt.NDArray[np.uint32]
    flags: npt.NDArray[np.uint8]
    dlc: npt.NDArray[np.uint8]
    length: npt.NDArray[np.uint8]
    data: npt.NDArray[np.uint8]
    channel: npt.NDArray[np.int32]
    channels: Sequence[Channel]
    first_position: int = 0

    def __len__(self) -> int:
        return int(self.timestamp.shape[0])

    def frames(
        self,
        channel_names: Mapping[str, str] | None = None,
        *,
        rows: npt.NDArray[np.intp] | None = None,
    ) -> list[Frame]:
        """The chunk (only its *rows* if given) as agent frames; ``channel_names``
        renames channels (as text).

        Every field is turned into a Python list by numpy first and the tuples are
        made by ``tuple.__new__`` from C (~0.3 µs a frame; a Python loop calling
        ``Frame(...)`` with per-frame flag tests costs ~2.4 µs).
        """
        if rows is not None:
            return select(self, rows).frames(channel_names)
        n = len(self)
        names = channel_names or {}
        labels = [None if c is None else names.get(str(c), str(c)) for c in self.channels]
        if len(labels) == 1:
            channels: list[str | None] = labels * n
        else:
            channels = [labels[code] for code in self.channel.tolist()]
        flags = self.flags

        def flag(bit: int) -> list[bool]:
            return (flags & bit).astype(bool).tolist()  # type: ignore[no-any-return]

        columns = (
            self.timestamp.tolist(),
            self.arbitration_id.tolist(),
            self._payloads(),
            flag(EXTENDED),
            flag(FD),
            flag(REMOTE),
            flag(ERROR),
            channels,
            flag(BRS),
            flag(ESI),
        )
        return list(map(_make_frame, zip(*columns, strict=True)))

    def _payloads(self) -> list[bytes]:
        """Each frame's data bytes (``length`` of them) as ``bytes``."""
        n = len(self)
        width = self.data.shape[1] if self.data.ndim == 2 else 0
        if not width:
            return [b""] * n
        buffer = np.ascontiguousarray(self.data).tobytes()
        lengths = self.length.tolist()
        return [
            buffer[start : start + size]
            for start, size in zip(range(0, n * width, width), lengths, strict=True)
        ]

    def messages(self) -> list[can.Message]:
        """The chunk as python-can messages, equal field for field to the reader's."""
        out: list[can.Message] = []
        for ts, ident, f, dlc, data, ch in zip(
            self.timestamp.tolist(),
            self.arbitration_id.tolist(),
            self.flags.tolist(),
            self.dlc.tolist(),
            self._payloads(),
            self.channel.tolist(),
            strict=True,
        ):
            out.append(
                can.Message(
                    timestamp=ts,
                    arbitration_id=ident,
                    is_extended_id=bool(f & EXTENDED),
                    is_remote_frame=bool(f & REMOTE),
                    is_error_frame=bool(f & ERROR),
                    channel=self.channels[ch],
                    dlc=dlc,
                    data=data,
                    is_fd=bool(f & FD),
                    is_rx=bool(f & RX),
                    bitrate_switch=bool(f & BRS),
                    error_state_indicator=bool(f & ESI),
                    check=False,
                )
            )
        return out


#: Builds a Frame from a tuple of its fields, called from C by map().
_make_frame = partial(tuple.__new__, Frame)


def select(cols: FrameColumns, which: npt.NDArray[Any] | slice) -> FrameColumns:
    """The frames picked by a mask, an index array or a slice.

    The channel table and ``first_position`` stay those of *cols*.
    """
    return FrameColumns(
        timestamp=cols.timestamp[which],
        arbitration_id=cols.arbitration_id[which],
        flags=cols.flags[which],
        dlc=cols.dlc[which],
        length=cols.length[which],
        data=cols.data[which],
        channel=cols.channel[which],
        channels=cols.channels,
        first_position=cols.first_position,
    )


def concat(pieces: Sequence[FrameColumns]) -> FrameColumns:
    """Consecutive pieces as one, channels merged and data padded to the widest."""
    if len(pieces) == 1:
        return pieces[0]
    data = np.zeros((sum(map(len, pieces)), max(p.data.shape[1] for p in pieces)), np.uint8)
    merged: dict[Channel, int] = {}
    codes = []
    row = 0
    for piece in pieces:
        data[row : row + len(piece), : piece.data.shape[1]] = piece.data
        row += len(piece)
        remap = [merged.setdefault(c, len(merged)) for c in piece.channels]
        codes.append(np.array(remap, dtype=np.int32)[piece.channel])
    return FrameColumns(
        timestamp=np.concatenate([p.timestamp for p in pieces]),
        arbitration_id=np.concatenate([p.arbitration_id for p in pieces]),
        flags=np.concatenate([p.flags for p in pieces]),
        dlc=np.concatenate([p.dlc for p in pieces]),
        length=np.concatenate([p.length for p in pieces]),
        data=data,
        channel=np.concatenate(codes),
        channels=list(merged),
    )


def flags_of(msg: can.Message) -> int:
    """The :attr:`FrameColumns.flags` bits of one python-can message."""
    return (
        (EXTENDED if msg.is_extended_id else 0)
        | (REMOTE if msg.is_remote_frame else 0)
        | (ERROR if msg.is_error_frame else 0)
        | (FD if msg.is_fd else 0)
        | (BRS if msg.bitrate_switch else 0)
        | (ESI if msg.error_state_indicator else 0)
        | (RX if msg.is_rx else 0)
    )


def columns_from_messages(
    messages: Iterable[can.Message], chunk_frames: int = DEFAULT_CHUNK
) -> Iterator[FrameColumns]:
    """Chunks of columns from any python-can message iterable (the generic path)."""
    if chunk_frames < 1:
        raise ValueError(f"chunk_frames must be at least 1, got {chunk_frames}")
    position = 0
    batch: list[can.Message] = []
    for msg in messages:
        batch.append(msg)
        if len(batch) == chunk_frames:
            yield _pack(batch, position)
            position += len(batch)
            batch = []
    if batch:
        yield _pack(batch, position)


def _pack(batch: list[can.Message], position: int) -> FrameColumns:
    n = len(batch)
    width = max((len(m.data) for m in batch), default=0)
    data = np.zeros((n, width), dtype=np.uint8)
    lengths = np.empty(n, dtype=np.uint8)
    codes = np.empty(n, dtype=np.int32)
    channels: list[Channel] = []
    index: dict[Channel, int] = {}
    for row, msg in enumerate(batch):
        size = len(msg.data)
        lengths[row] = size
        if size:
            data[row, :size] = np.frombuffer(bytes(msg.data), dtype=np.uint8)
        # python-can types a channel wider (a sequence for some interfaces);
        # log readers give an int, text or None.
        channel = cast(Channel, msg.channel)
        code = index.get(channel)
        if code is None:
            code = index[channel] = len(channels)
            channels.append(channel)
        codes[row] = code
    return FrameColumns(
        timestamp=np.fromiter((m.timestamp for m in batch), dtype=np.float64, count=n),
        arbitration_id=np.fromiter((m.arbitration_id for m in batch), dtype=np.uint32, count=n),
        flags=np.fromiter((flags_of(m) for m in batch), dtype=np.uint8, count=n),
        dlc=np.fromiter((m.dlc for m in batch), dtype=np.uint8, count=n),
        length=lengths,
        data=data,
        channel=codes,
        channels=channels,
        first_position=position,
    )
