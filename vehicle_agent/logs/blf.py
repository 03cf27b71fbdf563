"""A fast reader of Vector BLF logs: python-can's frames, parsed with numpy.

python-can's ``BLFReader`` builds one ``can.Message`` per object with several
``struct`` calls (~2.5 µs a frame here); this reader locates the objects of a
whole log container at once and turns each kind into columns with numpy. It
yields exactly python-can's frames, and is tested against it.

Format facts relied on (as python-can 4.6 reads them, copied exactly):

- The file header (``LOGG``) holds its own size at byte 4 and the start time as
  a SYSTEMTIME at byte 40; python-can's ``systemtime_to_timestamp`` turns it
  into the start timestamp (0 when invalid).
- Then objects: ``LOBJ``, header size (u16), header version (u16), object size
  (u32, padding excluded), object type (u32), then ``size % 4`` padding bytes.
  At the top level only log containers (type 10) count: a 16-byte header
  (compression method u16: 0 stored, 2 zlib, any other skipped) and the data.
  The containers' data form one stream of objects, which may span containers
  (python-can prepends the unparsed tail to the next container's data; so does
  this reader, so that even its buffer boundaries are python-can's).
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
smaller than its header or than the record python-can reads from it).
"""

from __future__ import annotations

import decimal
import logging
import os
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

import numpy as np
import numpy.typing as npt
from can.io.blf import TIME_ONE_NANS_FACTOR, TIME_TEN_MICS_FACTOR, systemtime_to_timestamp

from vehicle_agent.errors import LogFormatError, SourceError
from vehicle_agent.logs import Unsupported
from vehicle_agent.logs.columns import BRS, ERROR, ESI, EXTENDED, FD, REMOTE, RX, FrameColumns

__all__ = ["read"]

LOG = logging.getLogger(__name__)

_FILE_HEADER = struct.Struct("<4sLBBBBBBBBQQLL8H8H")  # python-can's, 72 bytes
_OBJECT_HEADER = struct.Struct("<4sHHLL")
_CONTAINER_HEADER = struct.Struct("<H6xL4x")
_LOG_CONTAINER = 10
# Zeros after each buffer, so that fixed-size records near its end can be read.
_PAD = bytes(320)

_U8 = npt.NDArray[np.uint8]
_I64 = npt.NDArray[np.int64]
_Rows = npt.NDArray[Any]
_Select = npt.NDArray[np.intp] | slice


def _record(itemsize: int, **fields: tuple[int, str]) -> np.dtype[np.void]:
    offsets, formats = [f[0] for f in fields.values()], [f[1] for f in fields.values()]
    return np.dtype(
        {"names": list(fields), "offsets": offsets, "formats": formats, "itemsize": itemsize}
    )


_HEAD = _record(32, hsize=(4, "<u2"), hver=(6, "<u2"), osize=(8, "<u4"), otype=(12, "<u4"),
                tflags=(16, "<u4"), ts=(24, "<u8"))  # fmt: skip
# Payloads are read as native 64-bit words ("=u8"): zeroing the bytes past a
# frame's length is then one AND per word with a mask from _WORD_MASKS_*.
_CAN = _record(16, channel=(0, "<u2"), mflags=(2, "u1"), dlc=(3, "u1"), ident=(4, "<u4"),
               data=(8, "=u8"))  # fmt: skip
_ERR = _record(32, channel=(0, "<u2"), dlc=(10, "u1"), ident=(16, "<u4"), data=(24, "=u8"))
_FD = _record(84, channel=(0, "<u2"), mflags=(2, "u1"), dlc=(3, "u1"), ident=(4, "<u4"),
              fdflags=(13, "u1"), valid=(14, "u1"), data=(20, "(8,)=u8"))  # fmt: skip
_FD64 = _record(40, channel=(0, "u1"), dlc=(1, "u1"), valid=(2, "u1"), ident=(4, "<u4"),
                fdflags=(12, "<u4"), direction=(34, "u1"), ext=(35, "u1"))  # fmt: skip

# Record bytes python-can unpacks after the object header, by object type (0:
# no frame). The sizes differ, so they also name the decoder.
_BODY = np.zeros(128, dtype=np.int64)
_BODY[[1, 86, 73, 100, 101]] = [_CAN.itemsize, _CAN.itemsize, 32, 84, 40]
# Row l keeps the first l bytes (0xFF) and zeroes the others.
_BYTE_MASKS = np.where(np.arange(256) < np.arange(257)[:, None], 0xFF, 0).astype(np.uint8)
_WORD_MASKS_8 = np.ascontiguousarray(_BYTE_MASKS[:, :8]).view(np.uint64)[:, 0]
_WORD_MASKS_64 = np.ascontiguousarray(_BYTE_MASKS[:, :64]).view(np.uint64)
# python-can's dlc2len: CAN FD lengths by DLC, 64 above 15.
_DLC_LEN = np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 12, 16, 20, 24, 32, 48, 64] + [64] * 240, np.uint8)


