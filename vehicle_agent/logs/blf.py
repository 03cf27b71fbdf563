"""A fast reader of Vector BLF logs: python-can's frames, parsed with numpy.

python-can's ``BLFReader`` builds one ``can.Message`` per object with several
``struct`` calls (~2.5 µs a frame here); this reader inflates the log
containers, joins the data of several (about a megabyte) and parses it at once
with numpy (:mod:`vehicle_agent.logs.blf_objects`). It yields exactly
python-can's frames, and is tested against it.

Format facts relied on (as python-can 4.6 reads them, copied exactly):

- The file header (``LOGG``) holds its own size at byte 4 and the start time as
  a SYSTEMTIME at byte 40; python-can's ``systemtime_to_timestamp`` turns it
  into the start timestamp (0 when invalid).
- Then objects: ``LOBJ``, header size (u16), header version (u16), object size
  (u32, padding excluded), object type (u32), then ``size % 4`` padding bytes.
  At the top level only log containers (type 10) count: a 16-byte header
  (compression method u16: 0 stored, 2 zlib, any other skipped) and the data.
  The containers' data form one stream of objects, which may span containers
  (python-can prepends the unparsed tail to the next container's data). Where
  the stream is whole, the walk over several containers' data joined finds the
  objects python-can finds container by container; where it is not, this
  reader parses those containers again one by one, so that the frames before
  the damage and the position it reports are python-can's.
- In the stream, the next object is the first ``LOBJ`` starting within 4 bytes
  of where the previous one ends (python-can's ``data.index`` over 8 bytes).
  A version 1 object header is 32 bytes, version 2 is 40; other versions are
  skipped. Both keep the time flags (u32) at byte 16 and the time (u64) at 24:
  flags == 1 means units of 10 µs, anything else 1 ns.
- Frames come from CAN_MESSAGE (1) and CAN_MESSAGE2 (86) with 16-byte records,
  CAN_ERROR_EXT (73, 32 bytes), CAN_FD_MESSAGE (100, 84 bytes) and
  CAN_FD_MESSAGE_64 (101, 40 bytes then the data); other types are skipped.

Timestamps are bit for bit python-can's ``float(Decimal(t) * factor) + start``:
for ``t <= 2**53`` numpy's ``float(t) / 1e5`` (or ``/ 1e9``) is the same
correctly rounded quotient, both operands being exact doubles; larger ``t`` go
through ``Decimal`` as in python-can.

Damage: where python-can stops or raises, this reader yields the same frames up
to that point, then raises :class:`LogFormatError`. It also raises where
python-can silently stops (a file cut inside a container or an object, a zlib
stream cut short) and where it would yield garbage or loop forever (an object

Inflating: zlib data is inflated by ISA-L (``isal``, about twice as fast as
zlib here) when its header is the usual one (deflate, 32 KiB window, no preset
dictionary) and the stream inflates to its end; a stream ISA-L rejects or finds
cut short, and any other header, are inflated again by zlib, so that damaged
data gives python-can's bytes and zlib's error. For a whole stream both give
the same bytes (deflate has one decoding, and both check the Adler-32 sum).
"""

from __future__ import annotations

import decimal
import io
import logging
import os
import struct
import zlib
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
from can.io.blf import systemtime_to_timestamp
from isal import isal_zlib

from vehicle_agent.errors import LogFormatError, SourceError
from vehicle_agent.logs import Unsupported
from vehicle_agent.logs.blf_objects import PAD, Piece, parse
from vehicle_agent.logs.columns import FrameColumns

__all__ = ["read"]

LOG = logging.getLogger(__name__)

_FILE_HEADER = struct.Struct("<4sLBBBBBBBBQQLL8H8H")  # python-can's, 72 bytes
_OBJECT_HEADER = struct.Struct("<4sHHLL")
_CONTAINER_HEADER = struct.Struct("<H6xL4x")
_LOG_CONTAINER = 10
#: Bytes of container data parsed at once: enough for numpy's cost per call to
#: vanish (1M frames of 48-byte objects: 0.077 CPU-s container by container,
#: 0.053 from 512 KiB on), small enough to stay in cache.
BATCH_BYTES = 1 << 20
#: Bytes of the file read at once.
BLOCK_BYTES = 4 << 20
# What ISA-L errors are (its stubs type the class as an instance).
_ISAL_ERROR: type[Exception] = isal_zlib.error  # type: ignore[assignment]


class _Broken(Exception):
    """The file is damaged: ``args`` are the position and the reason."""


class _Container(NamedTuple):
    """A log container's data, inflated."""

    here: str  # "byte N": where its object starts in the file
    data: bytes | memoryview
    damage: str  # why the file breaks off within it ("" when it does not)


