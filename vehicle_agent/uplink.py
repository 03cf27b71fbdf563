"""The vehicle's gRPC session with the cloud gateway.

One long-lived bidirectional stream: a Hello first, then every pending batch in
sequence order (the pending queue numbered each batch once, durably), each kept
until the cloud acknowledges it; pending fault-code reports; the plan status;
and a health report every ``health_interval`` seconds. The cloud pushes
collection plans and consent on the same stream; the uplink hands them to the
:class:`Control` (the agent), which applies them and says which plan runs.
When the stream breaks the uplink reconnects with exponential backoff and full
jitter, and resends everything still unacknowledged; the cloud stores each
sequence once, so resending is safe.

Errors: a refused credential or an unknown vehicle (``UNAUTHENTICATED``,
``PERMISSION_DENIED``, ``NOT_FOUND``) ends :meth:`Uplink.run` with
:class:`~vehicle_agent.errors.UplinkError`: retrying cannot fix them. A batch the
cloud rejects for good (invalid or too large) is removed from the queue and
counted. Anything else is retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import grpc

from telehub.v1 import telemetry_pb2 as pb
from vehicle_agent import wire
from vehicle_agent.catalog import Catalog
from vehicle_agent.errors import UplinkError
from vehicle_agent.pending import PendingQueue

if TYPE_CHECKING:
    _Call = grpc.aio.StreamStreamCall[pb.VehicleMessage | bytes, pb.CloudMessage]

#: The gateway's one RPC (telehub.v1.TelemetryGateway/Connect).
CONNECT_METHOD = "/telehub.v1.TelemetryGateway/Connect"


def _serialize(message: pb.VehicleMessage | bytes) -> bytes:
    # Telemetry batches arrive already serialized (wire.telemetry_bytes encodes
    # their columns with numpy); every other message is serialized here.
    return message if isinstance(message, bytes) else message.SerializeToString()


log = logging.getLogger(__name__)

FATAL_CODES = frozenset(
    {grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.NOT_FOUND}
)
# Codes with which the gateway refuses one batch for good (it names the batch first).
BATCH_REJECTED_CODES = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.OUT_OF_RANGE,
    }
)


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with full jitter: delay n is uniform in [0, min(cap, initial·mᵏ)]."""

    initial: float = 0.2
    maximum: float = 30.0
    multiplier: float = 2.0

    def delays(self, rng: random.Random | None = None) -> Iterator[float]:
        rng = rng or random.Random()
        ceiling = self.initial
        while True:
            yield rng.uniform(0, ceiling)
            ceiling = min(self.maximum, ceiling * self.multiplier)


class Control(Protocol):
    """The agent's side of the control messages the cloud pushes."""

    def versions(self) -> tuple[int, int]:
        """(plan version, consent version) the agent runs, for the Hello."""
        ...

    async def on_plan(self, plan: pb.CollectionPlan) -> None:
        """Apply a plan, or record why it was rejected (never raises for a bad plan)."""
        ...

    async def on_consent(self, consent: pb.ConsentUpdate) -> None: ...

    def plan_status(self) -> pb.PlanStatus: ...

    def health(self) -> pb.AgentHealth: ...


@dataclass(slots=True)
class UplinkStats:
    sessions: int = 0
    reconnects: int = 0
    batches_sent: int = 0
    samples_sent: int = 0
    batches_resent: int = 0
    duplicates: int = 0
    reports_sent: int = 0
    health_sent: int = 0
    plans_received: int = 0
    consents_received: int = 0
    last_error: str = ""
    ack_latency_ms: deque[float] = field(default_factory=lambda: deque(maxlen=10_000))


_CODES = {code.value[0]: code for code in grpc.StatusCode}

# What a write raises once the call has ended: the status, or grpc.aio's "RPC
# already finished" when the end raced the write. Either way the receive loop
# reads why the stream ended.
_WRITE_ENDED = (grpc.aio.AioRpcError, asyncio.InvalidStateError)


def _status_code(number: int) -> grpc.StatusCode:
    return _CODES.get(number, grpc.StatusCode.UNKNOWN)