class _Piece(NamedTuple):
    """Frames in columns, channels still python-can's numbers."""

    ts: npt.NDArray[np.float64]
    ident: npt.NDArray[np.uint32]
    flags: _U8
    dlc: _U8
    length: _U8
    data: _U8
    channel: npt.NDArray[np.int32]

    def cut(self, rows: slice) -> _Piece:
        return _Piece._make([column[rows] for column in self])


class _Heads(NamedTuple):
    """The object header fields python-can reads, one array each."""

    hsize: npt.NDArray[np.uint16]
    hver: npt.NDArray[np.uint16]
    osize: _I64
    otype: npt.NDArray[np.uint32]
    tflags: npt.NDArray[np.uint32]
    ts: npt.NDArray[np.uint64]

    @classmethod
    def at(cls, a: _U8, at: _I64) -> _Heads:
        r = _gather(a, at, _HEAD)
        osize = r["osize"].astype(np.int64)
        return cls(r["hsize"], r["hver"], osize, r["otype"], r["tflags"], r["ts"])

    def take(self, rows: _Select) -> _Heads:
        return _Heads._make([column[rows] for column in self])


class _Broken(Exception):
    """The file is damaged: ``args`` are the position and the reason."""


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


def _pieces(file: BinaryIO) -> Iterator[_Piece]:
    """The frames of each log container; raises :class:`_Broken` at damage."""
    size = os.fstat(file.fileno()).st_size
    raw = file.read(_FILE_HEADER.size)
    if len(raw) < _FILE_HEADER.size or raw[:4] != b"LOGG":
        raise _Broken("byte 0", "not a BLF file (no LOGG file header)")
    header = _FILE_HEADER.unpack(raw)
    start = float(systemtime_to_timestamp(header[14:22]))
    pos = header[1]
    if not _FILE_HEADER.size <= pos <= size:
        raise _Broken("byte 4", f"file header size {pos} out of range (file of {size} bytes)")
    file.seek(pos)
    tail = b""
    while raw := file.read(_OBJECT_HEADER.size):
        here = f"byte {pos}"
        if len(raw) < _OBJECT_HEADER.size:
            raise _Broken(here, "file ends inside an object header")
        signature, _, _, obj_size, obj_type = _OBJECT_HEADER.unpack(raw)
        if signature != b"LOBJ" or obj_size < _OBJECT_HEADER.size:
            raise _Broken(here, f"no object (signature {signature!r}, size {obj_size})")
        # Never ask read() for more than the file holds: it allocates it first.
        wanted = obj_size - _OBJECT_HEADER.size
        body = file.read(min(wanted, max(size - file.tell(), 0)))
        file.read(obj_size % 4)  # padding, as python-can counts it
        pos += _OBJECT_HEADER.size + wanted + obj_size % 4
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
        data: bytes | memoryview = memoryview(body)[_CONTAINER_HEADER.size :]
        if method == 2:
            inflater = zlib.decompressobj()
            try:
                data = inflater.decompress(data)
            except zlib.error as exc:
                raise _Broken(here, f"log container does not inflate: {exc}") from exc
            damage = damage or ("" if inflater.eof else "log container's zlib data cut short")
        buffer = b"".join((tail, data, _PAD))
        end = len(buffer) - len(_PAD)
        piece, consumed, error = _parse(buffer, end, start)
        if piece is not None:
            yield piece
        if error is not None:
            offset, reason = error
            raise _Broken(f"{here} (log container), data offset {offset - len(tail)}", reason)
        if damage:
            raise _Broken(here, damage)
        tail = buffer[consumed:end]
    if b"LOBJ" in tail:
        # python-can drops an object left unfinished by the last container: the
        # log was cut at a container boundary.
        raise _Broken(f"byte {pos}", "file ends inside an object")


