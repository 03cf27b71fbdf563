"""What the fast text log readers (candump ``.log``, ASC, TRC) share.

python-can reads a text log one line at a time and builds a ``can.Message``
per frame, which costs most of its time. These readers decode the file in
blocks of whole lines, cut a block into its blank-separated
:class:`~vehicle_agent.logs.fields.Tokens` (byte offsets found with numpy, no
Python object per field) and read the lines of the format's usual shapes all
at once with the format's builder (:class:`LineFormat`). Every other line
(headers, comments, rare events, anything odd) goes through the format's line
parser, a port of python-can's handling of a line, so a reader stays exact
without its builder covering the whole format: the builder hands over every
line whose fields python-can might read otherwise than it would (too few data
bytes, odd spacing, a field out of its usual range, say). The frames of a
block go back into file order before the :class:`Chunker` cuts them into
chunks.

The text is decoded as python-can's readers receive it (UTF-8, universal
newlines). A line python-can rejects with an exception raises
:class:`LogFormatError` naming the line, after the frames before it; so does a
decoding or decompression error (python-can loses the lines of the 8 KiB it
was decoding there, these readers do not).
"""

from __future__ import annotations

import codecs
import gzip
import io
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt

from vehicle_agent.errors import LogFormatError, SourceError
from vehicle_agent.logs.columns import Channel, FrameColumns, concat, select
from vehicle_agent.logs.fields import Tokens, byte_rows

__all__ = [
    "Chunker",
    "Chunks",
    "LineFormat",
    "LineReader",
    "Row",
    "ascii_blocks",
    "check_row",
    "pack_rows",
    "read_lines",
    "text_blocks",
]

#: One frame from a line parser: timestamp, arbitration id, flags, dlc, data, channel.
Row = tuple[float, int, int, int, bytes, Channel]
#: python-can's handling of one raw line: a frame, None for a line it skips, or
#: the exception it raises.
ParseLine = Callable[[str], Row | None]
#: A block's tokens to frame columns for every line, and which lines it handled.
BuildTokens = Callable[[Tokens], tuple[FrameColumns, npt.NDArray[np.bool_]]]
#: A block's text (UTF-8) to the frames of the lines it read (in file order), their
#: line indices, and the indices of the lines left for the line parser.
BuildBlock = Callable[[bytes], tuple[FrameColumns, npt.NDArray[np.intp], npt.NDArray[np.intp]]]

#: Raw bytes read at a time: ~3500 lines, enough to spread numpy's fixed cost
#: per call thin, little enough for the first chunk to come early.
BLOCK_BYTES = 1 << 18
#: What python-can's line handling raises for a line it rejects.
LINE_ERRORS = (ValueError, IndexError, KeyError)

_U32_MAX = 0xFFFF_FFFF


@dataclass(frozen=True, slots=True)
class LineFormat:
    """How a format's lines are read: the line parser, and the bulk builder if any.

    ``block`` reads every line of a block it can from the block's text, else
    ``tokens`` from the block's :class:`Tokens`; the line parser gets the others
    (all of them without either).
    """

    parse_line: ParseLine
    tokens: BuildTokens | None = None
    block: BuildBlock | None = None


def open_binary(path: Path) -> io.BufferedIOBase:
    """The file, decompressed when its name ends in ``.gz`` (as python-can opens it)."""
    try:
        if path.name.lower().endswith(".gz"):
            return gzip.open(path, "rb")
        return path.open("rb")
    except OSError as exc:
        raise SourceError(
            f"cannot read log file {str(path)!r}: {type(exc).__name__}: {exc}"
        ) from exc


def text_blocks(path: Path, block_bytes: int = BLOCK_BYTES) -> Iterator[tuple[int, str]]:
    """The file's lines in blocks: (number of the block's first line, lines joined by ``\\n``).

    Lines are what python-can's text reader iterates over: UTF-8 with ``\\r\\n``
    and ``\\r`` turned into ``\\n``; a block never ends with the ``\\n`` of its
    last line. Complete lines before a decoding or read error come out first.
    """
    with open_binary(path) as file:
        yield from _decoded_blocks(path, file, block_bytes, 1, b"", None)


