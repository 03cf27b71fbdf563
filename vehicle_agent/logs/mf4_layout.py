"""How the native MF4 reader reads a frame group's records, and what it refuses.

:func:`frame_kind` picks the channel groups python-can reads frames from;
:func:`layout` checks that asammdf would read the group's components plainly
(unsigned bit fields, byte arrays, a VLSD byte array, a time channel with at
most a linear conversion) and describes each as numpy reads it from a record:
a :class:`Plan`. Anything asammdf would read another way raises
:class:`Unsupported`, so that the asammdf path reads that file.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from vehicle_agent.logs import Unsupported
from vehicle_agent.logs.mf4_blocks import Channel, ChannelGroup
from vehicle_agent.logs.mf4_frames import KINDS

__all__ = ["SPARE", "Block", "Bytes", "Plan", "Samples", "frame_kind", "layout"]

_CG_BUS_EVENT = 0x2
_CN_INVALID = 0x1 | 0x2  # all invalid, invalidation bit present
_VALUE, _VLSD, _MASTER, _VIRTUAL_MASTER = 0, 1, 2, 3
_UINT, _FLOAT, _BYTES = 0, 4, 10
_IDENTITY, _LINEAR = 0, 1
_SOURCE_BUS, _BUS_CAN = 2, 2

# Components python-can reads with int() or bool(), and those it cannot do without.
_READ = {"ID", "IDE", "DLC", "DataLength", "BusChannel", "Dir", "EDL", "BRS", "ESI", "RTR"}
_REQUIRED = {
    "CAN_DataFrame": {"ID", "DataLength", "DataBytes"},
    "CAN_ErrorFrame": set[str](),
    "CAN_RemoteFrame": {"ID", "DLC"},
}

#: Zero bytes a :class:`Bytes` buffer holds after its data: a row of a frame's
#: data (at most 256 bytes) can be read whole from any sample, in 8-byte words.
SPARE = 264


class Bytes:
    """A byte buffer with views of a little-endian u32 (and 8 bytes) at every byte offset.

    The buffer ends in :data:`SPARE` zero bytes, so that words may be read past
    the data.
    """

    def __init__(self, buffer: npt.NDArray[np.uint8]) -> None:
        self.buffer = buffer
        self.u32 = np.ndarray((len(buffer) - 3,), "<u4", buffer, strides=(1,))
        # Gathered as 8-byte voids (faster than unaligned u8), then viewed as u8.
        self.v64 = np.ndarray((len(buffer) - 7,), "V8", buffer, strides=(1,))


@dataclass(frozen=True, slots=True)
class Samples:
    """Where a block's VLSD samples are: each one's length field in *data*, and its length."""

    data: Bytes
    heads: npt.NDArray[np.intp]
    lengths: npt.NDArray[np.uint32]


@dataclass(frozen=True, slots=True)
class Block:
    """A block of a group's records and, for a VLSD payload, their samples."""

    records: npt.NDArray[np.void]
    samples: Samples | None = None


@dataclass(frozen=True, slots=True)
class Field:
    """An unsigned component: asammdf's container at its byte offset, shifted and masked."""

    dtype: str
    byte_offset: int
    shift: int
    bits: int

    def values(self, raw: npt.NDArray[Any]) -> npt.NDArray[Any]:
        """The component's values from its container's (``raw``)."""
        if self.shift:
            raw = raw >> self.shift
        if self.bits < 8 * np.dtype(self.dtype).itemsize:
            raw = raw & raw.dtype.type((1 << self.bits) - 1)
        return raw