def _gather(a: _U8, at: _I64, dtype: np.dtype[np.void]) -> _Rows:
    """The records of *dtype* at the increasing byte offsets *at* of *a*.

    Evenly spaced records (a run of objects of one size, the usual log) are a
    strided view of the buffer; others are copied out row by row.
    """
    if len(at) > 1:
        step = int(at[1] - at[0])
        if int(at[-1] - at[0]) == step * (len(at) - 1) and bool((np.diff(at) == step).all()):
            return np.ndarray((len(at),), dtype, a, int(at[0]), (step,))
    windows = np.ndarray((len(a) - dtype.itemsize + 1, dtype.itemsize), np.uint8, a, 0, (1, 1))
    rows: _Rows = windows[at].view(dtype)[:, 0]
    return rows


def _find_objects(a: _U8, end: int) -> _I64:
    """Offsets of every ``LOBJ`` in ``a[:end]``, payload bytes included."""
    first = np.flatnonzero(a[: max(end - 3, 0)] == 0x4C)
    hit = (a[first + 1] == 0x4F) & (a[first + 2] == 0x42) & (a[first + 3] == 0x4A)
    found: _I64 = first[hit].astype(np.int64)
    return found


def _walk(starts: _I64, ends: _I64, end: int) -> tuple[npt.NDArray[np.intp], int]:
    """python-can's walk over the ``LOBJ`` offsets *starts* (objects ending at *ends*).

    Only needed when the offsets do not simply chain (a payload holds ``LOBJ``,
    or damage). Each offset's successor is the one python-can's search from its
    end finds; offsets no other leads to cannot be walked and are dropped until
    the rest chains (at once, usually), or else the walk goes object by object.
    Returns the indices walked and where the last search failed.
    """
    k = len(starts)
    if starts[0] > 4:
        return np.empty(0, np.intp), 0
    follow = np.searchsorted(starts, ends)
    walks_on = (starts + 16 <= end) & (ends - starts >= 16) & (ends <= end)  # else _parse stops
    walks_on &= (follow < k) & (starts[np.minimum(follow, k - 1)] <= ends + 4)
    successor = np.where(walks_on, follow, k)
    alive = np.ones(k, bool)
    for _ in range(8):
        walked = np.flatnonzero(alive)
        if successor[walked[-1]] == k and (successor[walked[:-1]] == walked[1:]).all():
            return walked, int(ends[walked[-1]])
        led_to = np.zeros(k + 1, bool)
        led_to[successor[walked]] = True
        led_to[0] = True
        if (alive == (alive & led_to[:k])).all():
            break
        alive &= led_to[:k]
    at, stop, after = starts.tolist(), ends.tolist(), follow.tolist()
    visited: list[int] = []
    pos = i = 0
    while i < k and at[i] <= pos + 4:
        visited.append(i)
        if at[i] + 16 > end or stop[i] - at[i] < 16 or stop[i] > end:
            break
        pos, i = stop[i], after[i]
    return np.array(visited, np.intp), pos


# The frames, the bytes parsed (the rest goes before the next container's data)
# and the offset and reason of damage python-can cannot read.
_Parsed = tuple[_Piece | None, int, tuple[int, str] | None]


def _parse(buffer: bytes, end: int, start: float) -> _Parsed:
    """The frames of the complete objects in ``buffer[:end]``, as python-can reads them."""
    a = np.frombuffer(buffer, dtype=np.uint8)
    found = _find_objects(a, end)
    if not found.size:
        return (None, 0, None if end < 8 else (0, "no object found"))
    heads = _Heads.at(a, found)
    nexts = found + heads.osize
    gaps = found[1:] - nexts[:-1]
    if found[0] <= 4 and (not gaps.size or (gaps.min() >= 0 and gaps.max() <= 4)):
        at, ends, searched = found, nexts, int(nexts[-1])  # the usual case: one chain
    else:
        visited, searched = _walk(found, nexts, end)
        at, heads, ends = found[visited], heads.take(visited), nexts[visited]
    version, obj_size = heads.hver, heads.osize
    known = (version == 1) | (version == 2)
    header = np.where(version == 2, 40, 32)
    body = _BODY[np.minimum(heads.otype, 127)]
    frame = known & (body > 0)
    corrupt = frame & (obj_size < header + body)
    fd64 = frame & (body == 40)
    if fd64.any():
        ext, valid = (a[np.minimum(at + header + k, end)] for k in (35, 2))
        room = np.where(ext > 0, ext, obj_size) - heads.hsize - 40
        # python-can slices data[o : o + min(valid, room)], from the end if that is < 0.
        corrupt |= fd64 & (at + header + 40 + np.minimum(valid, room) < 0)
    problem = (at + 16 > end) | (obj_size < 16) | (ends > end)
    problem |= known & ((at + header > end) | corrupt)
    stop = int(np.argmax(problem)) if problem.any() else len(at)
    error = None
    if stop < len(at):
        consumed = int(ends[stop - 1]) if stop else 0
        # python-can's order: header cut by the buffer's end (read on with the
        # next container), size under 16, object cut, record header cut, record.
        o, size, fits = int(at[stop]), int(obj_size[stop]), int(at[stop] + header[stop]) <= end
        if o + 16 <= end and (size < 16 or (o + size <= end and fits and corrupt[stop])):
            error = (o, f"object of type {int(heads.otype[stop])}: sizes do not add up ({size})")
    else:
        consumed = searched
        if searched + 8 <= end:
            error = (searched, "no object where the previous one ends")
    skipped = int(np.count_nonzero(~known[:stop]))
    if skipped:
        LOG.warning("skipped %d BLF objects of unknown header versions", skipped)
    chosen = np.flatnonzero(frame[:stop])
    if not chosen.size:
        return (None, consumed, error)
    rows: _Select = slice(None) if chosen.size == len(at) else chosen
    piece = _frames(a, end, at[rows] + header[rows], body[rows], heads.take(rows), start)
    return (piece, consumed, error)


