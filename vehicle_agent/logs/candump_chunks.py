"""Chunks of candump frames that the compiled scanner fills, for the candump reader.

:func:`vehicle_agent.logs.candump.read` uses them for a log large enough to
repay loading numba; this module imports the scanner, and with it numba.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import numpy.typing as npt

from vehicle_agent.logs import candump_scan
from vehicle_agent.logs.columns import Channel, FrameColumns
from vehicle_agent.logs.text import BLOCK_BYTES

__all__ = ["ScannedChunks"]


class ScannedChunks:
    """Chunks of frames the compiled scanner writes straight into.

    A block of plain ASCII lines all of the usual shape is scanned into the
    chunk being filled (:meth:`scan_into`), no piece made and no copy; any
    other block becomes a piece as :func:`~vehicle_agent.logs.text.read_lines`
    makes it (the scanner for its usual lines, the line parser for the others;
    :meth:`scan_block`), copied in with :meth:`add`.
    """

    def __init__(self, chunk_frames: int, convert: Callable[[str], Channel]) -> None:
        """*convert* turns a channel token into python-can's channel value."""
        self._size = chunk_frames
        self._position = 0
        self._channels = candump_scan.Channels(convert)
        self._lines = candump_scan.Lines()
        # Room for a chunk and two blocks: a chunk is taken before the next block.
        block_rows = BLOCK_BYTES // candump_scan.SHORTEST_LINE + 1
        self._buffer = candump_scan.FrameBuffer(chunk_frames + 2 * block_rows)

    def scan_into(self, block: bytes) -> list[FrameColumns] | None:
        """Scan *block* into the chunks: the chunks now full; None (nothing kept) when a
        line needs the line parser."""
        scanned = self._buffer.scan(block, self._channels, self._lines, stop_at_slow=True)
        return None if scanned is None else list(self._full())

    def scan_block(
        self, block: bytes
    ) -> tuple[FrameColumns, npt.NDArray[np.intp], npt.NDArray[np.intp]]:
        """The frames of the usual lines of *block*, their lines' indices and the indices
        of the lines left for the line parser (blank lines in neither)."""
        buffer = candump_scan.FrameBuffer(len(block) // candump_scan.SHORTEST_LINE + 1)
        slow = buffer.scan(block, self._channels, self._lines, stop_at_slow=False)
        assert slow is not None  # it stops at no line
        frames = buffer.count
        rows = self._lines.rows[:frames].astype(np.intp)
        return buffer.take(frames, self._channels), rows, slow.astype(np.intp)

    def add(self, piece: FrameColumns) -> Iterator[FrameColumns]:
        """Take *piece*; yield the chunks that are now full."""
        self._buffer.append(piece, self._channels)
        yield from self._full()

    def flush(self) -> Iterator[FrameColumns]:
        """Yield the frames left over, as one last (shorter) chunk."""
        left = self._buffer.count - self._buffer.start
        if left:
            yield self._take(left)

    def _full(self) -> Iterator[FrameColumns]:
        while self._buffer.count - self._buffer.start >= self._size:
            yield self._take(self._size)

    def _take(self, n: int) -> FrameColumns:
        chunk = self._buffer.take(n, self._channels)
        chunk.first_position = self._position
        self._position += n
        return chunk
