"""The agent's composition root: source → pipeline → pending queue → uplink.

Reading, reassembly, decoding, collection and batching run in one worker
thread (python-can readers and cantools are blocking, CPU-bound code) through a
:class:`~vehicle_agent.pipeline.Pipeline`; the uplink runs on the event loop.
Closed batches cross from the thread to the loop one batch at a time, never one
frame at a time, and each is in the pending queue (the durable outbox) before
the uplink can send it.

A log replay resumes where it stopped: every batch records the position of the
last frame it wholly holds, and a restarted agent given the same log skips the
frames whose samples are already in the outbox (or in the cloud).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import statistics
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from telehub.v1 import telemetry_pb2 as pb
from vehicle_agent import __version__, wire
from vehicle_agent.batching import Batch, Batcher
from vehicle_agent.buffer import BatchBuffer
from vehicle_agent.buses import MultiBusSource
from vehicle_agent.config import AgentSettings
from vehicle_agent.consent import Purpose
from vehicle_agent.control import AgentControl
from vehicle_agent.decoding import Decoder
from vehicle_agent.diagnostics import DiagnosticsTap
from vehicle_agent.logs import FrameColumns
from vehicle_agent.logs.columns import select
from vehicle_agent.outbox import Outbox
from vehicle_agent.pending import OverflowPolicy, PendingQueue
from vehicle_agent.pipeline import Pipeline
from vehicle_agent.sources import BusSource, FrameSource, LiveSource, LogSource
from vehicle_agent.uplink import Backoff, Uplink

__all__ = ["HEALTH_STATE", "Agent", "AgentReport", "diagnostics_for"]

log = logging.getLogger(__name__)

ProgressCallback = Callable[[int], None]
PROGRESS_EVERY = 4096
#: Frames between two batch-age checks in a real-time log replay (~15 ms of a
#: saturated 500 kbit/s bus).
REALTIME_CHECK_EVERY = 64
HEALTH_STATE = "health"
SOURCE_STATE = "source"


@dataclass(slots=True)
class AgentReport:
    """What one run of the agent did, for summaries and tests."""

    frames_read: int = 0
    frames_resumed: int = 0
    frames_decoded: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    frames_by_bus: dict[str, int] = field(default_factory=dict)
    samples_decoded: int = 0
    samples_collected: int = 0
    batches: int = 0
    samples_sent: int = 0
    samples_acked: int = 0
    batches_resent: int = 0
    duplicates: int = 0
    evicted_samples: int = 0
    purged_samples: int = 0
    rejected_samples: int = 0
    triggers_fired: int = 0
    fault_changes: int = 0
    reconnects: int = 0
    plan_version: int = 0
    consent_version: int = 0
    read_seconds: float = 0.0
    elapsed_seconds: float = 0.0
    ack_p50_ms: float | None = None
    ack_p99_ms: float | None = None


def diagnostics_for(decoder: Decoder) -> DiagnosticsTap:
    """A diagnostics tap for the configured DBC files.

    Standard-id DBC messages longer than 8 bytes on a classic bus can only
    arrive through ISO-TP; J1939 files get transport-protocol reassembly and
    DM1 fault codes on their channel.
    """
    isotp: set[int] = set()
    j1939_channels: set[str | None] = set()
    bus_names: dict[str | None, str] = {}
    for bound in decoder.bound:
        bus_names.setdefault(bound.spec.channel, bound.spec.bus)
        if bound.j1939:
            j1939_channels.add(bound.spec.channel)
        for message in bound.dbc.database.messages:
            if not message.is_extended_frame and message.length > 8:
                isotp.add(message.frame_id)
    # A J1939 file bound to every channel (None) means every channel carries J1939.
    channels = None if None in j1939_channels or not j1939_channels else j1939_channels
    return DiagnosticsTap(isotp_ids=isotp, j1939_channels=channels, bus_names=bus_names)


class Agent:
    """Runs one source to its end (a log) or until stopped (live buses)."""

    def __init__(
        self,
        *,
        vehicle_id: str,
        token: str,
        gateway: str,
        decoder: Decoder,
        source: FrameSource,
        queue: PendingQueue | None = None,
        batch_max_samples: int = 5000,
        batch_max_age: float = 1.0,
        backoff: Backoff | None = None,
        compression: bool = True,
        progress: ProgressCallback | None = None,
        location_quantum: float = 0.0,
        default_purpose: Purpose = Purpose.DIAGNOSTICS,
        diagnostics: bool = True,
        health_interval: float = 30.0,
        status_interval: float = 5.0,
        resume: bool = True,
    ) -> None:
        self.decoder = decoder
        self.source = source
        self.queue: PendingQueue = queue if queue is not None else BatchBuffer()
        self.started = time.monotonic()
        self.control = AgentControl(
            decoder.catalog,
            self.queue,
            location_quantum=location_quantum,
            default_purpose=default_purpose,
            health=self.health,
        )
        self.pipeline = Pipeline(
            decoder,
            Batcher(
                decoder.catalog.catalog_id, max_samples=batch_max_samples, max_age=batch_max_age
            ),
            self.control.plan,
            self.control.consent,
            diagnostics=diagnostics_for(decoder) if diagnostics else None,
        )
        self.uplink = Uplink(
            gateway,
            token,
            vehicle_id,
            decoder.catalog,
            self.queue,
            agent_version=__version__,
            control=self.control,
            backoff=backoff,
            compression=compression,
            health_interval=health_interval,
        )
        self._progress = progress
        self._status_interval = status_interval
        self._resume = resume
        self._frames_read = 0
        self._frames_resumed = 0
        self._batches = 0
        self._triggers = 0
        self._fault_changes = 0
        self._read_seconds = 0.0
        self._reading = False
        self._stop = threading.Event()
        self.control.attach(self.pipeline, lambda: self._reading)

    @classmethod
    def from_settings(
        cls, settings: AgentSettings, *, progress: ProgressCallback | None = None
    ) -> Agent:
        decoder = Decoder([d.spec() for d in settings.dbc], strict=settings.dbc_strict)
        source: FrameSource
        if settings.log_file is not None:
            source = LogSource(
                settings.log_file,
                realtime=settings.realtime,
                speed=settings.speed,
                channel_names=settings.log_channels or None,
            )
        elif settings.buses:
            source = MultiBusSource([b.config() for b in settings.buses])
        else:
            assert settings.interface is not None
            assert settings.channel is not None
            source = BusSource(
                settings.interface, settings.channel, bitrate=settings.bitrate, fd=settings.fd
            )
        queue = outbox_or_buffer(
            settings.outbox,
            max_bytes=settings.outbox_max_bytes,
            policy=settings.overflow_policy,
            synchronous=settings.outbox_synchronous,
        )
        return cls(
            vehicle_id=settings.vehicle_id,
            token=settings.token.get_secret_value(),
            gateway=settings.gateway,
            decoder=decoder,
            source=source,
            queue=queue,
            batch_max_samples=settings.batch_max_samples,
            batch_max_age=settings.batch_max_age,
            compression=settings.compression,
            backoff=Backoff(initial=settings.reconnect_initial, maximum=settings.reconnect_max),
            progress=progress,
            location_quantum=settings.location_quantum,
            default_purpose=settings.default_purpose,
            diagnostics=settings.diagnostics,
            health_interval=settings.health_interval,
            resume=settings.resume,
        )

    async def run(self, *, drain_timeout: float | None = None) -> AgentReport:
        """Read the source to its end, then wait until the cloud acknowledged everything.

        Raises :class:`~vehicle_agent.errors.UplinkError` when the gateway refuses
        the vehicle, and :class:`TimeoutError` when *drain_timeout* passes with
        batches still unacknowledged (they stay in the outbox for the next run).
        """
        started = time.monotonic()
        loop = asyncio.get_running_loop()
        # A purge cut short by a crash finishes here: nothing of a purpose without
        # consent stays in the outbox.
        refused = frozenset(Purpose) - self.control.consent.granted
        await self.queue.purge(self.control.plan.signals_for(refused))
        self._reading = True
        uplink = asyncio.create_task(self.uplink.run(), name="uplink")
        status = asyncio.create_task(self._save_status_loop(), name="status")
        reader = asyncio.create_task(asyncio.to_thread(self._read, loop), name="reader")
        try:
            done, _ = await asyncio.wait({uplink, reader}, return_when=asyncio.FIRST_COMPLETED)
            if uplink in done:
                uplink.result()  # raises the uplink's error
            await reader
            await self.queue.seal_evictions(self.decoder.catalog.catalog_id)
            drained = asyncio.create_task(self._drained())
            done, _ = await asyncio.wait(
                {uplink, drained}, timeout=drain_timeout, return_when=asyncio.FIRST_COMPLETED
            )
            drained.cancel()
            if uplink in done:
                uplink.result()
            if drained not in done:
                raise TimeoutError(
                    f"{len(self.queue)} batches still unacknowledged after {drain_timeout}s"
                )
        finally:
            self._stop.set()
            for task in (uplink, status):
                task.cancel()
            await asyncio.gather(uplink, reader, status, return_exceptions=True)
            self._reading = False
            self.source.close()
            self._save_status()
        return self.report(time.monotonic() - started)

    async def _drained(self) -> None:
        await self.queue.wait_empty()
        await self.uplink.wait_reports_acked()

    def stop(self) -> None:
        """Ask the reader to stop after the current frame (thread-safe)."""
        self._stop.set()

    # ------------------------------------------------------------ reporting

    def report(self, elapsed: float = 0.0) -> AgentReport:
        d = self.decoder.stats
        u = self.uplink.stats
        q = self.queue.stats
        latencies = sorted(u.ack_latency_ms)
        plan_version, consent_version = self.control.versions()
        return AgentReport(
            frames_read=self._frames_read,
            frames_resumed=self._frames_resumed,
            frames_decoded=d.decoded,
            skipped=d.by_reason(),
            frames_by_bus=self._frames_by_bus(),
            samples_decoded=d.samples,
            samples_collected=q.put_samples,
            batches=self._batches,
            samples_sent=u.samples_sent,
            samples_acked=q.acked_samples,
            batches_resent=u.batches_resent,
            duplicates=u.duplicates,
            evicted_samples=q.evicted_samples,
            purged_samples=q.purged_samples,
            rejected_samples=q.rejected_samples,
            triggers_fired=self._triggers,
            fault_changes=self._fault_changes,
            reconnects=u.reconnects,
            plan_version=plan_version,
            consent_version=consent_version,
            read_seconds=self._read_seconds,
            elapsed_seconds=elapsed,
            ack_p50_ms=statistics.median(latencies) if latencies else None,
            ack_p99_ms=_nearest_rank(latencies, 0.99) if latencies else None,
        )

    def _frames_by_bus(self) -> dict[str, int]:
        stats = getattr(self.source, "stats", None)
        if isinstance(stats, dict) and stats:
            return {name: s.frames for name, s in stats.items()}
        if isinstance(self.source, LogSource):
            return self.source.frames_by_channel or {"log": 0}
        return {"bus": self._frames_read}

    def health(self) -> pb.AgentHealth:
        """The agent's counters as the health report sent to the cloud."""
        r = self.report(time.monotonic() - self.started)
        source_stats = getattr(self.source, "stats", None)
        dropped = (
            sum(s.dropped for s in source_stats.values()) if isinstance(source_stats, dict) else 0
        )
        counters = {
            "frames_read": r.frames_read,
            "frames_decoded": r.frames_decoded,
            "samples_decoded": r.samples_decoded,
            "samples_sent": r.samples_sent,
            "samples_acked": r.samples_acked,
            "purged_samples": r.purged_samples,
            "rejected_samples": r.rejected_samples,
            "triggers_fired": r.triggers_fired,
            "fault_changes": r.fault_changes,
            "frames_dropped": dropped,
            "batches_resent": r.batches_resent,
            **{f"skipped_{reason}": n for reason, n in r.skipped.items()},
        }
        return pb.AgentHealth(
            time_us=time.time_ns() // 1000,
            uptime_ms=int(r.elapsed_seconds * 1000),
            frames_by_bus=r.frames_by_bus,
            decode_errors=self.decoder.stats.decode_errors,
            unknown_ids=self.decoder.stats.unknown_id,
            outbox_batches=len(self.queue),
            outbox_bytes=self.queue.size_bytes,
            evicted_samples=r.evicted_samples,
            reconnects=r.reconnects,
            ack_latency_p50_ms=r.ack_p50_ms or 0.0,
            ack_latency_p99_ms=r.ack_p99_ms or 0.0,
            plan_version=r.plan_version,
            consent_version=r.consent_version,
            counters={k: int(v) for k, v in counters.items()},
        )

    def _save_status(self) -> None:
        # Read by `telehub agent status` from the outbox file, even while we run.
        try:
            self.queue.save_state(HEALTH_STATE, self.health().SerializeToString())
        except Exception:  # the status is a convenience: never fail the agent for it
            log.exception("could not save the agent status")

    async def _save_status_loop(self) -> None:
        while True:
            await asyncio.sleep(self._status_interval)
            await asyncio.to_thread(self._save_status)

    # ------------------------------------------------------------ reader thread

    def _read(self, loop: asyncio.AbstractEventLoop) -> None:
        started = time.perf_counter()
        try:
            if isinstance(self.source, LogSource):
                self._read_log(loop, self.source)
            else:
                self._read_live(loop, self.source)  # type: ignore[arg-type]
            self._after_frames(loop, flush=True)
        finally:
            self._reading = False
            self._read_seconds = time.perf_counter() - started
            if self._progress is not None:
                self._progress(self._frames_read)

    def _log_start(self, source: LogSource) -> tuple[int, int]:
        """(position of the log's first frame, frames already handled before a restart)."""
        stat = source.path.stat()
        identity = f"{source.path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
        saved = self.queue.load_state(SOURCE_STATE)
        resumed = self.queue.resume_position()
        if self._resume and saved is not None:
            state = json.loads(saved)
            if state.get("identity") == identity:
                base = int(state["base"])
                return base, max(0, resumed - base + 1)
        base = resumed + 1
        self.queue.save_state(
            SOURCE_STATE, json.dumps({"identity": identity, "base": base}).encode()
        )
        return base, 0

    def _read_log(self, loop: asyncio.AbstractEventLoop, source: LogSource) -> None:
        base, skip = self._log_start(source)
        chunks = source.chunks()
        if chunks is not None:
            self._read_chunks(loop, chunks, base, skip)
            return
        process = self.pipeline.process
        # A replay at recorded pace checks the batch age often enough to close
        # batches by age, as on a live bus; a fast replay closes them by size.
        every = REALTIME_CHECK_EVERY if source.realtime else PROGRESS_EVERY
        for ordinal, frame in enumerate(source):
            if self._stop.is_set():
                return
            if ordinal < skip:
                self._frames_resumed += 1
                continue
            self._frames_read += 1
            for batch in process(frame, base + ordinal):
                self._put(loop, batch)
            if self._frames_read % every == 0:
                self._after_frames(loop)
                if self._progress is not None and self._frames_read % PROGRESS_EVERY == 0:
                    self._progress(self._frames_read)

    def _read_chunks(
        self,
        loop: asyncio.AbstractEventLoop,
        chunks: Iterator[FrameColumns],
        base: int,
        skip: int,
    ) -> None:
        """A fast replay, a chunk of frames at a time (the pipeline decides how)."""
        process = self.pipeline.process_chunk
        ordinal = 0  # of the chunk's first frame in the log
        for chunk in chunks:
            if self._stop.is_set():
                return
            size = len(chunk)
            first = ordinal
            ordinal += size
            if first + size <= skip:
                self._frames_resumed += size
                continue
            if first < skip:
                self._frames_resumed += skip - first
                chunk = select(chunk, slice(skip - first, None))
                first = skip
            self._frames_read += len(chunk)
            for batch in process(chunk, base + first):
                self._put(loop, batch)
            self._after_frames(loop)
            if self._progress is not None:
                self._progress(self._frames_read)

    def _read_live(self, loop: asyncio.AbstractEventLoop, source: LiveSource) -> None:
        process = self.pipeline.process
        batcher = self.pipeline.batcher
        while not self._stop.is_set():
            deadline = batcher.time_to_deadline()
            frame = source.recv(timeout=0.25 if deadline is None else min(deadline, 0.25))
            if frame is not None:
                self._frames_read += 1
                for batch in process(frame):
                    self._put(loop, batch)
            if frame is None or self._frames_read % 256 == 0:
                self._after_frames(loop)

    def _after_frames(self, loop: asyncio.AbstractEventLoop, *, flush: bool = False) -> None:
        pipeline = self.pipeline
        last = pipeline.flush() if flush else pipeline.poll()
        if last is not None:
            self._put(loop, last)
        changes = pipeline.drain_faults()
        if changes:
            self._fault_changes += len(changes)
            self._call(loop, self._put_report(wire.fault_codes(changes)))

    async def _put_report(self, payload: bytes) -> None:
        await self.queue.put_report(payload)
        self.uplink.reports_ready()

    def _put(self, loop: asyncio.AbstractEventLoop, batch: Batch) -> None:
        self._batches += 1
        self._triggers += len(batch.triggers)
        self._call(loop, self.queue.put(batch))

    def _call(self, loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, object]) -> None:
        future = asyncio.run_coroutine_threadsafe(coro, loop)
        while True:
            try:
                future.result(timeout=0.5)
                return
            except FutureTimeout:
                if self._stop.is_set():
                    future.cancel()
                    return


def _nearest_rank(ordered: list[float], fraction: float) -> float:
    """The *fraction* percentile of sorted values by the nearest-rank method."""
    rank = math.ceil(fraction * len(ordered))
    return ordered[min(max(rank, 1), len(ordered)) - 1]


def outbox_or_buffer(
    path: Path | None,
    *,
    max_bytes: int,
    policy: OverflowPolicy,
    synchronous: Literal["full", "normal"] = "full",
) -> PendingQueue:
    """The durable outbox at *path*, or an in-memory buffer when *path* is None."""
    if path is None:
        return BatchBuffer(policy=policy)
    path.parent.mkdir(parents=True, exist_ok=True)
    return Outbox(path, max_bytes=max_bytes, policy=policy, synchronous=synchronous)
