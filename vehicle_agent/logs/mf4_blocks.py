"""MDF 4 blocks as the native MF4 reader needs them, read with ``struct`` and numpy.

:class:`BlockFile` reads what a bus logging reader needs of an ASAM MDF 4 file:
the identification block, the header's start time, the data groups with their
channel groups, channels, conversions and sources (:func:`data_groups`), the
data block lists of a data group or of a channel's signal data
(:func:`extents`: DT, SD, DZ, DL, HL) and their bytes a buffer at a time
(:class:`DataStream`: stored bytes read as they are, a DZ block inflated whole,
its transposition undone). Every length and link is checked against the file, so a
damaged file raises :class:`Corrupt` naming where, never an ``IndexError``.
A block kind, a compression or a metadata feature the reader does not handle
raises :class:`vehicle_agent.logs.Unsupported`.

The ``asammdf`` behaviour the reader reproduces is not here but in
:mod:`vehicle_agent.logs.mf4_native`: this module only says what the file holds.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO, cast

import numpy as np
import numpy.typing as npt
from isal import isal_zlib

from vehicle_agent.logs import Unsupported

__all__ = [
    "PIECE",
    "BlockFile",
    "Channel",
    "ChannelGroup",
    "Conversion",
    "Corrupt",
    "DataGroup",
    "DataStream",
    "Extent",
    "data_groups",
    "extents",
    "start_fields",
]

#: Bytes of a stored (uncompressed) data block read at a time.
PIECE = 4 << 20

_HEADER = struct.Struct("<4s4xQQ")  # id, length, link count
_ID_BLOCK = 64
_HD_DATA = struct.Struct("<QhhBBBB")  # start ns, tz offset, DST, time flags, class, flags
_DG_DATA = struct.Struct("<B")  # record id size
_CG_DATA = struct.Struct("<QQHH4xII")  # record id, cycles, flags, separator, bytes, inval bytes
_CN_DATA = struct.Struct("<BBBBIII")  # type, sync, data type, bit off, byte off, bits, flags
_CC_DATA = struct.Struct("<BBHHH")  # type, precision, flags, ref count, val count
_SI_DATA = struct.Struct("<BBB")  # source type, bus type, flags
_DZ_DATA = struct.Struct("<2sBxIQQ")  # original kind, zip type, parameter, sizes
_DL_DATA = struct.Struct("<B3xI")  # flags, count
_TEXT_LIMIT = 1 << 16  # a longer channel name is not a bus logging file's
_ZIP_TYPES = (0, 1)  # deflate, transposed deflate
_INFLATE_ERROR = cast("type[Exception]", isal_zlib.error)  # its stubs type it as an instance


class Corrupt(Exception):
    """The file is damaged: ``args`` are the position and the reason."""

    def __init__(self, position: str, reason: str) -> None:
        super().__init__(position, reason)


@dataclass(frozen=True, slots=True)
class Conversion:
    """A CC block: its type, its numbers and its references (links after the fourth)."""

    kind: int
    values: tuple[float, ...]
    references: tuple[int, ...]


@dataclass(slots=True)
class Channel:
    """A CN block and, for a structure, its components."""

    at: int
    name: str
    kind: int  # cn_type: 0 value, 1 VLSD, 2 master, ...
    data_type: int
    bit_offset: int
    byte_offset: int
    bit_count: int
    flags: int
    conversion: Conversion | None
    data: int  # cn_data: signal data of a VLSD channel
    components: list[Channel] = field(default_factory=list)


@dataclass(slots=True)
class ChannelGroup:
    at: int
    record_id: int
    cycles: int
    flags: int
    data_bytes: int
    invalidation_bytes: int
    source: tuple[int, int] | None  # (source type, bus type) of its SI block
    channels: list[Channel]  # top level, in file order

    def walk(self) -> Iterator[Channel]:
        """Every channel, components right after their structure (asammdf's order)."""
        pending = list(reversed(self.channels))
        while pending:
            channel = pending.pop()
            yield channel
            pending.extend(reversed(channel.components))


@dataclass(slots=True)
class DataGroup:
    at: int
    record_id_size: int
    data: int  # link to its data block (list)
    groups: list[ChannelGroup]


@dataclass(frozen=True, slots=True)
class Extent:
    """The bytes of one data block: where they are stored and how."""

    at: int  # where the stored bytes start
    stored: int  # bytes in the file
    size: int  # bytes of data
    zip_type: int | None = None  # None: stored as they are
    columns: int = 0  # of a transposed block


class BlockFile:
    """An open MDF 4 file read block by block, every read checked against its size."""

    def __init__(self, file: BinaryIO, size: int) -> None:
        self._file = file
        self.size = size
        self._seen: set[int] = set()

    def read(self, at: int, size: int, what: str = "data") -> bytes:
        if at < 0 or size < 0 or at + size > self.size:
            raise Corrupt(f"byte {at}", f"{what} of {size} bytes past the end of the file")
        self._file.seek(at)
        data = self._file.read(size)
        if len(data) != size:
            raise Corrupt(f"byte {at}", f"{what} cut short ({len(data)} of {size} bytes)")
        return data

    def readinto(self, at: int, out: npt.NDArray[np.uint8]) -> None:
        if at + out.nbytes > self.size:
            raise Corrupt(f"byte {at}", "data block past the end of the file")
        self._file.seek(at)
        if self._file.readinto(out.data) != out.nbytes:  # type: ignore[attr-defined]
            raise Corrupt(f"byte {at}", "data block cut short")

    def header(self, at: int, *kinds: bytes) -> tuple[bytes, int, tuple[int, ...]]:
        """A block's id, length and links; its id must be one of *kinds* if given."""
        kind, length, count = _HEADER.unpack(self.read(at, _HEADER.size, "block header"))
        if kinds and kind not in kinds:
            wanted = " or ".join(k.decode("ascii") for k in kinds)
            raise Corrupt(f"byte {at}", f"{wanted} block expected, found {kind!r}")
        if count > (length - _HEADER.size) // 8 or length < _HEADER.size or at % 8:
            raise Corrupt(f"byte {at}", f"{kind!r} block of {length} bytes with {count} links")
        if at + length > self.size:
            raise Corrupt(
                f"byte {at}", f"{kind!r} block of {length} bytes past the end of the file"
            )
        links = struct.unpack(f"<{count}Q", self.read(at + _HEADER.size, 8 * count))
        return kind, length, links

    def block(
        self, at: int, kind: bytes, links: int, data: struct.Struct, *, once: bool = True
    ) -> tuple[tuple[int, ...], tuple[Any, ...]]:
        """A block's links (at least *links*) and its *data* fields.

        A block of a linked list (*once*) read twice means a loop: the file is damaged.
        """
        if once:
            if at in self._seen:
                raise Corrupt(f"byte {at}", f"{kind.decode('ascii')} block linked twice")
            self._seen.add(at)
        _, length, found = self.header(at, kind)
        if len(found) < links or length < _HEADER.size + 8 * len(found) + data.size:
            raise Corrupt(f"byte {at}", f"{kind.decode('ascii')} block too short")
        fields = data.unpack(self.read(at + _HEADER.size + 8 * len(found), data.size))
        return found, fields

    def text(self, at: int) -> str:
        """A name as asammdf reads it: up to the first NUL, blanks stripped; "" for no link."""
        if not at:
            return ""
        kind, length, links = self.header(at)
        if kind == b"##MD":
            raise Unsupported(f"a name in an MD block (byte {at})")
        if kind != b"##TX":
            return ""  # asammdf's answer for a link to anything else
        size = length - _HEADER.size - 8 * len(links)
        if size > _TEXT_LIMIT:
            raise Unsupported(f"a name of {size} bytes (byte {at})")
        raw = self.read(at + _HEADER.size + 8 * len(links), size, "text")
        try:
            return raw.split(b"\0", 1)[0].strip(b" \r\t\n").decode("utf-8")
        except UnicodeDecodeError as exc:  # asammdf guesses the encoding
            raise Unsupported(f"a name that is not UTF-8 (byte {at})") from exc


def start_fields(blocks: BlockFile) -> tuple[int, tuple[int, int, int, int]]:
    """The first data group's address and the header's (ns, tz offset, DST, time flags)."""
    links, fields = blocks.block(_ID_BLOCK, b"##HD", 6, _HD_DATA, once=False)
    ns, tz_offset, dst, time_flags = (int(f) for f in fields[:4])
    return links[0], (ns, tz_offset, dst, time_flags)


def data_groups(blocks: BlockFile, first: int) -> list[DataGroup]:
    """Every data group from *first* on, with its channel groups and channels."""
    found: list[DataGroup] = []
    at = first
    while at:
        links, fields = blocks.block(at, b"##DG", 4, _DG_DATA)
        groups: list[ChannelGroup] = []
        cg_at = links[1]
        while cg_at:
            group, cg_at = _channel_group(blocks, cg_at)
            groups.append(group)
        found.append(DataGroup(at, int(fields[0]), links[2], groups))
        at = links[0]
    return found


def _channel_group(blocks: BlockFile, at: int) -> tuple[ChannelGroup, int]:
    links, fields = blocks.block(at, b"##CG", 6, _CG_DATA)
    record_id, cycles, flags, _, data_bytes, inval_bytes = (int(f) for f in fields)
    source = None
    if links[3]:
        _, si = blocks.block(links[3], b"##SI", 3, _SI_DATA, once=False)
        source = (int(si[0]), int(si[1]))
    channels = _channels(blocks, links[1], depth=0) if not flags & 1 else []  # not VLSD
    group = ChannelGroup(at, record_id, cycles, flags, data_bytes, inval_bytes, source, channels)
    return group, links[0]


def _channels(blocks: BlockFile, at: int, depth: int) -> list[Channel]:
    found: list[Channel] = []
    while at:
        links, fields = blocks.block(at, b"##CN", 8, _CN_DATA)
        kind, _, data_type, bit_offset, byte_offset, bit_count, flags = (int(f) for f in fields)
        channel = Channel(
            at,
            blocks.text(links[2]),
            kind,
            data_type,
            bit_offset,
            byte_offset,
            bit_count,
            flags,
            _conversion(blocks, links[4]) if links[4] else None,
            links[5],
        )
        if links[1]:
            component_kind, _, _ = blocks.header(links[1])
            if component_kind != b"##CN" or depth:
                raise Unsupported(f"channel {channel.name!r} has nested or array components")
            channel.components = _channels(blocks, links[1], depth + 1)
        found.append(channel)
        at = links[0]
    return found


def _conversion(blocks: BlockFile, at: int) -> Conversion:
    links, fields = blocks.block(at, b"##CC", 4, _CC_DATA, once=False)
    kind, _, _, references, count = (int(f) for f in fields)
    if len(links) < 4 + references:
        raise Corrupt(f"byte {at}", f"CC block with {len(links)} links for {references} references")
    # The values follow the fixed fields and the physical range (two doubles).
    values_at = at + _HEADER.size + 8 * len(links) + _CC_DATA.size + 16
    values = struct.unpack(f"<{count}d", blocks.read(values_at, 8 * count, "CC values"))
    return Conversion(kind, values, links[4 : 4 + references])


def extents(blocks: BlockFile, at: int, kind: bytes) -> list[Extent]:
    """The data blocks of a data list (or a single block), in order; *kind* b"DT" or b"SD"."""
    found: list[Extent] = []
    block_kind, _, links = blocks.header(at)
    if block_kind == b"##HL":
        at = links[0]
        block_kind, _, links = blocks.header(at, b"##DL")
    if block_kind != b"##DL":
        found.extend(_extent(blocks, at, kind))
        return found
    seen: set[int] = set()
    while at:
        if at in seen:
            raise Corrupt(f"byte {at}", "DL block linked twice")
        seen.add(at)
        _, _, links = blocks.header(at, b"##DL")
        (_, count) = _DL_DATA.unpack(blocks.read(at + _HEADER.size + 8 * len(links), 8))
        if count != len(links) - 1:
            raise Corrupt(f"byte {at}", f"DL block lists {count} blocks in {len(links) - 1} links")
        for member in links[1:]:
            found.extend(_extent(blocks, member, kind))
        at = links[0]
    return found


def _extent(blocks: BlockFile, at: int, kind: bytes) -> Iterator[Extent]:
    """The extent of one DT/SD/DZ block at *at* (none when it is empty)."""
    block_kind, length, links = blocks.header(at)
    start = at + _HEADER.size + 8 * len(links)
    if block_kind == b"##" + kind:
        if length > _HEADER.size:
            yield Extent(start, length - _HEADER.size, length - _HEADER.size)
        return
    if block_kind != b"##DZ":
        raise Unsupported(f"a {block_kind!r} block where {kind.decode()} data is expected")
    original, zip_type, parameter, size, stored = _DZ_DATA.unpack(blocks.read(start, _DZ_DATA.size))
    if original != kind:
        raise Corrupt(f"byte {at}", f"DZ block of {original!r} data where {kind!r} is expected")
    if zip_type not in _ZIP_TYPES:
        raise Unsupported(f"DZ block compressed with method {zip_type} (byte {at})")
    if _DZ_DATA.size + stored > length - _HEADER.size or (zip_type == 1 and not parameter):
        raise Corrupt(f"byte {at}", f"DZ block of {length} bytes holding {stored}")
    if size:
        yield Extent(start + _DZ_DATA.size, stored, size, zip_type, parameter)


class DataStream:
    """The first *limit* bytes of the data of *parts*, read forward into the caller's buffers.

    Stored bytes are read straight into the buffer; a DZ block is inflated whole
    when the reading reaches it, and kept until it has all been read.
    """

    def __init__(self, blocks: BlockFile, parts: list[Extent], limit: int) -> None:
        self._blocks = blocks
        self._parts = iter(parts)
        self._left = limit  # bytes still to give
        self._part: Extent | None = None
        self._done = 0  # bytes of the current part given
        self._inflated: npt.NDArray[np.uint8] | None = None

    def read_into(self, out: npt.NDArray[np.uint8]) -> int:
        """Fill *out* with the next bytes; how many there were (fewer only at the end)."""
        filled = 0
        while filled < len(out) and self._left > 0:
            part = self._part
            if part is None or self._done == part.size:
                part = self._part = next(self._parts, None)
                if part is None:
                    break
                self._done = 0
                self._inflated = inflate(self._blocks, part) if part.zip_type is not None else None
            count = min(len(out) - filled, part.size - self._done, self._left)
            target = out[filled : filled + count]
            if self._inflated is None:
                self._blocks.readinto(part.at + self._done, target)
            else:
                target[:] = self._inflated[self._done : self._done + count]
            filled += count
            self._done += count
            self._left -= count
        return filled


def inflate(blocks: BlockFile, part: Extent) -> npt.NDArray[np.uint8]:
    """A DZ block's data, inflated and, for a transposed block, put back in record order."""
    try:
        raw = isal_zlib.decompress(blocks.read(part.at, part.stored, "DZ block"))
    except _INFLATE_ERROR as exc:
        raise Corrupt(f"byte {part.at}", f"DZ block does not inflate: {exc}") from exc
    if len(raw) != part.size:
        raise Corrupt(f"byte {part.at}", f"DZ block inflates to {len(raw)} bytes, not {part.size}")
    data = np.frombuffer(raw, dtype=np.uint8)
    if part.zip_type == 1:
        lines = part.size // part.columns
        matrix = lines * part.columns
        data = np.concatenate([data[:matrix].reshape(part.columns, lines).T.ravel(), data[matrix:]])
    return data
