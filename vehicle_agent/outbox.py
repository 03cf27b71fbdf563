"""The durable outbox: pending batches and reports in a local SQLite file.

Head units lose power without warning. Every batch the agent closes is written
here (one row, its columns as little-endian blobs) and committed with
``synchronous=FULL`` before :meth:`Outbox.put` returns, and its row is deleted
only when the cloud acknowledges it. The bookkeeping (numbering, eviction,
counts, waiters) is :class:`vehicle_agent.buffer.QueueCore`'s; this module keeps
the rows, makes each :class:`~vehicle_agent.buffer.QueueChange` one transaction
(batch rows and meta together, so a kill at any instant leaves a consistent
file), and recovers the index from the file on open.

All SQLite work runs on one writer thread owned by the outbox, so a commit and
its fsync never stall the event loop and statements reach the file in the
order the index changed. The bound is in bytes: a batch costs its column bytes
plus :data:`ROW_OVERHEAD`, not what the file takes on disk.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import sys
import time
from array import array
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar

from vehicle_agent.batching import Batch, EvictedCount, TriggerMark
from vehicle_agent.buffer import (
    SAMPLE_BYTES,
    QueueChange,
    QueueCore,
    QueueEntry,
    QueueSnapshot,
    column_bytes,
)
from vehicle_agent.errors import OutboxError
from vehicle_agent.pending import OverflowPolicy

__all__ = ["ROW_OVERHEAD", "SCHEMA_VERSION", "Outbox", "OutboxSummary", "inspect"]

#: ``PRAGMA application_id`` of an outbox file ("THOB"): tells it from any other SQLite file.
APPLICATION_ID = 0x54484F42
#: ``PRAGMA user_version`` this code writes and reads.
SCHEMA_VERSION = 1
#: Bytes a batch costs against the bound beyond its columns (row, keys, small fields).
ROW_OVERHEAD = 64

_SCHEMA = """
CREATE TABLE batch (
    sequence      INTEGER PRIMARY KEY,
    catalog_id    INTEGER NOT NULL,
    priority      INTEGER NOT NULL,
    position      INTEGER NOT NULL,
    created_us    INTEGER NOT NULL,
    samples       INTEGER NOT NULL,
    size          INTEGER NOT NULL,
    signal_index  BLOB NOT NULL,
    timestamp_us  BLOB NOT NULL,
    value         BLOB NOT NULL,
    evicted       TEXT NOT NULL,
    triggers      TEXT NOT NULL,
    carries_counts INTEGER NOT NULL
);
CREATE TABLE report (report_id INTEGER PRIMARY KEY, payload BLOB NOT NULL);
CREATE TABLE meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID;
CREATE TABLE state (key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;
"""

_COLUMNS = (
    "sequence, catalog_id, priority, position, signal_index, timestamp_us, value, evicted, triggers"
)
_LITTLE = sys.byteorder == "little"

T = TypeVar("T")


def _blob(column: array[int] | array[float]) -> bytes:
    if _LITTLE:
        return column.tobytes()
    swapped = array(column.typecode, column)
    swapped.byteswap()
    return swapped.tobytes()


def _int_column(typecode: Literal["I", "q"], blob: bytes) -> array[int]:
    column = array(typecode)
    column.frombytes(blob)
    if not _LITTLE:
        column.byteswap()
    return column


def _float_column(blob: bytes) -> array[float]:
    column = array("d")
    column.frombytes(blob)
    if not _LITTLE:
        column.byteswap()
    return column


def _encode_counts(counts: list[EvictedCount]) -> str:
    return json.dumps(
        [[c.signal_index, c.samples, c.first_time_us, c.last_time_us] for c in counts]
    )


def _decode_counts(text: str) -> list[EvictedCount]:
    return [EvictedCount(s, n, f, la) for s, n, f, la in json.loads(text)]


# SQLite integers are signed 64-bit; the catalog id is an unsigned 64-bit digest,
# so it is stored with the same bits, read as signed.
_U64 = 1 << 64
_I64_MAX = (1 << 63) - 1


def _signed(value: int) -> int:
    return value - _U64 if value > _I64_MAX else value


def _unsigned(value: int) -> int:
    return value + _U64 if value < 0 else value


def _row(batch: Batch, size: int) -> tuple[object, ...]:
    triggers = _encode_marks(batch.triggers)
    return (
        _signed(batch.catalog_id),
        batch.priority,
        batch.position,
        time.time_ns() // 1000,
        len(batch),
        size,
        _blob(batch.signal_index),
        _blob(batch.timestamp_us),
        _blob(batch.value),
        _encode_counts(batch.evicted),
        triggers,
        1 if batch.evicted else 0,
        batch.sequence,
    )


_Row = tuple[int, int, int, int, bytes, bytes, bytes, str, str]


def _batch(row: _Row) -> Batch:
    seq, catalog, priority, position, signals, stamps, values, evicted, triggers = row
    return Batch(
        catalog_id=_unsigned(catalog),
        signal_index=_int_column("I", signals),
        timestamp_us=_int_column("q", stamps),
        value=_float_column(values),
        sequence=seq,
        priority=priority,
        position=position,
        evicted=_decode_counts(evicted),
        triggers=_decode_marks(triggers),
    )


class Outbox(QueueCore):
    """The pending queue in a SQLite (WAL) file, bounded in bytes.

    ``synchronous="full"`` (the default) fsyncs every commit that writes (an
    acknowledgement's delete is not fsynced: losing it only resends): a power cut cannot
    lose a batch :meth:`put` returned for. ``"normal"`` is faster but may lose
    the last commits on a power cut (never on a process kill). ``cache_batches``
    recently put or read batches are kept in memory so that handing them to the
    uplink reads nothing back.
    """

    def __init__(
        self,
        path: Path,
        *,
        max_bytes: int = 256 * 1024 * 1024,
        policy: OverflowPolicy = OverflowPolicy.EVICT,
        synchronous: Literal["full", "normal"] = "full",
        cache_batches: int = 32,
        busy_timeout: float = 5.0,
    ) -> None:
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be at least 1, got {max_bytes}")
        if synchronous not in ("full", "normal"):
            raise ValueError(f"synchronous must be 'full' or 'normal', got {synchronous!r}")
        self._full = synchronous == "full"
        self.path = Path(path)
        self.max_bytes = max_bytes
        self._cache: OrderedDict[int, Batch] = OrderedDict()
        self._cache_size = cache_batches
        self._closed = False
        self._conn: sqlite3.Connection | None = None
        # One thread owns the connection: statements run in submission order.
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="outbox")
        try:
            snapshot = self._executor.submit(self._open, synchronous, busy_timeout).result()
        except BaseException:
            self._executor.submit(self._close_connection).result()
            self._executor.shutdown()
            raise
        super().__init__(max_bytes, policy, snapshot)

    # ------------------------------------------------------------ lifecycle
    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._executor.submit(self._close_connection).result()
        self._executor.shutdown()
        self._cache.clear()

    @property
    def size_bytes(self) -> int:
        return self._weight

    def _weigh(self, batch: Batch) -> int:
        return column_bytes(batch) + ROW_OVERHEAD

    # ------------------------------------------------------------ loop side
    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        if self._closed:
            raise OutboxError(self.path, "closed")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def _load(self, sequences: list[int]) -> list[Batch]:
        found = {s: self._cache[s] for s in sequences if s in self._cache}
        missing = [s for s in sequences if s not in found]
        if missing:
            for batch in await self._run(self._read, missing):
                found[batch.sequence] = batch
                self._remember(batch)
        for s in found:
            if s in self._cache:
                self._cache.move_to_end(s)
        return [found[s] for s in sequences]

    def _remember(self, batch: Batch) -> None:
        self._cache[batch.sequence] = batch
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    async def _write(self, change: QueueChange) -> None:
        await self._run(self._apply, change)
        if change.renumber:
            cached = list(self._cache.values())
            self._cache.clear()
            for batch in cached:
                batch.sequence += change.renumber
                self._cache[batch.sequence] = batch
        for seq in change.delete:
            self._cache.pop(seq, None)
        for batch in change.rewrite:
            self._cache.pop(batch.sequence, None)
            self._remember(batch)
        if change.insert is not None:
            self._remember(change.insert)

    def _write_state(self, key: str, value: bytes) -> None:
        if self._closed:
            raise OutboxError(self.path, "closed")
        # Rare (a new plan or consent): waiting for one commit here is cheaper
        # than making every caller of save_state a coroutine.
        self._executor.submit(self._apply_state, key, value).result()

    # ------------------------------------------------------------ writer thread
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise OutboxError(self.path, "closed")
        return self._conn

    def _open(self, synchronous: str, busy_timeout: float) -> QueueSnapshot:
        try:
            self._conn = conn = sqlite3.connect(
                self.path, timeout=busy_timeout, isolation_level=None
            )
            check = [r[0] for r in conn.execute("PRAGMA quick_check(3)")]
            if check != ["ok"]:
                raise OutboxError(self.path, "corrupt file: " + "; ".join(map(str, check)))
            app_id = conn.execute("PRAGMA application_id").fetchone()[0]
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
            if app_id == 0 and version == 0 and tables == 0:
                fresh = True
            elif app_id != APPLICATION_ID:
                raise OutboxError(self.path, "not an outbox (a SQLite file of something else)")
            elif version > SCHEMA_VERSION:
                raise OutboxError(
                    self.path, f"schema {version} is newer than this agent's {SCHEMA_VERSION}"
                )
            else:
                fresh = False
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode != "wal":
                raise OutboxError(self.path, f"cannot use WAL journaling (got {mode!r})")
            conn.execute(f"PRAGMA synchronous={synchronous.upper()}")
            if fresh:
                # executescript would commit on its own: one statement at a time
                # keeps the schema and its identity in one transaction.
                conn.execute("BEGIN IMMEDIATE")
                for statement in filter(str.strip, _SCHEMA.split(";")):
                    conn.execute(statement)
                conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
                conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
                conn.execute("COMMIT")
            return _read_snapshot(conn)
        except sqlite3.Error as exc:
            raise OutboxError(self.path, str(exc)) from exc

    def _close_connection(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _read(self, sequences: list[int]) -> list[Batch]:
        conn = self._db()
        try:
            query = f"SELECT {_COLUMNS} FROM batch WHERE sequence = ?"  # noqa: S608
            rows: list[_Row | None] = [conn.execute(query, (s,)).fetchone() for s in sequences]
            return [_batch(row) for row in rows if row is not None]
        except (sqlite3.Error, ValueError) as exc:
            raise OutboxError(self.path, f"cannot read batches: {exc}") from exc

    def _transaction(self, body: Callable[[sqlite3.Connection], None]) -> None:
        conn = self._db()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                body(conn)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise OutboxError(self.path, f"cannot write: {exc}") from exc

    def _apply(self, change: QueueChange) -> None:
        if self._full and _only_removes(change):
            # Forgetting an acknowledged batch need not survive a power cut: if the
            # delete is lost the batch is sent again and the cloud, which stores
            # each sequence once, acknowledges it as a duplicate. Sparing the fsync
            # halves the outbox's disk work. The next FULL commit makes it durable.
            conn = self._db()
            conn.execute("PRAGMA synchronous=NORMAL")
            try:
                self._transaction(lambda conn: self._statements(conn, change))
            finally:
                conn.execute("PRAGMA synchronous=FULL")
            return
        self._transaction(lambda conn: self._statements(conn, change))

    def _statements(self, conn: sqlite3.Connection, change: QueueChange) -> None:
        if change.renumber:
            # Through negative keys: shifting in place would collide row by row.
            conn.execute("UPDATE batch SET sequence = -(sequence + ?)", (change.renumber,))
            conn.execute("UPDATE batch SET sequence = -sequence")
        if change.delete:
            conn.executemany("DELETE FROM batch WHERE sequence = ?", [(s,) for s in change.delete])
        for batch in change.rewrite:
            conn.execute(
                "UPDATE batch SET catalog_id=?, priority=?, position=?, created_us=?, samples=?,"
                " size=?, signal_index=?, timestamp_us=?, value=?, evicted=?, triggers=?,"
                " carries_counts=? WHERE sequence=?",
                _row(batch, self._weigh(batch)),
            )
        if change.insert is not None:
            conn.execute(
                "INSERT INTO batch (catalog_id, priority, position, created_us, samples, size,"
                " signal_index, timestamp_us, value, evicted, triggers, carries_counts, sequence)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                _row(change.insert, self._weigh(change.insert)),
            )
        meta: list[tuple[str, object]] = []
        if change.next_sequence is not None:
            meta.append(("next_sequence", change.next_sequence))
        if change.provisional is not None:
            meta.append(("provisional", int(change.provisional)))
        if change.resume_position is not None:
            meta.append(("resume_position", change.resume_position))
        if change.pending_evictions is not None:
            meta.append(("pending_evictions", _encode_counts(change.pending_evictions)))
        if change.pending_triggers is not None:
            meta.append(("pending_triggers", _encode_marks(change.pending_triggers)))
        if change.next_report_id is not None:
            meta.append(("next_report_id", change.next_report_id))
        if meta:
            conn.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", meta)
        if change.put_report is not None:
            conn.execute(
                "INSERT INTO report (report_id, payload) VALUES (?, ?)",
                (change.put_report.report_id, change.put_report.payload),
            )
        if change.ack_report is not None:
            conn.execute("DELETE FROM report WHERE report_id = ?", (change.ack_report,))

    def _apply_state(self, key: str, value: bytes) -> None:
        def body(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT OR REPLACE INTO state (key, value) VALUES (?, ?)", (key, value))

        self._transaction(body)


def _read_snapshot(conn: sqlite3.Connection) -> QueueSnapshot:
    meta = dict(conn.execute("SELECT key, value FROM meta"))
    entries = {
        seq: QueueEntry(priority, size, samples, samples * SAMPLE_BYTES)
        for seq, priority, size, samples in conn.execute(
            "SELECT sequence, priority, size, samples FROM batch ORDER BY sequence"
        )
    }
    return QueueSnapshot(
        entries=entries,
        next_sequence=int(meta.get("next_sequence", 1)),
        provisional=bool(meta.get("provisional", 1)),
        resume_position=int(meta.get("resume_position", -1)),
        pending_evictions=_decode_counts(meta.get("pending_evictions", "[]")),
        pending_triggers=_decode_marks(meta.get("pending_triggers", "[]")),
        next_report_id=int(meta.get("next_report_id", 1)),
        reports=dict(conn.execute("SELECT report_id, payload FROM report")),
        state=dict(conn.execute("SELECT key, value FROM state")),
    )


def _only_removes(change: QueueChange) -> bool:
    """True for an acknowledgement: rows deleted, nothing written."""
    return (
        (bool(change.delete) or change.ack_report is not None)
        and not change.renumber
        and not change.rewrite
        and change.insert is None
        and change.next_sequence is None
        and change.provisional is None
        and change.resume_position is None
        and change.pending_evictions is None
        and change.pending_triggers is None
        and change.next_report_id is None
        and change.put_report is None
    )


@dataclass(frozen=True, slots=True)
class OutboxSummary:
    """What an outbox file holds, read without opening it for writing."""

    path: Path
    batches: int
    samples: int
    size_bytes: int
    first_sequence: int | None
    last_sequence: int | None
    oldest_created_us: int | None
    reports: int
    next_sequence: int
    provisional: bool
    resume_position: int
    pending_evicted_samples: int
    state: dict[str, bytes]


def inspect(path: Path) -> OutboxSummary:
    """Summarise the outbox at *path* read-only (safe while an agent runs on it).

    Raises :class:`OutboxError` when the file is missing or is not an outbox.
    """
    if not path.is_file():
        raise OutboxError(path, "no such file")
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5.0)
    except sqlite3.Error as exc:
        raise OutboxError(path, str(exc)) from exc
    try:
        (application_id,) = conn.execute("PRAGMA application_id").fetchone()
        if application_id != APPLICATION_ID:
            raise OutboxError(path, "not a telehub outbox")
        snapshot = _read_snapshot(conn)
        (oldest,) = conn.execute("SELECT min(created_us) FROM batch").fetchone()
    except sqlite3.Error as exc:
        raise OutboxError(path, str(exc)) from exc
    finally:
        conn.close()
    entries = snapshot.entries
    return OutboxSummary(
        path=path,
        batches=len(entries),
        samples=sum(e.samples for e in entries.values()),
        size_bytes=sum(e.weight for e in entries.values()),
        first_sequence=min(entries, default=None),
        last_sequence=max(entries, default=None),
        oldest_created_us=oldest,
        reports=len(snapshot.reports),
        next_sequence=snapshot.next_sequence,
        provisional=snapshot.provisional,
        resume_position=snapshot.resume_position,
        pending_evicted_samples=sum(c.samples for c in snapshot.pending_evictions),
        state={key: bytes(value) for key, value in snapshot.state.items()},
    )


def _encode_marks(marks: list[TriggerMark]) -> str:
    return json.dumps([[t.name, t.time_us, t.plan_version] for t in marks])


def _decode_marks(text: str) -> list[TriggerMark]:
    return [TriggerMark(n, t, v) for n, t, v in json.loads(text)]