# Raw id, flags but EXTENDED, dlc, payload length, raw channel, payload.
_Fields = tuple[npt.NDArray[np.uint32], _U8, _U8, _U8, npt.NDArray[np.integer[Any]], _U8]


def _frames(a: _U8, end: int, at: _I64, body: _I64, heads: _Heads, start: float) -> _Piece:
    """Columns of the frames whose records start at offsets *at*, in that order."""
    n = len(at)
    ident, flags = np.empty(n, np.uint32), np.empty(n, np.uint8)
    dlc, length, channel = np.empty(n, np.uint8), np.empty(n, np.uint8), np.empty(n, np.int32)
    parts: list[tuple[_Select, _U8]] = []  # payloads, whose widths differ
    same = bool((body == body[0]).all())
    for size in [int(body[0])] if same else [16, 32, 84, 40]:
        rows: _Select = slice(None) if same else np.flatnonzero(body == size)
        if isinstance(rows, np.ndarray) and not rows.size:
            continue
        decode = {16: _classic, 32: _error, 84: _fd, 40: _fd64}[size]
        fields = decode(a, end, at[rows], heads, rows)
        ident[rows], flags[rows], dlc[rows], length[rows], channel[rows], data = fields
        parts.append((rows, data))
    flags |= _bit(ident >= 0x80000000, EXTENDED)
    ident &= 0x1FFFFFFF
    channel -= 1  # python-can's channel numbers start at 0
    data = parts[0][1]
    if len(parts) > 1:
        data = np.zeros((n, max(d.shape[1] for _, d in parts)), np.uint8)
        for rows, part in parts:
            data[rows, : part.shape[1]] = part
    ts = _timestamps(heads.ts, heads.tflags, start)
    return _Piece(ts, ident, flags, dlc, length, data, channel)


def _bit(condition: npt.NDArray[np.bool_], bit: int) -> _U8:
    return np.where(condition, np.uint8(bit), np.uint8(0))


def _payload(words: npt.NDArray[np.uint64], length: _U8) -> _U8:
    """8 or 64 payload bytes read as words, with the bytes past *length* zeroed."""
    masks = _WORD_MASKS_8 if words.ndim == 1 else _WORD_MASKS_64
    masked: npt.NDArray[np.uint64] = words & masks[length]
    return masked.view(np.uint8).reshape(len(words), -1)


def _classic(a: _U8, end: int, at: _I64, heads: _Heads, rows: _Select) -> _Fields:
    r = _gather(a, at, _CAN)
    mflags = r["mflags"]
    remote = mflags >= 0x80
    # python-can's Message drops a remote frame's data; others keep data[:dlc].
    length = np.where(remote, np.uint8(0), np.minimum(r["dlc"], np.uint8(8)))
    flags = _bit(remote, REMOTE) | _bit((mflags & 1) == 0, RX)
    return r["ident"], flags, r["dlc"], length, r["channel"], _payload(r["data"], length)


def _error(a: _U8, end: int, at: _I64, heads: _Heads, rows: _Select) -> _Fields:
    r = _gather(a, at, _ERR)
    length = np.minimum(r["dlc"], np.uint8(8))
    flags = np.full(len(r), ERROR | RX, np.uint8)  # python-can leaves is_rx at True
    return r["ident"], flags, r["dlc"], length, r["channel"], _payload(r["data"], length)


