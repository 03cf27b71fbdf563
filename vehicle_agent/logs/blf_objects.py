"""The objects of a BLF log container stream, parsed with numpy into frame columns.

:func:`parse` is python-can's walk over one buffer of the stream (a log
container's data, or several containers' data joined, with the unparsed tail of
the previous buffer in front): it finds the objects python-can finds, turns each
kind of frame record into columns at once, and says how many bytes it consumed
and where the stream is damaged. :mod:`vehicle_agent.logs.blf` reads the file,
inflates the containers and hands the buffers here; its docstring lists the
format facts relied on.

Objects are located without scanning their payloads when the buffer is a run of
objects of one size, back to back (a log of one frame type, the usual case):
python-can's search from each object's end then finds the next object right
there, so checking the signature and the size of every object is the whole
walk. Other buffers are searched for every ``LOBJ`` and walked as python-can
walks them (:func:`_walk`).
"""

from __future__ import annotations

import decimal
import logging
import struct
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
from can.io.blf import TIME_ONE_NANS_FACTOR, TIME_TEN_MICS_FACTOR

from vehicle_agent.logs.columns import BRS, ERROR, ESI, EXTENDED, FD, REMOTE, RX

__all__ = ["PAD", "Parsed", "Piece", "parse"]

LOG = logging.getLogger("vehicle_agent.logs.blf")

#: Zeros after each buffer, so that fixed-size records near its end can be read.
PAD = bytes(320)

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


class Piece(NamedTuple):
    """Frames in columns, channels still python-can's numbers."""

    ts: npt.NDArray[np.float64]
    ident: npt.NDArray[np.uint32]
    flags: _U8
    dlc: _U8
    length: _U8
    data: _U8
    channel: npt.NDArray[np.int32]

    def cut(self, rows: slice) -> Piece:
        return Piece._make([column[rows] for column in self])


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
        return cls.of(_gather(a, at, _HEAD))

    @classmethod
    def of(cls, r: _Rows) -> _Heads:
        """The fields of records of :data:`_HEAD`."""
        osize = r["osize"].astype(np.int64)
        return cls(r["hsize"], r["hver"], osize, r["otype"], r["tflags"], r["ts"])

    def take(self, rows: _Select) -> _Heads:
        return _Heads._make([column[rows] for column in self])


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


_OBJECT_HEADER = struct.Struct("<4sHHLL")
# The same 16 bytes (signature, sizes, version, type) as two words.
_BASE = _record(16, low=(0, "<u8"), high=(8, "<u8"))


def _run(a: _U8, end: int, start: float) -> Parsed | None:
    """The usual buffer in a few passes, or None when it is not one (see below).

    The usual buffer is a run of frame objects with one object header (same
    type, size and header version), back to back, then at most the start of an
    object the buffer cuts (or fewer than 8 bytes). python-can's search from
    each object's end finds the next right there, so comparing every object's
    16 header bytes with the first's is the whole walk; payloads are never
    searched. CAN_FD_MESSAGE_64 objects, whose records python-can reads by their
    own lengths, are left to the general walk.
    """
    if end < 16:
        return None
    signature, _, hver, size, kind = _OBJECT_HEADER.unpack(a[:16].tobytes())
    first = a[:16].view(_BASE)[0]
    header = {1: 32, 2: 40}.get(hver, 0)
    body = int(_BODY[kind]) if kind < len(_BODY) else 0
    if signature != b"LOBJ" or not header or body in (0, 40) or size < header + body:
        return None
    count = end // size
    if not count:
        return None
    heads = np.ndarray((count,), _BASE, a, 0, (size,))
    if not ((heads["low"] == first["low"]).all() and (heads["high"] == first["high"]).all()):
        return None
    parsed = count * size
    rest = a[parsed:end]
    if rest.size >= 8 and rest[:4].tobytes() != b"LOBJ":
        return None  # python-can raises, or finds an object further on
    if rest.size >= 16 and not rest.size < int.from_bytes(rest[8:12].tobytes(), "little"):
        return None  # another object within the buffer
    at = np.arange(header, parsed, size, dtype=np.int64)
    objects = _Heads.of(np.ndarray((count,), _HEAD, a, 0, (size,)))
    piece = _frames(a, end, at, np.full(count, body, np.int64), objects, start)
    return (piece, parsed, None)


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
Parsed = tuple[Piece | None, int, tuple[int, str] | None]


def parse(buffer: bytes, end: int, start: float) -> Parsed:
    """The frames of the complete objects in ``buffer[:end]``, as python-can reads them."""
    a = np.frombuffer(buffer, dtype=np.uint8)
    run = _run(a, end, start)
    return _walked(a, end, start) if run is None else run


def _walked(a: _U8, end: int, start: float) -> Parsed:
    """:func:`parse` for any buffer: every ``LOBJ`` found, then python-can's walk over them."""
    found = _find_objects(a, end)
    if not found.size:
        return (None, 0, None if end < 8 else (0, "no object found"))
    heads = _Heads.at(a, found)
    nexts = found + heads.osize
    gaps = found[1:] - nexts[:-1]
    if found[0] <= 4 and (not gaps.size or (gaps.min() >= 0 and gaps.max() <= 4)):
        at, ends, searched = found, nexts, int(nexts[-1])  # one chain
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


def _frames(a: _U8, end: int, at: _I64, body: _I64, heads: _Heads, start: float) -> Piece:
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
    return Piece(ts, ident, flags, dlc, length, data, channel)


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