def read(path: Path, chunk_frames: int) -> Iterator[FrameColumns]:
    """The frames of the BLF log at *path*, as python-can reads them, in chunks."""
    if decimal.getcontext().prec < 20:
        # python-can's Decimal product is exact, hence reproducible, only with
        # 20 digits or more (enough for any u64 time).
        raise Unsupported("decimal context precision below 20 digits")
    chunks = _Chunks(chunk_frames)
    try:
        with path.open("rb") as file:
            for piece in _pieces(file):
                yield from chunks.add(piece)
    except OSError as exc:
        raise SourceError(
            f"cannot read log file {str(path)!r}: {type(exc).__name__}: {exc}"
        ) from exc
    except _Broken as exc:
        yield from chunks.flush()  # the frames python-can yields before the damage
        raise LogFormatError(path, *exc.args) from exc
    yield from chunks.flush()


def _pieces(file: io.BufferedIOBase) -> Iterator[Piece]:
    """The frames of the log, a batch of containers at a time; raises :class:`_Broken`."""
    stream = _Stream(file)
    containers = iter(stream)
    batch: list[_Container] = []
    held = 0
    tail = b""
    while True:
        try:
            container = next(containers)
        except StopIteration:
            break
        except _Broken:
            yield from _parse_batch(batch, tail, stream.start)  # the frames before the damage
            raise
        batch.append(container)
        held += len(container.data)
        if held >= BATCH_BYTES or container.damage:
            tail = yield from _parse_batch(batch, tail, stream.start)
            batch, held = [], 0
    tail = yield from _parse_batch(batch, tail, stream.start)
    if b"LOBJ" in tail:
        # python-can drops an object left unfinished by the last container: the
        # log was cut at a container boundary.
        raise _Broken(f"byte {stream.pos}", "file ends inside an object")


class _Stream:
    """The log containers of a BLF file, in order, inflated; raises :class:`_Broken`.

    ``start`` is the file's start time, ``pos`` where the walk is in the file.
    """

    def __init__(self, file: io.BufferedIOBase) -> None:
        self._file = file
        self._size = os.fstat(file.fileno()).st_size
        raw = file.read(_FILE_HEADER.size)
        if len(raw) < _FILE_HEADER.size or raw[:4] != b"LOGG":
            raise _Broken("byte 0", "not a BLF file (no LOGG file header)")
        header = _FILE_HEADER.unpack(raw)
        self.start = float(systemtime_to_timestamp(header[14:22]))
        self.pos = header[1]
        if not _FILE_HEADER.size <= self.pos <= self._size:
            raise _Broken(
                "byte 4", f"file header size {self.pos} out of range (file of {self._size} bytes)"
            )
        file.seek(self.pos)
        self._block = bytearray()
        self._at = 0  # the next byte of the file in _block

    def _take(self, count: int) -> memoryview:
        """The file's next *count* bytes (fewer at its end), from a block read at once.

        Reading a few MiB at a time rather than object by object saves system
        calls; a bytearray filled by ``readinto`` costs no copy.
        """
        if self._at + count > len(self._block):
            rest = self._block[self._at :]
            # Never read past the size: the buffer is allocated first.
            more = min(max(count - len(rest), BLOCK_BYTES), max(self._size - self._file.tell(), 0))
            block = bytearray(len(rest) + more)
            block[: len(rest)] = rest
            got = self._file.readinto(memoryview(block)[len(rest) :])
            del block[len(rest) + got :]
            self._block, self._at = block, 0
        view = memoryview(self._block)[self._at : self._at + count]
        self._at += len(view)
        return view

    def __iter__(self) -> Iterator[_Container]:
        while raw := self._take(_OBJECT_HEADER.size):
            here = f"byte {self.pos}"
            if len(raw) < _OBJECT_HEADER.size:
                raise _Broken(here, "file ends inside an object header")
            signature, _, _, obj_size, obj_type = _OBJECT_HEADER.unpack(raw)
            if signature != b"LOBJ" or obj_size < _OBJECT_HEADER.size:
                raise _Broken(here, f"no object (signature {signature!r}, size {obj_size})")
            wanted = obj_size - _OBJECT_HEADER.size
            body = self._take(wanted)
            self._take(obj_size % 4)  # padding, as python-can counts it
            self.pos += _OBJECT_HEADER.size + wanted + obj_size % 4
            damage = "file ends inside this object" if len(body) < wanted else ""
            container = obj_type == _LOG_CONTAINER
            if container and len(body) < _CONTAINER_HEADER.size:
                raise _Broken(here, damage or "log container smaller than its header")
            method = _CONTAINER_HEADER.unpack_from(body)[0] if container else None
            if method not in (0, 2):  # skipped, like python-can
                if method is not None:
                    LOG.warning("%s: log container of unknown compression %d skipped", here, method)
                if damage:
                    raise _Broken(here, damage)
                continue
            data: bytes | memoryview = body[_CONTAINER_HEADER.size :]
            if method == 2:
                data, cut = _inflate(data, here)
                damage = damage or cut
            yield _Container(here, data, damage)


