"""python-can's MF4 frames in columns: from a group's component values, then merged and chunked.

python-can's ``MF4Reader`` turns each record of a ``CAN_DataFrame``,
``CAN_ErrorFrame`` or ``CAN_RemoteFrame`` structure into a ``can.Message``
from the structure's components (``<structure>.ID``, ``.IDE``, ...): this
module does the same for a block of records at once, whichever reader found
the values. :func:`frame_columns` is the one place where python-can's choices
live: which components each kind reads, the defaults of ``can.Message`` where
a component is missing, ``int(ID) & 0x1FFFFFFF``, ``Dir`` as a number (0 is
received) or as the text ``Rx``, a remote frame's ``DLC``, ``DataBytes`` cut
to ``DataLength`` (by the caller's payload function, which knows how its bytes
are stored). :func:`merge` orders several groups' frames as python-can's
``heapq.merge`` does and :func:`rechunk` cuts them into chunks. Both MF4
readers (asammdf's path and the native one) build their frames with these.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from vehicle_agent.errors import LogFormatError
from vehicle_agent.logs.columns import (
    BRS,
    ERROR,
    ESI,
    EXTENDED,
    FD,
    REMOTE,
    RX,
    Channel,
    FrameColumns,
    concat,
    select,
)

__all__ = [
    "KINDS",
    "WORD_KEEP",
    "Group",
    "Layout",
    "Payload",
    "check_mergeable",
    "cut_payload",
    "frame_columns",
    "keep",
    "merge",
    "rechunk",
]

#: The structure channels python-can reads frames from, in the order it looks for them.
KINDS = ("CAN_DataFrame", "CAN_ErrorFrame", "CAN_RemoteFrame")

#: Builds a block's (length, data) columns from its ``DataLength`` values.
Payload = Callable[[npt.NDArray[Any]], tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]]

_ID_MASK = 0x1FFFFFFF
_INTEGER = "uib"  # numpy kinds that python-can's int()/bool() read exactly


class Layout(Exception):
    """A block's values are not what the reader reproduces exactly."""


def frame_columns(
    kind: str,
    components: Mapping[str, npt.NDArray[Any]],
    timestamp: npt.NDArray[np.float64],
    payload: Payload,
) -> FrameColumns:
    """A block of *kind* records as python-can reads each one.

    *components* maps a component's name after ``<kind>.`` (``"ID"``, ...) to
    its values; ``"DataBytes"`` only needs to be present, *payload* reads it.
    """
    n = len(timestamp)

    def column(component: str) -> npt.NDArray[Any]:
        if component not in components:  # python-can would fail on the missing key
            raise Layout(f"no {kind}.{component} channel")
        return _integer(components[component], f"{kind}.{component}")

    def truth(component: str, default: bool, read: bool = True) -> npt.NDArray[np.bool_] | bool:
        # bool(x), or can.Message's default where python-can passes nothing.
        if not (read and component in components):
            return default
        return np.asarray(column(component) != 0)

    remote, error = kind == "CAN_RemoteFrame", kind == "CAN_ErrorFrame"
    flags = np.zeros(n, dtype=np.uint8)
    for bit, values in (
        (EXTENDED, truth("IDE", True)),
        (REMOTE, truth("RTR", remote, read=error)),
        (ERROR, error),
        (FD, truth("EDL", False, read=not remote)),
        (BRS, truth("BRS", False, read=not remote)),
        (ESI, truth("ESI", False, read=not remote)),
        (RX, _received(components, f"{kind}.Dir")),
    ):
        if isinstance(values, bool):  # the same for every frame
            flags |= np.uint8(bit if values else 0)
        else:  # a bool is a byte of 0 or 1: shifted to the flag's bit
            flags |= values.view(np.uint8) << np.uint8(bit.bit_length() - 1)

    if error and "ID" not in components:
        arbitration_id = np.zeros(n, dtype=np.uint32)
    else:
        arbitration_id = _low_29_bits(column("ID"))

    if remote or (error and not ("DataLength" in components and "DataBytes" in components)):
        length = np.zeros(n, dtype=np.uint8)
        data = np.zeros((n, 0), dtype=np.uint8)
    else:
        if "DataBytes" not in components:
            raise Layout(f"no {kind}.DataBytes channel")
        length, data = payload(column("DataLength"))
    if remote:
        dlc_values = column("DLC").astype(np.int64)
        if n and (dlc_values.min() < 0 or dlc_values.max() > 255):
            raise Layout("a remote frame's DLC is outside 0..255")
        dlc = dlc_values.astype(np.uint8)
    else:
        dlc = length  # python-can passes no DLC: can.Message takes len(data)

    if "BusChannel" in components:
        channels, channel = _codes(column("BusChannel"))
    else:
        channels = [None]
        channel = np.zeros(n, dtype=np.int32)
    return FrameColumns(timestamp, arbitration_id, flags, dlc, length, data, channel, channels)


