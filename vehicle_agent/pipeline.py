"""The reader thread's work on every frame: reassemble → decode → collect → batch.

A :class:`Pipeline` belongs to the one thread that reads frames. The event loop
changes what it does only through :meth:`Pipeline.request_plan` and
:meth:`Pipeline.request_consent`; the reader applies a request between two
frames (or the caller applies it with :meth:`Pipeline.apply_pending` when no
reader runs), and the returned future completes once it is in force. From then
on no batch closes with samples the new plan or consent excludes: the open
batch is filtered at that moment, so a withdrawal "takes effect on the next
batch", and the caller purges what already sits in the outbox.

Pure module: no grpc, protobuf, SQLAlchemy or python-can.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from vehicle_agent.batching import Batch, Batcher, TriggerMark, to_microseconds
from vehicle_agent.chunks import ChunkDecoder, ChunkSamples, FrameChunk, microseconds
from vehicle_agent.consent import Consent
from vehicle_agent.decoding import Decoder
from vehicle_agent.diagnostics import DiagnosticsTap
from vehicle_agent.faults import FaultChange
from vehicle_agent.frames import Frame
from vehicle_agent.plan import CompiledPlan, SamplingMode

__all__ = ["Pipeline", "change_only_signals"]


def change_only_signals(plan: CompiledPlan) -> frozenset[int]:
    """Signals whose repeated payloads need no decoding: ON_CHANGE, no heartbeat,
    not read by a trigger or captured (a repeat cannot change what they send)."""
    trigger_reads = frozenset(i for t in plan.triggers for i in (*t.inputs, *t.capture))
    return frozenset(
        index
        for index, signal in plan.signals.items()
        if signal.rule is not None
        and signal.rule.mode is SamplingMode.ON_CHANGE
        and signal.rule.heartbeat_ms == 0
        and index not in trigger_reads
    )


@dataclass(slots=True)
class _Request:
    plan: CompiledPlan | None
    consent: Consent | None
    done: Future[None]


class Pipeline:
    """Frames in, closed batches out, under the running plan and consent."""

    def __init__(
        self,
        decoder: Decoder,
        batcher: Batcher,
        plan: CompiledPlan,
        consent: Consent,
        *,
        diagnostics: DiagnosticsTap | None = None,
    ) -> None:
        self.decoder = decoder
        self.batcher = batcher
        self.diagnostics = diagnostics
        self.plan = plan
        self.consent = consent
        self.collector = plan.collector(consent)
        self.frames = 0
        self._marks: list[TriggerMark] = []
        self._requests: list[_Request] = []
        self._lock = threading.Lock()
        self._chunks: ChunkDecoder | None = None  # built on the first chunk
        self._select(plan)

    # ------------------------------------------------------------ any thread

    def request_plan(self, plan: CompiledPlan) -> Future[None]:
        """Run *plan* from the next frame on; the future completes when it runs."""
        return self._request(_Request(plan, None, Future()))

    def request_consent(self, consent: Consent) -> Future[None]:
        return self._request(_Request(None, consent, Future()))

    def _request(self, request: _Request) -> Future[None]:
        with self._lock:
            self._requests.append(request)
        return request.done

    # ------------------------------------------------------------ reader thread

    def apply_pending(self) -> None:
        """Put every requested plan and consent in force, in request order."""
        if not self._requests:
            return
        with self._lock:
            requests, self._requests = self._requests, []
        for request in requests:
            if request.plan is not None:
                self.plan = request.plan
                self.collector = request.plan.collector(self.consent)
                self._select(request.plan)
            if request.consent is not None:
                withdrawn = self.consent.granted - request.consent.granted
                self.consent = request.consent
                self.collector.set_consent(request.consent)
                # Samples collected before the withdrawal and not yet in a closed
                # batch must not leave either.
                self.batcher.drop(self.plan.signals_for(withdrawn))
            request.done.set_result(None)

    def process(self, frame: Frame, position: int = -1) -> list[Batch]:
        """The batches this frame closed (usually none)."""
        if self._requests:
            self.apply_pending()
        return self._one(frame, position)

    def process_chunk(self, chunk: FrameChunk, first_position: int) -> list[Batch]:
        """The batches closed by consecutive frames at positions ``first_position`` on.

        The same batches, samples and counters as :meth:`process` frame by frame.
        While the running plan sends every sample as decoded, runs of frames are
        decoded at once (:mod:`vehicle_agent.chunks`); the frames that need more
        go through :meth:`process`'s path in their place. A plan or consent
        requested meanwhile applies from the next chunk.
        """
        if self._requests:
            self.apply_pending()
        size = len(chunk)
        chunks = self._chunks
        if chunks is None:
            chunks = self._chunks = ChunkDecoder(self.decoder, self.diagnostics)
        if not size:
            return []
        if not (chunks.available and self.collector.passthrough):
            return self._each(chunk.frames(), first_position)
        singles = chunks.frame_by_frame_rows(chunk)
        plain = None
        if singles.shape[0]:
            keep = np.ones(size, dtype=np.bool_)
            keep[singles] = False
            plain = np.flatnonzero(keep)
        # Every plain frame at once: their samples do not depend on the frames
        # between them, which the per-frame path takes in order below.
        samples = chunks.decode(chunk, plain)
        stamps = microseconds(chunk.timestamp)
        # Frame objects for the per-frame rows only.
        frames = iter(chunk.frames(rows=singles) if singles.shape[0] else [])
        closed: list[Batch] = []
        start = 0
        for single in [*singles.tolist(), size]:
            if single > start:
                closed += self._run(chunk, samples, stamps, start, single, first_position)
            if single < size:
                closed += self._one(next(frames), first_position + single)
            start = single + 1
        return closed

    def _each(self, frames: list[Frame], first: int) -> list[Batch]:
        closed: list[Batch] = []
        for row, frame in enumerate(frames):
            closed += self._one(frame, first + row)
        return closed

    def _run(
        self,
        chunk: FrameChunk,
        samples: ChunkSamples,
        stamps: npt.NDArray[np.int64],
        start: int,
        stop: int,
        first: int,
    ) -> list[Batch]:
        """Batch the decoded samples of rows ``start:stop``, plain frames all."""
        tap = self.diagnostics
        if tap is not None:
            # The tap's timeouts run on CAN time, at the first frame that reaches them.
            times = chunk.timestamp
            row = start
            while row < stop:
                late = np.flatnonzero(times[row:stop] >= tap.next_expiry)
                if not late.shape[0]:
                    break
                row += int(late[0])
                tap.expire(float(times[row]))
                row += 1
        frame_row = samples.frame_row
        low, high = np.searchsorted(frame_row, (start, stop)).tolist()
        rows = frame_row[low:high]
        self.frames += stop - start
        self.collector.passed(high - low)
        return self.batcher.add_columns(
            first + start,
            stop - start,
            rows - start,
            samples.signal_index[low:high],
            stamps[rows],
            samples.value[low:high],
        )

    def _one(self, frame: Frame, position: int) -> list[Batch]:
        self.frames += 1
        tap = self.diagnostics
        if tap is not None:
            # The tap hands back what to decode: the frame itself, a whole
            # reassembled multi-frame message, or nothing (a fragment it keeps).
            whole = tap.feed(frame)
            if whole is None:
                return self.batcher.add((), position) if position >= 0 else []
            frame = whole
        return self._collect(frame, position)

    def _collect(self, frame: Frame, position: int) -> list[Batch]:
        samples = self.decoder.decode(frame)
        if not samples:
            return self.batcher.add((), position) if position >= 0 else []
        collector = self.collector
        if collector.passthrough:
            # Every sample goes out as decoded (e.g. the default plan): no policy
            # to apply, no trigger to feed.
            collector.passed(len(samples))
            return self.batcher.add_pairs(to_microseconds(frame.timestamp), samples, position)
        out = collector.process(to_microseconds(frame.timestamp), samples)
        if collector.fired:
            self._marks.extend(collector.drain_fired())
        closed = self.batcher.add(out, position)
        if closed and self._marks:
            closed[-1].triggers.extend(self._marks)
            self._marks.clear()
        return closed

    def poll(self) -> Batch | None:
        """Close the open batch if it is old enough."""
        if self._requests:
            self.apply_pending()
        return self._with_marks(self.batcher.poll())

    def flush(self) -> Batch | None:
        """Close the open batch (at the end of a source)."""
        self.apply_pending()
        return self._with_marks(self.batcher.flush())

    def drain_faults(self) -> list[FaultChange]:
        return self.diagnostics.drain_changes() if self.diagnostics is not None else []

    def _with_marks(self, batch: Batch | None) -> Batch | None:
        if batch is not None and self._marks:
            batch.triggers.extend(self._marks)
            self._marks.clear()
        return batch

    def _select(self, plan: CompiledPlan) -> None:
        self.decoder.select(plan.needed, skip_unchanged=change_only_signals(plan))
        if self._chunks is not None:
            self._chunks.refresh()
        size = len(self.decoder.catalog)
        self.batcher.priorities = [plan.priority_of.get(i, 0) for i in range(size)]


def frames_of(pipeline: Pipeline, frames: Iterable[Frame]) -> list[Batch]:
    """Run *frames* through *pipeline* and return every batch, the last one flushed."""
    batches: list[Batch] = []
    for position, frame in enumerate(frames):
        batches.extend(pipeline.process(frame, position))
    last = pipeline.flush()
    if last is not None:
        batches.append(last)
    return batches