class _SessionEnded(Exception):
    """The stream ended; carries the status the gateway gave, if any."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details


class Uplink:
    """Streams the batches of *queue* to the gateway at *target* until cancelled."""

    def __init__(
        self,
        target: str,
        token: str,
        vehicle_id: str,
        catalog: Catalog,
        queue: PendingQueue,
        *,
        agent_version: str,
        control: Control | None = None,
        backoff: Backoff | None = None,
        window: int = 8,
        compression: bool = True,
        health_interval: float = 30.0,
    ) -> None:
        self.target = target
        self.vehicle_id = vehicle_id
        self.catalog = catalog
        self.queue = queue
        self.control = control
        self.stats = UplinkStats()
        self.connected = asyncio.Event()
        self._token = token
        self._agent_version = agent_version
        self._backoff = backoff or Backoff()
        self._window = window
        self._health_interval = health_interval
        self._compression = grpc.Compression.Gzip if compression else grpc.Compression.NoCompression
        self._last_acked = 0
        self._highest_sent = 0
        self._sent_at: dict[int, float] = {}
        self._window_free = asyncio.Condition()
        self._reports_ready = asyncio.Event()
        self._report_acked = asyncio.Condition()
        self._write_lock = asyncio.Lock()

    def reports_ready(self) -> None:
        """Tell the uplink new reports are pending (call on the event loop)."""
        self._reports_ready.set()

    async def wait_reports_acked(self) -> None:
        """Return once no report is pending in the queue."""
        while await self.queue.pending_reports():
            async with self._report_acked:
                # Re-checked at every acknowledgement; the timeout covers a report
                # put between the check and the wait.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._report_acked.wait(), timeout=1.0)

    @property
    def last_acked_sequence(self) -> int:
        return self._last_acked

    async def run(self) -> None:
        """Keep a session open, reconnecting with backoff; return only by cancellation."""
        delays = self._backoff.delays()
        while True:
            try:
                await self._session()
            except _SessionEnded as ended:
                self.stats.last_error = str(ended)
                if ended.code in FATAL_CODES:
                    raise UplinkError(
                        f"gateway {self.target} refused vehicle {self.vehicle_id!r}: "
                        f"{ended.code.name}: {ended.details}"
                    ) from None
                if self.connected.is_set():
                    delays = self._backoff.delays()  # a session that got going resets the backoff
            finally:
                self.connected.clear()
            self.stats.reconnects += 1
            delay = next(delays)
            log.warning(
                "uplink to %s ended (%s); retrying in %.2fs",
                self.target,
                self.stats.last_error,
                delay,
            )
            await asyncio.sleep(delay)

    async def _session(self) -> None:
        metadata = (("authorization", f"Bearer {self._token}"),)
        async with grpc.aio.insecure_channel(self.target, compression=self._compression) as channel:
            connect = channel.stream_stream(
                CONNECT_METHOD,
                request_serializer=_serialize,
                response_deserializer=pb.CloudMessage.FromString,
            )
            # No request iterator: the call is driven with write()/read().
            call: _Call = connect(None, metadata=metadata)
            try:
                await self._handshake(call)
                async with asyncio.TaskGroup() as tasks:
                    tasks.create_task(self._send_loop(call))
                    tasks.create_task(self._receive_loop(call))
                    tasks.create_task(self._report_loop(call))
                    if self.control is not None:
                        tasks.create_task(self._health_loop(call))
            except* grpc.aio.AioRpcError as group:
                err = group.exceptions[0]
                assert isinstance(err, grpc.aio.AioRpcError)
                raise _SessionEnded(err.code(), err.details() or "") from None
            except* _SessionEnded as group:
                ended = group.exceptions[0]
                assert isinstance(ended, _SessionEnded)
                raise ended from None
            except* asyncio.InvalidStateError:
                # A handshake write raced the end of the call: ask the call why.
                raise await self._ended(call) from None
            finally:
                call.cancel()
                self._sent_at.clear()

    async def _write(self, call: _Call, message: pb.VehicleMessage | bytes) -> None:
        # grpc.aio allows one write at a time; several loops share the stream.
        async with self._write_lock:
            await call.write(message)

    async def _handshake(self, call: _Call) -> None:
        plan_version, consent_version = (
            self.control.versions() if self.control is not None else (0, 0)
        )
        await call.write(
            wire.hello(
                self.vehicle_id,
                self._agent_version,
                self.catalog,
                self._last_acked,
                plan_version=plan_version,
                consent_version=consent_version,
            )
        )
        reply = await call.read()
        if not isinstance(reply, pb.CloudMessage):  # grpc.aio.EOF: the stream ended
            raise await self._ended(call)
        kind = reply.WhichOneof("body")
        if kind == "error":
            raise _SessionEnded(_status_code(reply.error.code), reply.error.reason)
        if kind != "welcome":
            raise _SessionEnded(grpc.StatusCode.INTERNAL, f"gateway answered Hello with {kind}")
        stored = reply.welcome.last_stored_sequence
        self._last_acked = max(self._last_acked, stored)
        await self.queue.on_welcome(stored)
        if self.control is not None:
            await call.write(pb.VehicleMessage(plan_status=self.control.plan_status()))
        self.stats.sessions += 1
        self.connected.set()

    async def _send_loop(self, call: _Call) -> None:
        last = 0
        while True:
            async with self._window_free:
                await self._window_free.wait_for(lambda: len(self._sent_at) < self._window)
            batch = await self.queue.next_after(last)
            last = batch.sequence
            if last <= self._highest_sent:
                self.stats.batches_resent += 1
            self._highest_sent = max(self._highest_sent, last)
            self._sent_at[last] = time.monotonic()
            try:
                await self._write(call, wire.telemetry_bytes(batch))
            except _WRITE_ENDED:
                return  # the stream has ended; the receive loop reads why
            self.stats.batches_sent += 1
            self.stats.samples_sent += len(batch)

    async def _report_loop(self, call: _Call) -> None:
        # Every pending report goes out on each new stream; later ones when they come.
        sent: set[int] = set()
        while True:
            self._reports_ready.clear()
            for report in await self.queue.pending_reports():
                if report.report_id in sent:
                    continue
                try:
                    await self._write(call, wire.fault_report(report.report_id, report.payload))
                except _WRITE_ENDED:
                    return
                sent.add(report.report_id)
                self.stats.reports_sent += 1
            await self._reports_ready.wait()

    async def _health_loop(self, call: _Call) -> None:
        assert self.control is not None
        while True:
            await asyncio.sleep(self._health_interval)
            try:
                await self._write(call, pb.VehicleMessage(health=self.control.health()))
            except _WRITE_ENDED:
                return
            self.stats.health_sent += 1

    async def _on_control(self, call: _Call, reply: pb.CloudMessage, kind: str | None) -> None:
        control = self.control
        if control is None:
            log.debug("no control handler: ignoring %s", kind)
            return
        if kind == "plan":
            self.stats.plans_received += 1
            await control.on_plan(reply.plan)
        else:
            self.stats.consents_received += 1
            await control.on_consent(reply.consent)
        # If the stream has ended, the status goes out after the next Welcome.
        with contextlib.suppress(*_WRITE_ENDED):
            await self._write(call, pb.VehicleMessage(plan_status=control.plan_status()))

    async def _receive_loop(self, call: _Call) -> None:
        error: pb.Error | None = None
        while True:
            try:
                reply = await call.read()
            except grpc.aio.AioRpcError as err:
                ended = _SessionEnded(err.code(), err.details() or "")
                break
            if not isinstance(reply, pb.CloudMessage):  # grpc.aio.EOF: the stream ended
                ended = await self._ended(call)
                break
            kind = reply.WhichOneof("body")
            if kind == "ack":
                await self._on_ack(reply.ack)
            elif kind == "report_ack":
                await self.queue.ack_report(reply.report_ack.report_id)
                async with self._report_acked:
                    self._report_acked.notify_all()
            elif kind in ("plan", "consent"):
                await self._on_control(call, reply, kind)
            elif kind == "error":
                error = reply.error
            else:
                log.debug("ignoring cloud message %s", kind)
        if error is not None:
            # The gateway says why before it ends the call; trust its words over the
            # final status, which grpc.aio turns into INTERNAL when we were still writing.
            ended = _SessionEnded(_status_code(error.code), error.reason)
            if error.sequence and ended.code in BATCH_REJECTED_CODES:
                batch = await self.queue.reject(error.sequence)
                log.error(
                    "gateway rejected batch %d (%d samples) for good: %s",
                    error.sequence,
                    len(batch) if batch else 0,
                    error.reason,
                )
        raise ended

    async def _on_ack(self, ack: pb.Ack) -> None:
        sent = self._sent_at.pop(ack.sequence, None)
        if sent is not None:
            self.stats.ack_latency_ms.append((time.monotonic() - sent) * 1000)
        if ack.duplicate:
            self.stats.duplicates += 1
        self._last_acked = max(self._last_acked, ack.sequence)
        await self.queue.ack(ack.sequence)
        async with self._window_free:
            self._window_free.notify_all()

    @staticmethod
    async def _ended(call: _Call) -> _SessionEnded:
        return _SessionEnded(await call.code(), await call.details() or "")