def _low_29_bits(values: npt.NDArray[Any]) -> npt.NDArray[np.uint32]:
    """``int(x) & 0x1FFFFFFF`` of every value."""
    if values.dtype.kind != "u":  # the low 29 bits survive the cast to int64
        return (values.astype(np.int64) & _ID_MASK).astype(np.uint32)
    mask = values.dtype.type(min(_ID_MASK, np.iinfo(values.dtype).max))
    out = np.empty(len(values), dtype=np.uint32)
    np.bitwise_and(values, mask, out=out, casting="unsafe")
    return out


def _codes(bus: npt.NDArray[Any]) -> tuple[list[Channel], npt.NDArray[np.int32]]:
    """The distinct channel numbers in order, and each frame's index among them."""
    if bus.dtype.kind == "b":
        bus = bus.astype(np.int64)
    if not len(bus):
        return [], np.zeros(0, dtype=np.int32)
    # Most logs hold one or two buses: told apart by comparisons, not sorted.
    low, high = bus.min(), bus.max()
    if low == high:
        return [int(low)], np.zeros(len(bus), dtype=np.int32)
    if not ((bus != low) & (bus != high)).any():
        return [int(low), int(high)], (bus == high).astype(np.int32)
    if bus.dtype.kind == "u" and bus.dtype.itemsize <= 2:  # counted rather than sorted
        present = np.bincount(bus) > 0
        ranks = np.cumsum(present, dtype=np.int32) - 1
        return [int(v) for v in np.flatnonzero(present).tolist()], ranks[bus]
    values, codes = np.unique(bus, return_inverse=True)
    return [int(v) for v in values.tolist()], codes.astype(np.int32)


def _integer(values: npt.NDArray[Any], name: str) -> npt.NDArray[Any]:
    if values.ndim != 1 or values.dtype.kind not in _INTEGER:
        raise Layout(f"{name} is {values.dtype} {values.shape[1:]}, not an integer")
    return values


def _received(
    components: Mapping[str, npt.NDArray[Any]], name: str
) -> npt.NDArray[np.bool_] | bool:
    """python-can's is_rx: Dir is 0, or the text "Rx"; True without a Dir channel."""
    suffix = name.rsplit(".", 1)[1]
    if suffix not in components:
        return True
    direction = components[suffix]
    if direction.ndim == 1 and direction.dtype.kind == "S":  # a value-to-text conversion
        return np.asarray(direction == b"Rx")
    return np.asarray(_integer(direction, name) == 0)


def cut_payload(
    declared: npt.NDArray[Any],
    width: int,
    rows: Callable[[int, npt.NDArray[np.int64]], npt.NDArray[np.uint8]],
    available: npt.NDArray[Any] | None = None,
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]:
    """``DataBytes[i][:DataLength[i]]`` for a block: lengths and zero-padded rows.

    *width* is the width of asammdf's byte array (any number at least the
    longest *declared* length does when it only clips). ``rows(k, kept)`` gives
    the first *k* bytes of every record with those from ``kept[i]`` on zeroed
    (see :func:`keep`). A record's bytes from ``available[i]`` on (its VLSD
    sample's length) are asammdf's zero padding.
    """
    wanted = declared.astype(np.int64)
    # A Python slice [:k]: k clipped to the row, counted from its end when negative.
    if declared.dtype.kind == "u":
        sizes = np.minimum(wanted, width)
    else:
        sizes = np.where(wanted >= 0, np.minimum(wanted, width), np.maximum(wanted + width, 0))
    if sizes.size and sizes.max() > 255:
        raise Layout("frames longer than 255 bytes")
    longest = int(sizes.max()) if sizes.size else 0
    kept = sizes if available is None else np.minimum(sizes, available.astype(np.int64))
    return sizes.astype(np.uint8), rows(longest, kept)


def keep(rows: npt.NDArray[np.uint8], kept: npt.NDArray[np.int64]) -> npt.NDArray[np.uint8]:
    """*rows* with each row's bytes from ``kept[i]`` (at most 256) on zeroed."""
    return rows & _KEEP[kept, : rows.shape[1]]