@dataclass(frozen=True, slots=True)
class Time:
    """The master channel: its raw dtype, where it is, its linear conversion (a, b) if any."""

    dtype: str
    byte_offset: int
    linear: tuple[float, float] | None

    def seconds(self, records: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
        """asammdf's timestamps: ``raw * a``, ``+= b`` when b is not 0, as float64."""
        times: npt.NDArray[Any] = records["time"]
        if self.linear is not None:
            a, b = self.linear
            times = times * a
            if b:
                times += b
        return times.astype(np.float64, copy=False)


@dataclass(slots=True)
class Plan:
    """How to read one frame group: its records' layout and where its data is."""

    index: int  # asammdf's group index (one per channel group, in file order)
    kind: str  # the structure channel, one of KINDS
    cycles: int
    time: Time
    fields: dict[str, Field]  # unsigned components, by name after "<kind>."
    payload: str  # "": none, "fixed": a byte array in the record, "vlsd": signal data
    width: int  # bytes of a fixed byte array
    formats: dict[str, tuple[int, str]]  # what numpy reads of a record: (offset, format) by name
    size: int  # bytes of a record
    blocks: Callable[[], Iterator[Block]] = field(default=lambda: iter(()))  # set by the reader

    def dtype(self, itemsize: int | None = None) -> np.dtype[np.void]:
        """The record as numpy reads it (from a buffer of *itemsize* bytes a record)."""
        names = list(self.formats)
        offsets = [self.formats[name][0] for name in names]
        formats = [self.formats[name][1] for name in names]
        size = self.size if itemsize is None else itemsize
        return np.dtype({"names": names, "offsets": offsets, "formats": formats, "itemsize": size})


def frame_kind(group: ChannelGroup) -> str | None:
    """The structure channel python-can reads frames from, or None where it skips the group."""
    if not group.flags & _CG_BUS_EVENT or group.source is None:
        return None
    source_type, bus_type = group.source
    if not source_type & _SOURCE_BUS or bus_type != _BUS_CAN:
        return None
    names = [channel.name for channel in group.walk()]
    return next((kind for kind in KINDS if kind in names), None)


def layout(index: int, group: ChannelGroup, kind: str, cycles: int) -> Plan:
    """The plan of a frame group's records; Unsupported for what it does not reproduce."""
    where = f"channel group {index}"
    if group.invalidation_bytes:
        raise Unsupported(f"{where}: invalidation bytes")
    size = group.data_bytes
    channels = list(group.walk())
    masters = [c for c in channels if c.kind in (_MASTER, _VIRTUAL_MASTER)]
    structures = [c for c in channels if c.name == kind]
    if len(masters) != 1 or masters[0].kind != _MASTER or len(structures) != 1:
        raise Unsupported(f"{where}: not one time channel and one {kind} channel")
    structure = structures[0]
    names = [c.name for c in structure.components]
    if not names or len(set(names)) != len(names):
        raise Unsupported(f"{where}: {kind} is not a structure of distinct channels")
    _check_plain(where, structure, size)
    time = _time(where, masters[0], size)
    fields: dict[str, Field] = {}
    formats: dict[str, tuple[int, str]] = {"time": (time.byte_offset, time.dtype)}
    payload, width = "", 0
    for component in structure.components:
        suffix = component.name.removeprefix(f"{kind}.")
        if suffix == component.name:
            suffix = ""  # not one python-can looks for
        _check_plain(where, component, size, vlsd=suffix == "DataBytes")
        if suffix == "DataBytes":
            payload, width, stored = _payload(where, component)
            formats["payload"] = (component.byte_offset, stored)
        elif component.data_type == _UINT:
            found = _field(where, component, size)
            if suffix:
                fields[suffix] = found
                formats[suffix] = (found.byte_offset, found.dtype)
        elif suffix in _READ:
            raise Unsupported(f"{where}: {component.name} is not an unsigned integer")
    _check_packed(where, structure)
    missing = _REQUIRED[kind] - {*fields, *(["DataBytes"] if payload else [])}
    if missing:
        raise Unsupported(f"{where}: no {kind}.{min(missing)} channel")
    return Plan(index, kind, cycles, time, fields, payload, width, formats, size)


def _check_plain(where: str, channel: Channel, size: int, *, vlsd: bool = False) -> None:
    where = f"{where}: {channel.name}"
    if channel.flags & _CN_INVALID:
        raise Unsupported(f"{where} has invalidation bits")
    if channel.conversion is not None:
        raise Unsupported(f"{where} has a conversion (type {channel.conversion.kind})")
    if channel.kind not in ((_VALUE, _VLSD) if vlsd else (_VALUE,)):
        raise Unsupported(f"{where} is of channel type {channel.kind}")
    if channel.data_type not in (_UINT, _BYTES):
        raise Unsupported(f"{where} is of data type {channel.data_type}")
    if channel.byte_offset + -(-(channel.bit_offset + channel.bit_count) // 8) > size:
        raise Unsupported(f"{where} lies past the record")


def _container(bits: int) -> str | None:
    """asammdf's unsigned dtype for a field of *bits* bits (bit offset included)."""
    return next((f"<u{size}" for size in (1, 2, 4, 8) if bits <= 8 * size), None)


def _field(where: str, channel: Channel, size: int) -> Field:
    dtype = _container(channel.bit_offset + channel.bit_count)
    if dtype is None or not channel.bit_count:
        raise Unsupported(f"{where}: {channel.name} of {channel.bit_count} bits")
    if channel.byte_offset + np.dtype(dtype).itemsize > size:
        raise Unsupported(f"{where}: {channel.name} is read past the record")
    return Field(dtype, channel.byte_offset, channel.bit_offset, channel.bit_count)


def _payload(where: str, channel: Channel) -> tuple[str, int, str]:
    """("fixed" or "vlsd", the width of a fixed array, the numpy format in the record)."""
    where = f"{where}: {channel.name}"
    if channel.data_type != _BYTES or channel.bit_offset or channel.bit_count % 8:
        raise Unsupported(f"{where} is not a whole byte array")
    if channel.kind == _VLSD:
        if channel.bit_count not in (32, 64):
            raise Unsupported(f"{where}: VLSD offsets of {channel.bit_count} bits")
        return "vlsd", 0, f"<u{channel.bit_count // 8}"
    width = channel.bit_count // 8
    if not width:
        raise Unsupported(f"{where} of no bytes")
    return "fixed", width, f"({width},)u1"


def _time(where: str, master: Channel, size: int) -> Time:
    where = f"{where}: time channel {master.name!r}"
    bits = master.bit_count
    if master.flags & _CN_INVALID or master.bit_offset:
        raise Unsupported(f"{where} has invalidation bits or a bit offset")
    if master.data_type == _UINT and bits in (8, 16, 32, 64):
        dtype = f"<u{bits // 8}"
    elif master.data_type == _FLOAT and bits in (32, 64):
        dtype = f"<f{bits // 8}"
    else:
        raise Unsupported(f"{where} of data type {master.data_type}, {bits} bits")
    if master.byte_offset + bits // 8 > size:
        raise Unsupported(f"{where} lies past the record")
    conversion = master.conversion
    if conversion is None or conversion.kind == _IDENTITY:
        return Time(dtype, master.byte_offset, None)
    if conversion.kind != _LINEAR or len(conversion.values) < 2:
        raise Unsupported(f"{where} has a conversion of type {conversion.kind}")
    b, a = conversion.values[:2]
    return Time(dtype, master.byte_offset, None if (a, b) == (1, 0) else (a, b))


def _check_packed(where: str, structure: Channel) -> None:
    """Refuse a structure that asammdf reads through its packed dtype with bit fields.

    Without a VLSD component asammdf reads a structure as its components'
    dtypes packed one after the other in byte offset order, when those pack to
    the structure's size: each component is then its container's raw bytes at
    its packed place, which are its value only for a whole, unshifted field at
    its own offset.
    """
    if any(c.kind == _VLSD for c in structure.components):
        return
    offset, packed, exact = structure.byte_offset, 0, True
    for component in sorted(structure.components, key=lambda c: c.byte_offset):
        bits = component.bit_offset + component.bit_count
        container = _container(bits) if component.data_type == _UINT else None
        itemsize = np.dtype(container).itemsize if container else max(bits // 8, 1)
        delta = component.byte_offset - offset
        exact = exact and delta >= 0 and not component.bit_offset
        exact = exact and component.bit_count == 8 * itemsize
        packed += max(delta, 0) + itemsize
        offset = component.byte_offset + itemsize
    if packed == structure.bit_count // 8 and not exact:
        raise Unsupported(f"{where}: {structure.name} packs bit fields")
