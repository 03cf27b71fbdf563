"""Virtual vehicles on real gRPC streams: hello, paced batches, acknowledgements timed.

Each vehicle opens one ``Connect`` stream (as the agent does), sends its hello,
waits for the welcome, then sends batches from its :class:`VehicleFeed` with at
most ``window`` of them unacknowledged; the time from writing a batch to
reading its ack is its ack latency. A shared :class:`Pacer` spreads the
fleet's batches evenly over time to hold a total rate in samples per second
(none: as fast as the acks come back). Vehicles share a few gRPC channels (one
TCP connection each), as many cars share a load balancer's connections.

A run ends after ``duration`` seconds or ``batches`` per vehicle; every
vehicle then waits (up to ``drain_timeout``) for the acks of what it sent, so
every sample counted as sent is either acknowledged or counted as lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from array import array
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import grpc

from telehub.v1 import telemetry_pb2 as pb
from tools.simulate.fleet import VehicleFeed
from vehicle_agent.uplink import CONNECT_METHOD

__all__ = ["FleetStats", "Pacer", "SimVehicle", "run_fleet"]

if TYPE_CHECKING:
    _Call = grpc.aio.StreamStreamCall[bytes, pb.CloudMessage]
#: Latencies kept per run; a longer run keeps counting but stops recording.
_MAX_LATENCIES = 2_000_000


@dataclass(frozen=True, slots=True)
class SimVehicle:
    vehicle_id: str
    token: str
    hello: bytes
    feed: VehicleFeed


@dataclass(slots=True)
class FleetStats:
    """What a fleet run did; latencies in milliseconds, in ack order."""

    connected: int = 0
    batches_sent: int = 0
    samples_sent: int = 0
    batches_acked: int = 0
    samples_acked: int = 0
    duplicates: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    #: The first reason given for each kind of error, for the summary.
    reasons: dict[str, str] = field(default_factory=dict)
    latencies_ms: array[float] = field(default_factory=lambda: array("d"))
    wall_seconds: float = 0.0

    def fail(self, kind: str, reason: str = "") -> None:
        self.errors[kind] += 1
        self.reasons.setdefault(kind, reason)

    def record(self, latency_ms: float) -> None:
        if len(self.latencies_ms) < _MAX_LATENCIES:
            self.latencies_ms.append(latency_ms)

    @property
    def samples_per_s(self) -> float:
        return self.samples_acked / self.wall_seconds if self.wall_seconds > 0 else 0.0

    def percentile_ms(self, q: float) -> float | None:
        """The nearest-rank *q*-th percentile (0 < q ≤ 100) of the ack latencies."""
        if not self.latencies_ms:
            return None
        ordered = sorted(self.latencies_ms)
        rank = max(1, -(-len(ordered) * q // 100))
        return ordered[int(rank) - 1]


class Pacer:
    """A fleet-wide rate in samples per second: each batch waits for its turn."""

    def __init__(self, samples_per_s: float | None) -> None:
        if samples_per_s is not None and samples_per_s <= 0:
            raise ValueError(f"rate must be positive, got {samples_per_s}")
        self._rate = samples_per_s
        self._next = 0.0

    async def wait(self, samples: int) -> None:
        if self._rate is None:
            return
        now = time.perf_counter()
        # A pacer that fell behind does not burst to catch up beyond one batch.
        turn = max(self._next, now)
        self._next = turn + samples / self._rate
        if turn > now:
            await asyncio.sleep(turn - now)


async def run_fleet(
    target: str,
    vehicles: Sequence[SimVehicle],
    *,
    samples_per_s: float | None = None,
    duration: float | None = None,
    batches: int | None = None,
    window: int = 1,
    vehicles_per_channel: int = 250,
    handshakes: int = 200,
    drain_timeout: float = 30.0,
    on_progress: Callable[[FleetStats], None] | None = None,
    stop_when: Callable[[FleetStats], bool] | None = None,
) -> FleetStats:
    """Stream *vehicles* to the gateway at *target*; see the module docstring.

    ``batches=0`` only connects: every vehicle says hello and holds its stream
    open until the run ends (how many streams a gateway holds). ``stop_when``
    ends the run early, checked with ``on_progress`` twice a second. At most
    ``handshakes`` vehicles wait for their welcome at once: a fleet connects
    as a ramp, not as one burst of thousands of calls the gateway has not
    taken up yet (which gRPC refuses beyond its pending-call limit).
    """
    if duration is None and batches is None:
        raise ValueError("a fleet run needs a duration or a batch count")
    if window < 1:
        raise ValueError(f"window must be at least 1, got {window}")
    stats = FleetStats()
    pacer = Pacer(samples_per_s)
    stop = asyncio.Event()
    ramp = asyncio.Semaphore(handshakes)
    groups = [
        vehicles[i : i + vehicles_per_channel]
        for i in range(0, len(vehicles), vehicles_per_channel)
    ]
    # A channel of its own per group: without a local subchannel pool, channels
    # to the same target share one connection.
    options = [("grpc.use_local_subchannel_pool", 1)]
    channels = [grpc.aio.insecure_channel(target, options=options) for _ in groups]
    started = time.perf_counter()
    try:
        async with asyncio.TaskGroup() as tasks:
            running = [
                tasks.create_task(
                    _vehicle(
                        channel, vehicle, pacer, stats, stop, ramp, window, batches, drain_timeout
                    )
                )
                for channel, group in zip(channels, groups, strict=True)
                for vehicle in group
            ]
            tasks.create_task(_clock(stop, duration, stats, on_progress, stop_when))
            tasks.create_task(_stop_when_done(running, stop))
    finally:
        stats.wall_seconds = time.perf_counter() - started
        for channel in channels:
            await channel.close(None)
    return stats


async def _clock(
    stop: asyncio.Event,
    duration: float | None,
    stats: FleetStats,
    on_progress: Callable[[FleetStats], None] | None,
    stop_when: Callable[[FleetStats], bool] | None,
) -> None:
    deadline = None if duration is None else time.perf_counter() + duration
    while not stop.is_set():
        left = 0.5 if deadline is None else min(0.5, deadline - time.perf_counter())
        if left <= 0:
            stop.set()
            break
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=left)
        if on_progress is not None:
            on_progress(stats)
        if stop_when is not None and stop_when(stats):
            stop.set()


async def _stop_when_done(running: list[asyncio.Task[None]], stop: asyncio.Event) -> None:
    # Every vehicle done (its batches sent, or its stream failed): the run is over.
    await asyncio.wait(running)
    stop.set()


async def _vehicle(
    channel: grpc.aio.Channel,
    vehicle: SimVehicle,
    pacer: Pacer,
    stats: FleetStats,
    stop: asyncio.Event,
    ramp: asyncio.Semaphore,
    window: int,
    batches: int | None,
    drain_timeout: float,
) -> None:
    async with ramp:
        if stop.is_set():
            return
        call = await _connect(channel, vehicle, stats)
    if call is None:
        return
    flight = _InFlight(window)
    try:
        async with asyncio.TaskGroup() as tasks:
            reader = tasks.create_task(_acks(call, flight, stats))
            await _send(call, vehicle.feed, pacer, stats, stop, flight, batches)
            if batches == 0:
                await stop.wait()  # only hold the stream open
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(drain_timeout):
                    await flight.drained()
            for _ in flight.sent:
                stats.fail("unacknowledged", f"no ack within {drain_timeout:g} s")
            await call.done_writing()
            await reader
    except* grpc.aio.AioRpcError as group:
        _failed(stats, group.exceptions)
    finally:
        call.cancel()


def _failed(stats: FleetStats, errors: Sequence[BaseException]) -> None:
    for exc in errors:
        assert isinstance(exc, grpc.aio.AioRpcError)
        stats.fail(exc.code().name, exc.details() or "")


async def _connect(
    channel: grpc.aio.Channel, vehicle: SimVehicle, stats: FleetStats
) -> _Call | None:
    """The vehicle's stream after its hello was welcomed; None (counted) if it was not."""
    connect = channel.stream_stream(
        CONNECT_METHOD,
        request_serializer=_as_is,
        response_deserializer=pb.CloudMessage.FromString,
    )
    call: _Call = connect(None, metadata=(("authorization", f"Bearer {vehicle.token}"),))
    try:
        await call.write(vehicle.hello)
        welcome = await call.read()
    except grpc.aio.AioRpcError as exc:
        _failed(stats, [exc])
        call.cancel()
        return None
    if not isinstance(welcome, pb.CloudMessage) or not welcome.HasField("welcome"):
        stats.fail("no welcome", f"the gateway answered {welcome!r} to the hello")
        call.cancel()
        return None
    stats.connected += 1
    # A vehicle simulated before goes on after what the store already holds.
    vehicle.feed.sequence = max(vehicle.feed.sequence, welcome.welcome.last_stored_sequence)
    return call