def ascii_blocks(path: Path, block_bytes: int = BLOCK_BYTES) -> Iterator[tuple[int, str | bytes]]:
    """The file's lines in blocks as :func:`text_blocks` cuts them, but as raw bytes while
    the file is plain ASCII without a carriage return (those bytes are the text).

    From the first block that is not plain (or whose read fails) on, the blocks are
    text, decoded and checked as :func:`text_blocks` does; this saves decoding and
    counting the lines of a text, a sixth of what a candump line costs to read.
    """
    line = 1
    with open_binary(path) as file:
        pending = b""  # the start of a line whose end is not read yet
        while True:
            raw, failure = _read(file, block_bytes)
            if failure is not None or not raw.isascii() or b"\r" in raw:
                yield from _decoded_blocks(path, file, block_bytes, line, pending + raw, failure)
                return
            if len(raw) < block_bytes:  # the end of the file
                rest = pending + raw
                if rest:
                    yield line, rest[:-1] if rest.endswith(b"\n") else rest
                return
            cut = raw.rfind(b"\n")
            if cut < 0:
                pending += raw
                continue
            # One copy into the block (the pending bytes and the read's lines joined).
            block = b"".join((pending, memoryview(raw)[:cut])) if pending else raw[:cut]
            yield line, block
            line += _newlines(block) + 1
            pending = raw[cut + 1 :]


def _newlines(block: bytes) -> int:
    # twice as fast as bytes.count here
    return int(np.count_nonzero(np.frombuffer(block, dtype=np.uint8) == 10))


def _decoded_blocks(
    path: Path,
    file: io.BufferedIOBase,
    block_bytes: int,
    line: int,
    head: bytes,
    failure: Exception | None,
) -> Iterator[tuple[int, str]]:
    """The blocks of :func:`text_blocks` from line *line* on, *head* read already (and
    *failure*, the error that stopped that read, if any)."""
    decoder = io.IncrementalNewlineDecoder(codecs.getincrementaldecoder("utf-8")(), translate=True)
    pending = ""  # the start of a line whose end is not read yet
    raw = head
    while True:
        if not raw and failure is None:
            raw, failure = _read(file, block_bytes)
        try:
            text = pending + decoder.decode(raw, final=not raw and failure is None)
        except UnicodeDecodeError as exc:
            good = bytes(exc.object[: exc.start]).decode("utf-8", "replace")
            text = pending + good.replace("\r\n", "\n").replace("\r", "\n")
            failure = exc
        if failure is not None:  # the complete lines first, then the error
            cut = text.rfind("\n")
            if cut >= 0:
                yield line, text[:cut]
                line += text.count("\n", 0, cut) + 1
            reason = f"{type(failure).__name__}: {failure}"
            raise LogFormatError(path, f"line {line}", reason) from failure
        if not raw:
            if text:
                yield line, text[:-1] if text.endswith("\n") else text
            return
        raw = b""
        cut = text.rfind("\n")
        if cut < 0:
            pending = text
            continue
        yield line, text[:cut]
        line += text.count("\n", 0, cut) + 1
        pending = text[cut + 1 :]


def _read(file: io.BufferedIOBase, size: int) -> tuple[bytes, Exception | None]:
    """Up to *size* bytes, and the read error that stopped it short, if any.

    Read a piece at a time so that what came before a corrupt or truncated gzip
    stream is kept (``GzipFile.read`` drops it when it raises).
    """
    parts: list[bytes] = []
    got = 0
    try:
        while got < size:
            part = file.read1(size - got)
            if not part:
                break
            parts.append(part)
            got += len(part)
    except (OSError, EOFError, zlib.error) as exc:  # OSError includes BadGzipFile
        return b"".join(parts), exc
    return b"".join(parts), None