# Row l keeps the first l bytes of a row (0xFF) and zeroes the others.
_KEEP = np.where(np.arange(256) < np.arange(257)[:, None], 0xFF, 0).astype(np.uint8)
#: The same as 64-bit words: row l of ``WORD_KEEP`` masks 32 words of 8 bytes.
WORD_KEEP = np.ascontiguousarray(_KEEP).view("<u8")


@dataclass(slots=True)
class Group:
    """A frame group being merged: asammdf's group index, its structure channel, its records."""

    index: int
    kind: str  # one of KINDS
    cycles: int


def check_mergeable(
    path: Path, group: Group, timestamp: npt.NDArray[np.float64], offset: int
) -> None:
    """Refuse a NaN time stamp where groups are merged: ``heapq`` orders NaN inconsistently."""
    nan = np.flatnonzero(np.isnan(timestamp))
    if nan.size:
        raise LogFormatError(
            path,
            f"channel group {group.index}, frame {offset + int(nan[0])}",
            "NaN time stamp in a file whose frame groups must be merged by time",
        )


def merge(
    path: Path,
    groups: list[Group],
    firsts: list[FrameColumns],
    streams: list[Iterator[FrameColumns]],
) -> Iterator[FrameColumns]:
    """All groups' frames in python-can's ``heapq.merge`` order, block by block."""
    if len(groups) == 1:  # heapq.merge of one iterator compares nothing
        yield firsts[0]
        yield from streams[0]
        return
    count = len(groups)
    pending: list[FrameColumns | None] = list(firsts)
    keys: list[npt.NDArray[np.float64]] = [
        np.maximum.accumulate(first.timestamp) for first in firsts
    ]
    peak = [float(key[-1]) for key in keys]  # each group's running maximum so far
    seen = [len(first) for first in firsts]
    active = set(range(count))
    while True:
        # No frame still to come sorts before (running maximum, group) of any
        # group still being read; with none left, everything goes.
        bound_key, bound_group = min((peak[g], g) for g in active) if active else (math.inf, count)
        parts: list[FrameColumns] = []
        part_keys: list[npt.NDArray[np.float64]] = []
        for g, rows in enumerate(pending):
            if rows is None:
                continue
            key = keys[g]
            cut = int(np.searchsorted(key, bound_key, side="right" if g <= bound_group else "left"))
            if cut:
                parts.append(select(rows, slice(0, cut)))
                part_keys.append(key[:cut])
            pending[g] = select(rows, slice(cut, None)) if cut < len(rows) else None
            keys[g] = key[cut:]
        if parts:
            merged = concat(parts)
            yield select(merged, np.argsort(np.concatenate(part_keys), kind="stable"))
        if not active:
            return
        # All the bound group's frames left: read its next block.
        try:
            block = next(streams[bound_group])
        except StopIteration:
            active.discard(bound_group)
            continue
        check_mergeable(path, groups[bound_group], block.timestamp, seen[bound_group])
        seen[bound_group] += len(block)
        running = np.maximum(np.maximum.accumulate(block.timestamp), peak[bound_group])
        peak[bound_group] = float(running[-1])
        held = pending[bound_group]
        pending[bound_group] = block if held is None else concat([held, block])
        keys[bound_group] = np.concatenate([keys[bound_group], running])


def rechunk(blocks: Iterator[FrameColumns], chunk_frames: int) -> Iterator[FrameColumns]:
    """Blocks regrouped into chunks of exactly *chunk_frames* frames (the last one fewer)."""
    position = 0
    held: list[FrameColumns] = []
    count = 0
    for block in blocks:
        if not len(block):
            continue
        held.append(block)
        count += len(block)
        if count < chunk_frames:
            continue
        rows = concat(held)
        cut = 0
        while len(rows) - cut >= chunk_frames:
            yield _chunk(select(rows, slice(cut, cut + chunk_frames)), position)
            position += chunk_frames
            cut += chunk_frames
        held = [select(rows, slice(cut, None))] if cut < len(rows) else []
        count = len(rows) - cut
    if count:
        yield _chunk(concat(held), position)


def _chunk(rows: FrameColumns, position: int) -> FrameColumns:
    """*rows* as a chunk: its position, its own channels only, data no wider than its frames."""
    channels, channel = rows.channels, rows.channel
    used = np.bincount(channel, minlength=len(channels)) > 0
    if not used.all():
        channel = (np.cumsum(used, dtype=np.int32) - 1)[channel]
        channels = [c for c, u in zip(channels, used.tolist(), strict=True) if u]
    longest = int(rows.length.max()) if len(rows) else 0
    data = np.ascontiguousarray(rows.data[:, :longest])
    return replace(rows, data=data, channel=channel, channels=channels, first_position=position)
