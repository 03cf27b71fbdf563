"""The agent's composition root: source → decoder → batcher → buffer → uplink.

Reading and decoding run in one worker thread (python-can readers and cantools
are blocking, CPU-bound code); the uplink runs on the event loop. Closed batches
cross from the thread to the loop one batch at a time, never one frame at a time.
"""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
from collections.abc import Callable
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field

from vehicle_agent import __version__
from vehicle_agent.batching import Batch, Batcher
from vehicle_agent.buffer import BatchBuffer
from vehicle_agent.config import AgentSettings
from vehicle_agent.decoding import Decoder
from vehicle_agent.sources import BusSource, FrameSource, LogSource
from vehicle_agent.uplink import Backoff, Uplink

ProgressCallback = Callable[[int], None]
PROGRESS_EVERY = 4096


@dataclass(slots=True)
class AgentReport:
    """What one run of the agent did, for summaries and tests."""

    frames_read: int = 0
    frames_decoded: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    samples_decoded: int = 0
    batches: int = 0
    samples_sent: int = 0
    samples_acked: int = 0
    batches_resent: int = 0
    duplicates: int = 0
    dropped_samples: int = 0
    rejected_samples: int = 0
    reconnects: int = 0
    read_seconds: float = 0.0
    elapsed_seconds: float = 0.0
    ack_p50_ms: float | None = None
    ack_p99_ms: float | None = None