class LineReader:
    """Lines one at a time (for a header), then the rest of the file in blocks."""

    def __init__(self, blocks: Iterator[tuple[int, str]]) -> None:
        self._blocks = blocks
        self._lines: list[str] = []
        self._index = 0
        self._first = 1

    def next_line(self) -> tuple[int, str] | None:
        """The next line and its number, or None at the end of the file."""
        while self._index >= len(self._lines):
            item = next(self._blocks, None)
            if item is None:
                return None
            self._first, block = item
            self._lines = block.split("\n")
            self._index = 0
        self._index += 1
        return self._first + self._index - 1, self._lines[self._index - 1]

    def rest(self) -> Iterator[tuple[int, str]]:
        """The lines not taken by :meth:`next_line`, in blocks like :func:`text_blocks`."""
        if self._index < len(self._lines):
            yield self._first + self._index, "\n".join(self._lines[self._index :])
        self._lines = []
        yield from self._blocks


def read_lines(
    path: Path,
    fmt: LineFormat,
    blocks: Iterator[tuple[int, str]] | Iterator[tuple[int, str | bytes]],
    chunker: Chunks,
    *,
    direct: Callable[[bytes], list[FrameColumns] | None] | None = None,
) -> Iterator[FrameColumns]:
    """The frames of *blocks* in chunks; a rejected line raises after the frames before it.

    A block of bytes (from :func:`ascii_blocks`) is ASCII text. *direct*, if
    given, reads such a block straight into the chunker's chunks (returning the
    chunks now full) or declines it (None, nothing kept): the block is then
    parsed as any other.
    """
    while True:
        try:
            item = next(blocks)
        except StopIteration:
            break
        except LogFormatError:
            yield from chunker.flush()
            raise
        first_line, block = item
        if direct is not None and isinstance(block, bytes):
            full = direct(block)
            if full is not None:
                yield from full
                continue
        piece, error = _parse_block(fmt, block)
        if piece is not None:
            yield from chunker.add(piece)
        if error is not None:
            yield from chunker.flush()
            row, exc = error
            raise LogFormatError(
                path, f"line {first_line + row}", f"{type(exc).__name__}: {exc}"
            ) from exc
    yield from chunker.flush()


def _parse_block(
    fmt: LineFormat, block: str | bytes
) -> tuple[FrameColumns | None, tuple[int, Exception] | None]:
    """The frames of one block in file order, and the first line rejected (row, exception)."""
    pieces: list[FrameColumns] = []
    positions: list[npt.NDArray[np.intp]] = []
    slow: Sequence[int]  # the lines for the line parser
    if fmt.block is not None:
        piece, rows, slow_rows = fmt.block(block.encode() if isinstance(block, str) else block)
        if len(piece):
            pieces.append(piece)
            positions.append(rows)
        slow = slow_rows.tolist()
    elif isinstance(block, bytes):
        raise TypeError("only a format with a block builder reads blocks of bytes")
    elif fmt.tokens is None:
        slow = range(block.count("\n") + 1)
    else:
        tokens = Tokens(block)
        slow = range(tokens.lines)
        if len(tokens.starts):  # else all lines are blank
            piece, handled = fmt.tokens(tokens)
            pieces.append(piece if handled.all() else select(piece, handled))
            positions.append(np.flatnonzero(handled))
            slow = np.flatnonzero(~handled).tolist()
    error: tuple[int, Exception] | None = None
    if len(slow):
        lines = (block.decode("ascii") if isinstance(block, bytes) else block).split("\n")
        parsed: list[Row] = []
        parsed_at: list[int] = []
        for row in slow:
            try:
                frame = fmt.parse_line(lines[row])
                if frame is not None:
                    check_row(frame)
            except LINE_ERRORS as exc:
                error = (row, exc)
                break
            if frame is not None:
                parsed.append(frame)
                parsed_at.append(row)
        if parsed:
            pieces.append(pack_rows(parsed))
            positions.append(np.array(parsed_at, dtype=np.intp))
    if error is not None:  # python-can yields nothing from the rejected line on
        kept = [w < error[0] for w in positions]
        pieces = [select(p, keep) for p, keep in zip(pieces, kept, strict=True)]
        positions = [w[keep] for w, keep in zip(positions, kept, strict=True)]
    if not any(len(p) for p in pieces):
        return None, error
    if len(pieces) == 1:
        return pieces[0], error  # each piece is in file order

    order = np.argsort(np.concatenate(positions), kind="stable")
    return select(concat(pieces), order), error