def _inflate(data: bytes | memoryview, here: str) -> tuple[bytes, str]:
    """A container's zlib data inflated, and "" or why it is cut short; raises :class:`_Broken`.

    ISA-L inflates the usual streams whole; zlib everything else, damage included.
    """
    if _usual_header(data):
        try:
            inflater = isal_zlib.decompressobj()
            out: bytes = inflater.decompress(data)
            if inflater.eof:
                return out, ""
        except _ISAL_ERROR:
            pass
    return _zlib_inflate(data, here)


def _usual_header(data: bytes | memoryview) -> bool:
    """Whether the zlib header is deflate with a 32 KiB window and no preset dictionary.

    ISA-L inflates a stream that declares a larger window, which zlib rejects.
    """
    if len(data) < 2:
        return False
    cmf, flg = data[0], data[1]
    return cmf == 0x78 and not flg & 0x20 and (cmf * 256 + flg) % 31 == 0


def _zlib_inflate(data: bytes | memoryview, here: str) -> tuple[bytes, str]:
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(data)
    except zlib.error as exc:
        raise _Broken(here, f"log container does not inflate: {exc}") from exc
    return out, "" if inflater.eof else "log container's zlib data cut short"


def _parse_batch(
    batch: list[_Container], tail: bytes, start: float
) -> Generator[Piece, None, bytes]:
    """The frames of *batch* after *tail*; returns the new tail, raises :class:`_Broken`.

    Whole containers are parsed joined; damaged ones, or joined ones that show
    damage, one by one, as python-can reads them.
    """
    if len(batch) > 1 and not batch[-1].damage:
        buffer = b"".join((tail, *(c.data for c in batch), PAD))
        end = len(buffer) - len(PAD)
        piece, consumed, error = parse(buffer, end, start)
        if error is None:
            if piece is not None:
                yield piece
            return buffer[consumed:end]
    for container in batch:
        tail = yield from _parse_one(container, tail, start)
    return tail


def _parse_one(container: _Container, tail: bytes, start: float) -> Generator[Piece, None, bytes]:
    buffer = b"".join((tail, container.data, PAD))
    end = len(buffer) - len(PAD)
    piece, consumed, error = parse(buffer, end, start)
    if piece is not None:
        yield piece
    if error is not None:
        offset, reason = error
        where = f"{container.here} (log container), data offset {offset - len(tail)}"
        raise _Broken(where, reason)
    if container.damage:
        raise _Broken(container.here, container.damage)
    return buffer[consumed:end]


class _Chunks:
    """Pieces of frames regrouped into chunks of *size* frames."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._pieces: list[Piece] = []
        self._held = 0
        self._position = 0

    def add(self, piece: Piece) -> Iterator[FrameColumns]:
        self._pieces.append(piece)
        self._held += len(piece.ts)
        if self._held < self._size:
            return
        merged, first = _merge(self._pieces), 0
        while self._held - first >= self._size:
            yield self._chunk(merged.cut(slice(first, first + self._size)))
            first += self._size
        self._held -= first
        self._pieces = [merged.cut(slice(first, None))] if self._held else []

    def flush(self) -> Iterator[FrameColumns]:
        if self._held:
            merged, self._pieces, self._held = _merge(self._pieces), [], 0
            yield self._chunk(merged)

    def _chunk(self, piece: Piece) -> FrameColumns:
        codes, channels = _channel_codes(piece.channel)
        position, self._position = self._position, self._position + len(piece.ts)
        width = int(piece.length.max())
        data = np.ascontiguousarray(piece.data[:, :width])
        return FrameColumns(*piece[:5], data, codes, channels, position)


def _merge(pieces: list[Piece]) -> Piece:
    if len(pieces) == 1:
        return pieces[0]
    data = np.zeros(
        (sum(len(p.ts) for p in pieces), max(p.data.shape[1] for p in pieces)), np.uint8
    )
    row = 0
    for p in pieces:
        data[row : row + len(p.ts), : p.data.shape[1]] = p.data
        row += len(p.ts)
    return Piece._make(
        data if name == "data" else np.concatenate([getattr(p, name) for p in pieces])
        for name in Piece._fields
    )


def _channel_codes(channel: npt.NDArray[np.int32]) -> tuple[npt.NDArray[np.int32], list[int]]:
    """Codes into the distinct channels (sorted), by a lookup table over their range."""
    low, high = int(channel.min()), int(channel.max())
    if low == high:
        return np.zeros(len(channel), np.int32), [low]
    offsets = channel - np.int32(low)
    present = np.bincount(offsets, minlength=high - low + 1) > 0
    if present.all():  # channels without gaps (the usual case): the offsets are the codes
        return offsets, list(range(low, high + 1))
    values = np.flatnonzero(present)
    table = np.zeros(high - low + 1, np.int32)
    table[values] = np.arange(len(values), dtype=np.int32)
    return table[offsets], (values + low).tolist()
