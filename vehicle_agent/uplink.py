"""The vehicle's gRPC session with the cloud gateway.

One long-lived bidirectional stream: a Hello first, then every buffered batch in
order, each numbered once with the vehicle's next sequence and kept in the buffer
until the cloud acknowledges it. When the stream breaks the uplink reconnects
with exponential backoff and full jitter, and resends every batch that is still
unacknowledged; the cloud stores each sequence once, so resending is safe.

Errors: a refused credential or an unknown vehicle (``UNAUTHENTICATED``,
``PERMISSION_DENIED``, ``NOT_FOUND``) ends :meth:`Uplink.run` with
:class:`~vehicle_agent.errors.UplinkError`: retrying cannot fix them. A batch the
cloud rejects for good (invalid or too large) is removed from the buffer and
counted. Anything else is retried.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import grpc

from telehub.v1 import telemetry_pb2 as pb
from telehub.v1 import telemetry_pb2_grpc as pb_grpc
from vehicle_agent import wire
from vehicle_agent.buffer import BatchBuffer
from vehicle_agent.catalog import Catalog
from vehicle_agent.errors import UplinkError

if TYPE_CHECKING:
    _Call = grpc.aio.StreamStreamCall[pb.VehicleMessage, pb.CloudMessage]

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


@dataclass(slots=True)
class UplinkStats:
    sessions: int = 0
    reconnects: int = 0
    batches_sent: int = 0
    samples_sent: int = 0
    batches_resent: int = 0
    duplicates: int = 0
    last_error: str = ""
    ack_latency_ms: deque[float] = field(default_factory=lambda: deque(maxlen=10_000))


_CODES = {code.value[0]: code for code in grpc.StatusCode}


def _status_code(number: int) -> grpc.StatusCode:
    return _CODES.get(number, grpc.StatusCode.UNKNOWN)


class _SessionEnded(Exception):
    """The stream ended; carries the status the gateway gave, if any."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details


class Uplink:
    """Streams the batches of *buffer* to the gateway at *target* until cancelled."""

    def __init__(
        self,
        target: str,
        token: str,
        vehicle_id: str,
        catalog: Catalog,
        buffer: BatchBuffer,
        *,
        agent_version: str,
        backoff: Backoff | None = None,
        window: int = 8,
        compression: bool = True,
    ) -> None:
        self.target = target
        self.vehicle_id = vehicle_id
        self.catalog = catalog
        self.buffer = buffer
        self.stats = UplinkStats()
        self.connected = asyncio.Event()
        self._token = token
        self._agent_version = agent_version
        self._backoff = backoff or Backoff()
        self._window = window
        self._compression = grpc.Compression.Gzip if compression else grpc.Compression.NoCompression
        self._next_sequence = 1
        self._last_acked = 0
        self._sent_at: dict[int, float] = {}
        self._window_free = asyncio.Condition()

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
            stub = pb_grpc.TelemetryGatewayStub(channel)
            # No request iterator: the call is driven with write()/read().
            call = stub.Connect(None, metadata=metadata)
            try:
                await self._handshake(call)
                async with asyncio.TaskGroup() as tasks:
                    tasks.create_task(self._send_loop(call))
                    tasks.create_task(self._receive_loop(call))
            except* grpc.aio.AioRpcError as group:
                err = group.exceptions[0]
                assert isinstance(err, grpc.aio.AioRpcError)
                raise _SessionEnded(err.code(), err.details() or "") from None
            except* _SessionEnded as group:
                ended = group.exceptions[0]
                assert isinstance(ended, _SessionEnded)
                raise ended from None
            finally:
                call.cancel()
                self._sent_at.clear()

    async def _handshake(self, call: _Call) -> None:
        await call.write(
            wire.hello(self.vehicle_id, self._agent_version, self.catalog, self._last_acked)
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
        self._next_sequence = max(self._next_sequence, stored + 1)
        self._last_acked = max(self._last_acked, stored)
        await self.buffer.ack_through(stored)
        self.stats.sessions += 1
        self.connected.set()

    async def _send_loop(self, call: _Call) -> None:
        key = 0
        while True:
            async with self._window_free:
                await self._window_free.wait_for(lambda: len(self._sent_at) < self._window)
            key, batch = await self.buffer.next_after(key)
            if batch.sequence == 0:
                batch.sequence = self._next_sequence
                self._next_sequence += 1
            else:
                self.stats.batches_resent += 1
            self._sent_at[batch.sequence] = time.monotonic()
            try:
                await call.write(wire.telemetry(batch))
            except grpc.aio.AioRpcError:
                return  # the stream has ended; the receive loop reads why
            self.stats.batches_sent += 1
            self.stats.samples_sent += len(batch)

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
            elif kind == "error":
                error = reply.error
            else:
                log.debug("ignoring cloud message %s", kind)
        if error is not None:
            # The gateway says why before it ends the call; trust its words over the
            # final status, which grpc.aio turns into INTERNAL when we were still writing.
            ended = _SessionEnded(_status_code(error.code), error.reason)
            if error.sequence and ended.code in BATCH_REJECTED_CODES:
                batch = await self.buffer.reject(error.sequence)
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
        await self.buffer.ack(ack.sequence)
        async with self._window_free:
            self._window_free.notify_all()

    @staticmethod
    async def _ended(call: _Call) -> _SessionEnded:
        return _SessionEnded(await call.code(), await call.details() or "")