class Agent:
    """Runs one source to its end (a log) or until cancelled (a bus)."""

    def __init__(
        self,
        *,
        vehicle_id: str,
        token: str,
        gateway: str,
        decoder: Decoder,
        source: FrameSource,
        batch_max_samples: int = 1000,
        batch_max_age: float = 1.0,
        buffer: BatchBuffer | None = None,
        backoff: Backoff | None = None,
        compression: bool = True,
        progress: ProgressCallback | None = None,
    ) -> None:
        self.decoder = decoder
        self.source = source
        self.buffer = buffer or BatchBuffer()
        self.uplink = Uplink(
            gateway,
            token,
            vehicle_id,
            decoder.catalog,
            self.buffer,
            agent_version=__version__,
            backoff=backoff,
            compression=compression,
        )
        self._batcher = Batcher(
            decoder.catalog.catalog_id, max_samples=batch_max_samples, max_age=batch_max_age
        )
        self._progress = progress
        self._frames_read = 0
        self._batches = 0
        self._read_seconds = 0.0
        self._stop = threading.Event()

    @classmethod
    def from_settings(
        cls, settings: AgentSettings, *, progress: ProgressCallback | None = None
    ) -> Agent:
        decoder = Decoder([d.spec() for d in settings.dbc], strict=settings.dbc_strict)
        source: FrameSource
        if settings.log_file is not None:
            source = LogSource(settings.log_file, realtime=settings.realtime, speed=settings.speed)
        else:
            assert settings.interface is not None
            assert settings.channel is not None
            source = BusSource(
                settings.interface, settings.channel, bitrate=settings.bitrate, fd=settings.fd
            )
        return cls(
            vehicle_id=settings.vehicle_id,
            token=settings.token.get_secret_value(),
            gateway=settings.gateway,
            decoder=decoder,
            source=source,
            batch_max_samples=settings.batch_max_samples,
            batch_max_age=settings.batch_max_age,
            buffer=BatchBuffer(settings.buffer_max_batches, settings.overflow_policy),
            compression=settings.compression,
            progress=progress,
        )

    async def run(self, *, drain_timeout: float | None = None) -> AgentReport:
        """Read the source to its end, then wait until the cloud acknowledged everything.

        Raises :class:`~vehicle_agent.errors.UplinkError` when the gateway refuses
        the vehicle, and :class:`TimeoutError` when *drain_timeout* passes with
        batches still unacknowledged (they are counted in the report first).
        """
        started = time.monotonic()
        loop = asyncio.get_running_loop()
        uplink = asyncio.create_task(self.uplink.run(), name="uplink")
        reader = asyncio.create_task(asyncio.to_thread(self._read, loop), name="reader")
        try:
            done, _ = await asyncio.wait({uplink, reader}, return_when=asyncio.FIRST_COMPLETED)
            if uplink in done:
                uplink.result()  # raises the uplink's error
            await reader
            drained = asyncio.create_task(self.buffer.wait_empty())
            done, _ = await asyncio.wait(
                {uplink, drained}, timeout=drain_timeout, return_when=asyncio.FIRST_COMPLETED
            )
            drained.cancel()
            if uplink in done:
                uplink.result()
            if drained not in done:
                raise TimeoutError(
                    f"{len(self.buffer)} batches still unacknowledged after {drain_timeout}s"
                )
        finally:
            self._stop.set()
            uplink.cancel()
            await asyncio.gather(uplink, reader, return_exceptions=True)
            self.source.close()
        return self.report(time.monotonic() - started)

    def stop(self) -> None:
        """Ask the reader to stop after the current frame (thread-safe)."""
        self._stop.set()

    def report(self, elapsed: float = 0.0) -> AgentReport:
        d = self.decoder.stats
        u = self.uplink.stats
        b = self.buffer.stats
        latencies = sorted(u.ack_latency_ms)
        return AgentReport(
            frames_read=self._frames_read,
            frames_decoded=d.decoded,
            skipped=d.by_reason(),
            samples_decoded=d.samples,
            batches=self._batches,
            samples_sent=u.samples_sent,
            samples_acked=b.acked_samples,
            batches_resent=u.batches_resent,
            duplicates=u.duplicates,
            dropped_samples=b.dropped_samples,
            rejected_samples=b.rejected_samples,
            reconnects=u.reconnects,
            read_seconds=self._read_seconds,
            elapsed_seconds=elapsed,
            ack_p50_ms=statistics.median(latencies) if latencies else None,
            ack_p99_ms=latencies[int(0.99 * (len(latencies) - 1))] if latencies else None,
        )

    # ------------------------------------------------------------ reader thread

    def _read(self, loop: asyncio.AbstractEventLoop) -> None:
        started = time.perf_counter()
        try:
            if isinstance(self.source, BusSource):
                self._read_bus(loop, self.source)
            else:
                self._read_log(loop)
            if (last := self._batcher.flush()) is not None:
                self._hand_over(loop, last)
        finally:
            self._read_seconds = time.perf_counter() - started
            if self._progress is not None:
                self._progress(self._frames_read)

    def _read_log(self, loop: asyncio.AbstractEventLoop) -> None:
        decode = self.decoder.decode
        batcher = self._batcher
        for frame in self.source:
            if self._stop.is_set():
                return
            self._frames_read += 1
            samples = decode(frame)
            if samples:
                for batch in batcher.add_frame(frame.timestamp, samples):
                    self._hand_over(loop, batch)
            if self._frames_read % PROGRESS_EVERY == 0:
                if (aged := batcher.poll()) is not None:
                    self._hand_over(loop, aged)
                if self._progress is not None:
                    self._progress(self._frames_read)

    def _read_bus(self, loop: asyncio.AbstractEventLoop, bus: BusSource) -> None:
        decode = self.decoder.decode
        batcher = self._batcher
        while not self._stop.is_set():
            deadline = batcher.time_to_deadline()
            frame = bus.recv(timeout=0.25 if deadline is None else min(deadline, 0.25))
            if frame is not None:
                self._frames_read += 1
                samples = decode(frame)
                if samples:
                    for batch in batcher.add_frame(frame.timestamp, samples):
                        self._hand_over(loop, batch)
            if (aged := batcher.poll()) is not None:
                self._hand_over(loop, aged)

    def _hand_over(self, loop: asyncio.AbstractEventLoop, batch: Batch) -> None:
        self._batches += 1
        future = asyncio.run_coroutine_threadsafe(self.buffer.put(batch), loop)
        while True:
            try:
                future.result(timeout=0.5)
                return
            except FutureTimeout:
                if self._stop.is_set():
                    future.cancel()
                    return
