"""The signal catalog: which DBC files the agent decodes with and every signal they define.

The catalog gives each signal a small integer index. Batches sent to the cloud
refer to signals by that index, and the cloud reads them against the catalog the
agent announced in its Hello, identified by :attr:`Catalog.catalog_id`. The order
of the indices and the id are therefore deterministic: the same DBC files
configured the same way always give the same catalog, on any car and in any
process.

This module is pure: it reads DBC files with cantools and never touches a bus.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import cantools.database
from cantools.database.can import Database, Message
from cantools.database.errors import UnsupportedDatabaseFormatError

from vehicle_agent.errors import DbcError

__all__ = [
    "BoundDbc",
    "Catalog",
    "DbcInfo",
    "DbcSpec",
    "LoadedDbc",
    "SignalSpec",
    "bind_dbc",
    "is_j1939_database",
    "j1939_pgn",
    "load_dbc",
    "read_dbc",
]

_PDU2_MIN_PF = 240


@dataclass(frozen=True, slots=True)
class DbcSpec:
    """One DBC file applied to the frames of one logical bus.

    ``channel`` selects frames by :attr:`vehicle_agent.frames.Frame.channel`
    (``None``: frames of any channel). ``j1939`` forces J1939 matching on or off;
    ``None`` detects it from the file (see :func:`is_j1939_database`).
    """

    path: Path
    bus: str = "can"
    channel: str | None = None
    j1939: bool | None = None


@dataclass(frozen=True, slots=True)
class LoadedDbc:
    """A parsed DBC file with the digest of the bytes it was parsed from."""

    path: Path
    database: Database
    sha256: bytes


@dataclass(frozen=True, slots=True)
class BoundDbc:
    """A loaded DBC file bound to its spec, with J1939 matching resolved."""

    spec: DbcSpec
    dbc: LoadedDbc
    j1939: bool


@dataclass(frozen=True, slots=True)
class SignalSpec:
    """Everything the cloud needs to know about one catalog signal.

    ``choices`` holds the value descriptions as ``(value, label)`` pairs sorted by
    value (a tuple keeps the spec hashable; ``dict(spec.choices)`` gives a map).
    ``pgn`` is the J1939 parameter group number, 0 unless the message is matched
    as J1939.
    """

    index: int
    bus: str
    message: str
    name: str
    frame_id: int
    is_extended: bool
    unit: str
    minimum: float | None
    maximum: float | None
    choices: tuple[tuple[int, str], ...]
    is_float: bool
    pgn: int


@dataclass(frozen=True)
class DbcInfo:
    """Fingerprint of one configured DBC file, as announced to the cloud."""

    name: str
    sha256: bytes
    bus: str


def j1939_pgn(frame_id: int) -> int:
    """Return the J1939 parameter group number of a 29-bit identifier.

    Priority and source address never belong to the PGN. For PDU1 messages
    (PDU format below 240) the PDU-specific byte is a destination address, which
    is not part of the PGN either.
    """
    if (frame_id >> 16) & 0xFF < _PDU2_MIN_PF:
        return (frame_id >> 8) & 0x3FF00
    return (frame_id >> 8) & 0x3FFFF


def read_dbc(path: Path, *, strict: bool = False) -> LoadedDbc:
    """Read and parse a DBC file, keeping the digest of its bytes.

    ``strict`` defaults to False because real DBC files routinely fail cantools'
    strict checks (overlapping signals, signals reaching past the frame length)
    while their other messages decode fine; refusing the whole file would lose
    every signal for one doubtful definition.

    The format is given explicitly rather than guessed from the content: cantools'
    auto-detection tries every parser and reports every parser's complaint.
    The text is read as UTF-8 first, then as cp1252 (what Vector tools write):
    cantools' own default, cp1252 with replacement, would silently garble UTF-8
    comments and value labels.

    Raises :class:`DbcError` naming the file and the reason.
    """
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DbcError(path, exc.strerror or str(exc)) from exc
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        # cp1252 leaves five byte values undefined; replacing them keeps the file
        # usable, as cantools itself does.
        text = raw.decode("cp1252", errors="replace")
    try:
        # sort_signals stays at cantools' default (by start bit): its codecs are
        # built from that order, and unsorted little-endian layouts fail to unpack.
        database = cantools.database.load_string(text, database_format="dbc", strict=strict)
    except UnsupportedDatabaseFormatError as exc:
        reason = exc.e_dbc if exc.e_dbc is not None else exc
        raise DbcError(path, f"{type(reason).__name__}: {reason}") from exc
    if not isinstance(database, Database):  # pragma: no cover - "dbc" gives a CAN database
        raise DbcError(path, "not a CAN database")
    return LoadedDbc(path=path, database=database, sha256=hashlib.sha256(raw).digest())


def load_dbc(path: Path, *, strict: bool = False) -> Database:
    """Load a DBC file; see :func:`read_dbc` for encodings, strictness and errors."""
    return read_dbc(path, strict=strict).database


def is_j1939_database(database: Database) -> bool:
    """Tell whether a DBC describes a J1939 network.

    True when the database attribute ``ProtocolType`` is ``J1939`` or any message
    is a J1939 parameter group (``VFrameFormat`` ``J1939PG``, which cantools
    exposes as ``message.protocol == "j1939"``, defaults included).
    """
    dbc = database.dbc
    if dbc is not None:
        protocol = dbc.attributes.get("ProtocolType")
        if protocol is not None and str(protocol.value).strip().upper() == "J1939":
            return True
    return any(message.protocol == "j1939" for message in database.messages)


def bind_dbc(spec: DbcSpec, dbc: LoadedDbc) -> BoundDbc:
    """Bind a loaded DBC to its spec, resolving automatic J1939 detection."""
    j1939 = is_j1939_database(dbc.database) if spec.j1939 is None else spec.j1939
    return BoundDbc(spec=spec, dbc=dbc, j1939=j1939)


def _label(value: object) -> str:
    # cantools gives NamedSignalValue objects (or plain strings) as labels.
    name = getattr(value, "name", None)
    return name if isinstance(name, str) else str(value)


def _signal_specs(bound: BoundDbc, message: Message) -> Iterator[SignalSpec]:
    pgn = j1939_pgn(message.frame_id) if bound.j1939 and message.is_extended_frame else 0
    for signal in message.signals:
        choices = signal.choices.items() if signal.choices else ()
        yield SignalSpec(
            index=-1,
            bus=bound.spec.bus,
            message=message.name,
            name=signal.name,
            frame_id=message.frame_id,
            is_extended=message.is_extended_frame,
            unit=signal.unit or "",
            minimum=None if signal.minimum is None else float(signal.minimum),
            maximum=None if signal.maximum is None else float(signal.maximum),
            choices=tuple(sorted((int(k), _label(v)) for k, v in choices)),
            is_float=signal.is_float,
            pgn=pgn,
        )


class Catalog:
    """The ordered, deduplicated list of every signal the agent can decode.

    Order: DBC specs in configuration order, then messages in file order, then
    signals in message order (the order cantools keeps them in: by start bit).
    A (bus, message, signal) triple seen twice keeps its first index.
    """

    __slots__ = ("_by_key", "catalog_id", "dbcs", "signals")

    def __init__(self, signals: Iterable[SignalSpec], dbcs: Iterable[DbcInfo]) -> None:
        self.signals: tuple[SignalSpec, ...] = tuple(signals)
        self.dbcs: tuple[DbcInfo, ...] = tuple(dbcs)
        self._by_key: dict[tuple[str, str, str], int] = {}
        for position, spec in enumerate(self.signals):
            if spec.index != position:
                raise ValueError(f"signal {spec.name!r} has index {spec.index}, not {position}")
            self._by_key.setdefault((spec.bus, spec.message, spec.name), position)
        self.catalog_id: int = _catalog_id(self.signals)

    @classmethod
    def build(cls, bound: Sequence[BoundDbc]) -> Catalog:
        """Build the catalog of the given DBCs, in the given order."""
        signals: list[SignalSpec] = []
        seen: set[tuple[str, str, str]] = set()
        dbcs: list[DbcInfo] = []
        for entry in bound:
            info = DbcInfo(name=entry.spec.path.name, sha256=entry.dbc.sha256, bus=entry.spec.bus)
            if info not in dbcs:
                dbcs.append(info)
            for message in entry.dbc.database.messages:
                for spec in _signal_specs(entry, message):
                    key = (spec.bus, spec.message, spec.name)
                    if key in seen:
                        continue
                    seen.add(key)
                    signals.append(replace(spec, index=len(signals)))
        return cls(signals, dbcs)

    def index_of(self, bus: str, message: str, signal: str) -> int:
        """Return the index of a signal; raises ``KeyError`` if it is not in the catalog."""
        return self._by_key[(bus, message, signal)]

    def __len__(self) -> int:
        return len(self.signals)

    def __getitem__(self, index: int) -> SignalSpec:
        return self.signals[index]

    def __iter__(self) -> Iterator[SignalSpec]:
        return iter(self.signals)

    def __repr__(self) -> str:
        return f"Catalog({len(self.signals)} signals, id=0x{self.catalog_id:016x})"


def _catalog_id(signals: Sequence[SignalSpec]) -> int:
    # JSON with fixed separators and float repr is stable across processes and
    # platforms (unlike hash() or pickle); every field the cloud relies on is in.
    canonical = [
        [
            s.index,
            s.bus,
            s.message,
            s.name,
            s.frame_id,
            s.is_extended,
            s.unit,
            s.minimum,
            s.maximum,
            [[value, label] for value, label in s.choices],
            s.is_float,
            s.pgn,
        ]
        for s in signals
    ]
    text = json.dumps(canonical, ensure_ascii=False, separators=(",", ":"))
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big")