def check_row(row: Row) -> None:
    """Raise ValueError for a frame the columns cannot hold (python-can would keep it)."""
    _, ident, _, dlc, data, _ = row
    if not 0 <= ident <= _U32_MAX or not 0 <= dlc <= 255 or len(data) > 255:
        raise ValueError(
            f"frame (id {ident}, dlc {dlc}, {len(data)} data bytes) does not fit the columns"
        )


def pack_rows(rows: Sequence[Row]) -> FrameColumns:
    """Columns of frames from the line parser (the rare lines, so plain Python)."""
    stamps, ids, flags, dlcs, datas, channel_values = zip(*rows, strict=True)
    channels = list(dict.fromkeys(channel_values))
    index = {channel: code for code, channel in enumerate(channels)}
    lengths = np.array([len(data) for data in datas], dtype=np.intp)
    return FrameColumns(
        timestamp=np.array(stamps, dtype=np.float64),
        arbitration_id=np.array(ids, dtype=np.uint32),
        flags=np.array(flags, dtype=np.uint8),
        dlc=np.array(dlcs, dtype=np.uint8),
        length=lengths.astype(np.uint8),
        data=byte_rows(b"".join(datas), lengths),
        channel=np.array([index[c] for c in channel_values], dtype=np.int32),
        channels=channels,
    )


class Chunks(Protocol):
    """Where :func:`read_lines` puts the frames: cut into chunks as they come."""

    def add(self, piece: FrameColumns) -> Iterator[FrameColumns]:
        """Take *piece*; yield the chunks that are now full."""
        ...  # pragma: no cover

    def flush(self) -> Iterator[FrameColumns]:
        """Yield the frames left over, as one last (shorter) chunk."""
        ...  # pragma: no cover


class Chunker:
    """Cuts consecutive pieces of frames into chunks of exactly ``chunk_frames`` (but the last)."""

    def __init__(self, chunk_frames: int) -> None:
        self._size = chunk_frames
        self._pieces: list[FrameColumns] = []
        self._count = 0
        self._position = 0

    def add(self, piece: FrameColumns) -> Iterator[FrameColumns]:
        """Take *piece*; yield the chunks that are now full."""
        if len(piece):
            self._pieces.append(piece)
            self._count += len(piece)
        while self._count >= self._size:
            yield self._take(self._size)

    def flush(self) -> Iterator[FrameColumns]:
        """Yield the frames left over, as one last (shorter) chunk."""
        if self._count:
            yield self._take(self._count)

    def _take(self, count: int) -> FrameColumns:
        merged = concat(self._pieces)
        rest = len(merged) - count
        self._pieces = [_slice(merged, count, len(merged))] if rest else []
        self._count = rest
        chunk = _slice(merged, 0, count)
        chunk.first_position = self._position
        self._position += count
        return chunk


def _slice(cols: FrameColumns, start: int, stop: int) -> FrameColumns:
    """Frames ``start:stop``, keeping only their channels and data width."""
    part = select(cols, slice(start, stop))
    if len(part.channels) > 1:
        used = np.bincount(part.channel, minlength=len(part.channels)) > 0
        if not used.all():
            keep = np.flatnonzero(used)
            remap = np.zeros(len(used), dtype=np.int32)
            remap[keep] = np.arange(len(keep), dtype=np.int32)
            part.channel = remap[part.channel]
            part.channels = [part.channels[i] for i in keep.tolist()]
    width = int(part.length.max()) if stop > start else 0
    if width < part.data.shape[1]:
        part.data = np.ascontiguousarray(part.data[:, :width])
    return part
