"""What only the SQLite outbox does: survive reopening, kills and corrupt files."""

from __future__ import annotations

import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.vehicle_agent.outbox_crash_child import batch_for
from vehicle_agent.batching import Batch, EvictedCount, TriggerMark
from vehicle_agent.errors import AgentError, OutboxError
from vehicle_agent.outbox import ROW_OVERHEAD, Outbox
from vehicle_agent.pending import OverflowPolicy

ROOT = Path(__file__).resolve().parents[2]


def make(n: int, *, priority: int = 0, position: int = -1) -> Batch:
    b = Batch(catalog_id=2, priority=priority, position=position)
    for i in range(n):
        b.append(i % 4, 10_000 + i, i * 1.5)
    return b


def fields(b: Batch) -> tuple[object, ...]:
    return (
        (b.sequence, b.catalog_id, b.priority, b.position),
        (b.signal_index, b.timestamp_us, b.value),
        (b.evicted, b.triggers),
    )


def same(a: Batch, b: Batch) -> bool:
    return fields(a) == fields(b)


def test_file_is_wal_and_versioned(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db"):
        pass
    conn = sqlite3.connect(tmp_path / "o.db")
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    finally:
        conn.close()


async def test_reopening_keeps_everything(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    with Outbox(path) as ob:
        first = make(5, priority=2, position=30)
        first.triggers = [TriggerMark("hard_brake", 10_002, 3)]
        await ob.put(first)
        await ob.put(make(3, position=31))
        await ob.put(make(1, position=32))
        await ob.on_welcome(40)  # 1..3 become 41..43
        await ob.ack(42)
        assert await ob.put_report(b"P0300") == 1
        ob.save_state("plan", b"\x01\x02")
    with Outbox(path, cache_batches=0) as ob:
        assert list(ob._entries) == [41, 43]
        assert ob.resume_position() == 32
        assert ob.load_state("plan") == b"\x01\x02"
        assert [r.payload for r in await ob.pending_reports()] == [b"P0300"]
        assert await ob.put_report(b"P0420") == 2
        assert same(await ob.next_after(0), first)
        assert await ob.put(make(1)) == 44  # numbering stays final after the Welcome
        assert (len(ob), ob.samples) == (3, 7)


async def test_after_reopening_everything_pending_is_in_flight_until_welcome(
    tmp_path: Path,
) -> None:
    per_batch = 10 * 20 + ROW_OVERHEAD
    path = tmp_path / "o.db"
    with Outbox(path, max_bytes=2 * per_batch) as ob:
        await ob.put(make(10))
        await ob.put(make(10))
    with Outbox(path, max_bytes=2 * per_batch) as ob:
        await ob.put(make(10))  # both old batches may be at the cloud: none evicted
        assert list(ob._entries) == [1, 2, 3]
        await ob.on_welcome(0)
        await ob.put(make(10))
        assert list(ob._entries) == [3, 4]
        assert ob.stats.evicted_batches == 2


async def test_pending_eviction_counts_survive_reopening_and_go_out_once(
    tmp_path: Path,
) -> None:
    per_batch = 10 * 20 + ROW_OVERHEAD
    path = tmp_path / "o.db"
    with Outbox(path, max_bytes=per_batch) as ob:
        await ob.put(make(10, priority=5))
        assert await ob.put(make(10, priority=1)) == 0  # evicted on arrival
    with Outbox(path, max_bytes=per_batch) as ob:
        await ob.on_welcome(0)
        sealed = await ob.seal_evictions(2)
        assert sealed is not None
        assert sealed.evicted == [
            EvictedCount(0, 3, 10_000, 10_008),
            EvictedCount(1, 3, 10_001, 10_009),
            EvictedCount(2, 2, 10_002, 10_006),
            EvictedCount(3, 2, 10_003, 10_007),
        ]
    with Outbox(path, max_bytes=3 * per_batch, cache_batches=0) as ob:
        assert await ob.seal_evictions(2) is None
        await ob.on_welcome(0)
        assert (await ob.next_after(1)).evicted == sealed.evicted
        nxt = make(1, priority=9)
        await ob.put(nxt)
        assert nxt.evicted == []


async def test_purge_and_renumbering_reach_the_file(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    with Outbox(path) as ob:
        await ob.put(make(8))
        assert await ob.purge(frozenset({0, 1})) == 4
        await ob.on_welcome(7)
    with Outbox(path) as ob:
        assert list(ob._entries) == [8]
        got = await ob.next_after(0)
        assert set(got.signal_index) == {2, 3}
        assert ob.samples == 4


def test_corrupt_file_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    path.write_bytes(b"this is no database at all " * 200)
    with pytest.raises(OutboxError, match=r"o\.db") as caught:
        Outbox(path)
    assert isinstance(caught.value, AgentError)
    assert caught.value.path == path


def test_damaged_pages_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    with Outbox(path, synchronous="normal") as ob:
        ob.save_state("big", bytes(range(256)) * 400)  # several pages to damage
    data = bytearray(path.read_bytes())
    data[4096 + 100 : 4096 * 3] = b"\xff" * (4096 * 2 - 100)  # header kept, pages broken
    path.write_bytes(bytes(data))
    with pytest.raises(OutboxError, match=r"o\.db"):
        Outbox(path)


def test_another_sqlite_file_is_not_an_outbox(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    with pytest.raises(OutboxError, match="not an outbox"):
        Outbox(path)


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    Outbox(path).close()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(OutboxError, match="newer"):
        Outbox(path)


async def test_closed_outbox_says_so(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.db")
    ob.close()
    with pytest.raises(OutboxError, match="closed"):
        await ob.put(make(1))


async def test_block_policy_bounds_bytes(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db", max_bytes=1_000, policy=OverflowPolicy.BLOCK) as ob:
        await ob.put(make(20))  # 464 bytes accounted
        await ob.put(make(20))
        assert ob.size_bytes == 2 * (20 * 20 + ROW_OVERHEAD)


def _kill_once(
    path: Path, rng: random.Random, acked_maybe: set[int]
) -> tuple[dict[int, int], set[int]]:
    """Run the child, kill it at a random moment, return what it reported."""
    with subprocess.Popen(
        [sys.executable, "-m", "tests.vehicle_agent.outbox_crash_child", str(path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    ) as child:
        assert child.stdout is not None
        try:
            first = child.stdout.readline()  # it is putting: now kill it mid-stream
            assert first.startswith("put"), first
            time.sleep(rng.uniform(0.0, 0.3))
        finally:
            child.send_signal(signal.SIGKILL)
        output = first + child.stdout.read()
    put: dict[int, int] = {}
    acked: set[int] = set()
    for line in output.split("\n")[:-1]:  # the last piece was cut by the kill, or is empty
        kind, *fields = line.split()
        if kind == "put":
            put[int(fields[0])] = int(fields[1])
        else:
            acked.add(int(fields[0]))
    last = max(put, default=0)
    if last not in acked and put.get(last, 1) % 3 == 0:
        # Killed between the ack's commit and its line: it may be gone or not.
        acked_maybe.add(last)
    return put, acked


async def test_kills_at_random_moments_lose_nothing_promised(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    rng = random.Random(20240611)
    promised: dict[int, int] = {}
    acked: set[int] = set()
    acked_maybe: set[int] = set()
    for _ in range(5):
        put, gone = _kill_once(path, rng, acked_maybe)
        assert not put.keys() & promised.keys(), "a sequence was given twice"
        promised |= put
        acked |= gone
        conn = sqlite3.connect(path)
        try:
            assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        finally:
            conn.close()
        with Outbox(path, cache_batches=0) as ob:
            pending = list(ob._entries)
            assert not set(pending) & acked, "an acknowledged batch came back"
            for seq in sorted(promised.keys() - acked - acked_maybe):
                assert seq in ob._entries, f"batch {seq} was promised and lost"
            stored = await ob._load(pending)
            for batch in stored:
                expected = batch_for(batch.position)
                expected.sequence = batch.sequence
                assert same(batch, expected)
                if batch.sequence in promised:
                    assert promised[batch.sequence] == batch.position
            # Sequences run without gaps over everything ever put, each once.
            everything = sorted(set(pending) | acked | acked_maybe | promised.keys())
            assert everything == list(range(1, everything[-1] + 1))
            positions = [promised.get(s) for s in everything]
            known = [p for p in positions if p is not None]
            assert known == sorted(known)


async def test_unsigned_64_bit_catalog_ids_round_trip(tmp_path: Path) -> None:
    # Catalog ids are unsigned 64-bit digests; SQLite integers are signed.
    path = tmp_path / "outbox.sqlite"
    with Outbox(path) as outbox:
        for catalog_id in (2**64 - 1, 2**63, 2**63 - 1, 0):
            batch = Batch(catalog_id=catalog_id)
            batch.append(1, 2, 3.0)
            await outbox.put(batch)
    with Outbox(path) as reopened:
        await reopened.on_welcome(0)
        got = [(await reopened.next_after(seq)).catalog_id for seq in range(4)]
    assert got == [2**64 - 1, 2**63, 2**63 - 1, 0]


async def test_pending_trigger_marks_survive_reopening(tmp_path: Path) -> None:
    per_batch = 10 * 20 + ROW_OVERHEAD
    path = tmp_path / "o.db"
    mark = TriggerMark("hard_brake", 10_004, 2)
    with Outbox(path, max_bytes=per_batch) as ob:
        await ob.put(make(10, priority=5))
        dropped = make(10, priority=1)
        dropped.triggers.append(mark)
        assert await ob.put(dropped) == 0  # evicted on arrival, its mark kept
    with Outbox(path, max_bytes=per_batch) as ob:
        await ob.on_welcome(0)
        sealed = await ob.seal_evictions(2)
        assert sealed is not None
        assert sealed.triggers == [mark]
    with Outbox(path, max_bytes=3 * per_batch, cache_batches=0) as ob:
        assert await ob.seal_evictions(2) is None
        await ob.on_welcome(0)
        assert (await ob.next_after(1)).triggers == [mark]