def _fd(a: _U8, end: int, at: _I64, heads: _Heads, rows: _Select) -> _Fields:
    r = _gather(a, at, _FD)
    mflags, fdflags = r["mflags"], r["fdflags"]
    remote = mflags >= 0x80
    length = np.where(remote, np.uint8(0), np.minimum(r["valid"], np.uint8(64)))
    flags = _bit(remote, REMOTE) | _bit((mflags & 1) == 0, RX) | _bit((fdflags & 1) != 0, FD)
    flags |= _bit((fdflags & 2) != 0, BRS) | _bit((fdflags & 4) != 0, ESI)
    return r["ident"], flags, _DLC_LEN[r["dlc"]], length, r["channel"], _payload(r["data"], length)


def _fd64(a: _U8, end: int, at: _I64, heads: _Heads, rows: _Select) -> _Fields:
    r = _gather(a, at, _FD64)
    fdflags, valid = r["fdflags"], r["valid"]
    remote = (fdflags & 0x10) != 0
    # python-can: data[at + 40 : at + 40 + min(valid, (ext or size) - header size
    # - 40)], cut at the buffer's end, then zero-padded to `valid` bytes.
    room = np.where(r["ext"] > 0, r["ext"], heads.osize[rows]) - heads.hsize[rows] - 40
    present = np.clip(np.minimum(valid, room), 0, end - at - 40)
    width = int(valid.max())
    data = np.zeros((len(r), width), np.uint8)
    if width:
        raw = _gather(a, at + 40, _record(width, b=(0, f"({width},)u1")))["b"]
        data = raw & _BYTE_MASKS[np.where(remote, 0, present), :width]
    flags = _bit(remote, REMOTE) | _bit(r["direction"] == 0, RX)
    flags |= _bit((fdflags & 0x1000) != 0, FD) | _bit((fdflags & 0x2000) != 0, BRS)
    flags |= _bit((fdflags & 0x4000) != 0, ESI)
    length = np.where(remote, np.uint8(0), valid)
    return r["ident"], flags, _DLC_LEN[r["dlc"]], length, r["channel"], data


def _timestamps(
    ticks: npt.NDArray[np.uint64], tflags: npt.NDArray[np.uint32], start: float
) -> npt.NDArray[np.float64]:
    """python-can's ``float(Decimal(ticks) * factor) + start``, bit for bit."""
    ten_us = tflags == 1
    divisor = np.where(ten_us, 1e5, 1e9) if ten_us.any() else 1e9
    ts: npt.NDArray[np.float64] = ticks.astype(np.float64) / divisor + start
    for i in np.flatnonzero(ticks > 2**53).tolist():  # inexact as doubles: as python-can does
        factor = TIME_TEN_MICS_FACTOR if ten_us[i] else TIME_ONE_NANS_FACTOR
        ts[i] = float(decimal.Decimal(int(ticks[i])) * factor) + start
    return ts


class _Chunks:
    """Pieces of frames regrouped into chunks of *size* frames."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._pieces: list[_Piece] = []
        self._held = 0
        self._position = 0

    def add(self, piece: _Piece) -> Iterator[FrameColumns]:
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

    def _chunk(self, piece: _Piece) -> FrameColumns:
        codes, channels = _channel_codes(piece.channel)
        position, self._position = self._position, self._position + len(piece.ts)
        width = int(piece.length.max())
        data = np.ascontiguousarray(piece.data[:, :width])
        return FrameColumns(*piece[:5], data, codes, channels, position)


def _merge(pieces: list[_Piece]) -> _Piece:
    if len(pieces) == 1:
        return pieces[0]
    data = np.zeros(
        (sum(len(p.ts) for p in pieces), max(p.data.shape[1] for p in pieces)), np.uint8
    )
    row = 0
    for p in pieces:
        data[row : row + len(p.ts), : p.data.shape[1]] = p.data
        row += len(p.ts)
    return _Piece._make(
        data if name == "data" else np.concatenate([getattr(p, name) for p in pieces])
        for name in _Piece._fields
    )


def _channel_codes(channel: npt.NDArray[np.int32]) -> tuple[npt.NDArray[np.int32], list[int]]:
    """Codes into the distinct channels (sorted), by a lookup table over their range."""
    low, high = int(channel.min()), int(channel.max())
    if low == high:
        return np.zeros(len(channel), np.int32), [low]
    present = np.zeros(high - low + 1, bool)
    present[channel - low] = True
    values = np.flatnonzero(present)
    table = np.zeros(high - low + 1, np.int32)
    table[values] = np.arange(len(values), dtype=np.int32)
    return table[channel - low], (values + low).tolist()