def _as_is(message: bytes) -> bytes:
    return message


class _InFlight:
    """A vehicle's unacknowledged batches: at most ``window`` of them, awaited without polling."""

    def __init__(self, window: int) -> None:
        self.window = window
        self.sent: dict[int, tuple[float, int]] = {}
        self.ended = False
        self._changed = asyncio.Condition()

    async def reserve(self) -> bool:
        """Wait for room for one more batch; False once the stream has ended."""
        async with self._changed:
            await self._changed.wait_for(lambda: self.ended or len(self.sent) < self.window)
            return not self.ended

    async def acked(self, sequence: int) -> tuple[float, int] | None:
        async with self._changed:
            entry = self.sent.pop(sequence, None)
            self._changed.notify_all()
            return entry

    async def end(self) -> None:
        async with self._changed:
            self.ended = True
            self._changed.notify_all()

    async def drained(self) -> None:
        """Wait for every ack, or the stream's end."""
        async with self._changed:
            await self._changed.wait_for(lambda: self.ended or not self.sent)


async def _send(
    call: _Call,
    feed: VehicleFeed,
    pacer: Pacer,
    stats: FleetStats,
    stop: asyncio.Event,
    flight: _InFlight,
    batches: int | None,
) -> None:
    count = 0
    while not stop.is_set() and (batches is None or count < batches):
        if not await flight.reserve():
            return
        sequence, samples, payload = feed.next_batch()
        await pacer.wait(samples)
        flight.sent[sequence] = (time.perf_counter(), samples)
        await call.write(payload)
        stats.batches_sent += 1
        stats.samples_sent += samples
        count += 1


async def _acks(call: _Call, flight: _InFlight, stats: FleetStats) -> None:
    try:
        while True:
            message = await call.read()
            if not isinstance(message, pb.CloudMessage):  # the stream ended
                return
            kind = message.WhichOneof("body")
            if kind == "ack":
                entry = await flight.acked(message.ack.sequence)
                if entry is None:
                    continue
                sent, samples = entry
                stats.record((time.perf_counter() - sent) * 1e3)
                stats.batches_acked += 1
                stats.samples_acked += samples
                stats.duplicates += message.ack.duplicate
            elif kind == "error":
                stats.fail(f"gateway error {message.error.code}", message.error.reason)
    finally:
        await flight.end()
