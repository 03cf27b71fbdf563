"""Several live CAN buses read at once, as one source of named frames.

A car has several buses (powertrain, body, chassis, diagnostics...), often on
several interfaces. :class:`MultiBusSource` opens one python-can bus per
:class:`BusConfig`, reads each on a thread of its own and hands the frames to
the consumer through one bounded queue. Every frame carries the name of the bus
it came from as :attr:`vehicle_agent.frames.Frame.channel`, which is what the
decoder routes on (:attr:`vehicle_agent.catalog.DbcSpec.channel`).

Like :mod:`vehicle_agent.sources`, this is an adapter at the edge: python-can's
types and exceptions stay in here.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import can

from vehicle_agent.errors import SourceError
from vehicle_agent.frames import Frame
from vehicle_agent.sources import _BUS_ERRORS, BusStats, _Closing, to_frame

__all__ = ["BusConfig", "BusFilter", "MultiBusSource"]

logger = logging.getLogger(__name__)

# A reader that fails waits this long before it reads again, doubling up to the
# maximum while the failures go on, so a dead interface does not spin a core.
_BACKOFF_FIRST = 0.05
_BACKOFF_MAX = 1.0


@dataclass(frozen=True, slots=True)
class BusFilter:
    """One acceptance filter, as python-can's ``can_filters`` entries.

    A frame passes when ``frame_id & can_mask == can_id & can_mask`` and, if
    ``extended`` is not ``None``, its extended flag equals ``extended``. Where the
    interface can, the hardware filters; python-can filters the rest.
    """

    can_id: int
    can_mask: int
    extended: bool | None = None


@dataclass(frozen=True, slots=True)
class BusConfig:
    """How to open one named bus.

    ``name`` is the logical bus (``"powertrain"``) and becomes every frame's
    channel; ``interface`` and ``channel`` are python-can's (``"socketcan"``,
    ``"can0"``). ``bitrate`` and ``data_bitrate`` (the CAN FD data phase) are
    passed only when set: some interfaces, SocketCAN among them, take them from
    the operating system instead. ``filters`` (``None``: every frame) limit what
    the interface delivers. ``options`` are further keyword arguments for the
    interface (a serial number, an application name...).
    """

    name: str
    interface: str
    channel: str
    bitrate: int | None = None
    fd: bool = False
    data_bitrate: int | None = None
    receive_own_messages: bool = False
    filters: tuple[BusFilter, ...] | None = None
    options: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def bus_kwargs(self) -> dict[str, Any]:
        """The keyword arguments for ``can.Bus``."""
        kwargs: dict[str, Any] = dict(self.options)
        kwargs["interface"] = self.interface
        kwargs["channel"] = self.channel
        kwargs["receive_own_messages"] = self.receive_own_messages
        if self.bitrate is not None:
            kwargs["bitrate"] = self.bitrate
        if self.fd:
            kwargs["fd"] = True
        if self.data_bitrate is not None:
            kwargs["data_bitrate"] = self.data_bitrate
        if self.filters is not None:
            kwargs["can_filters"] = [_can_filter(f) for f in self.filters]
        return kwargs


def _can_filter(spec: BusFilter) -> dict[str, int | bool]:
    entry: dict[str, int | bool] = {"can_id": spec.can_id, "can_mask": spec.can_mask}
    if spec.extended is not None:
        entry["extended"] = spec.extended
    return entry


def _describe(config: BusConfig) -> str:
    return f"bus {config.name!r} (interface {config.interface!r} channel {config.channel!r})"


class MultiBusSource(_Closing):
    """Frames from several CAN buses at once, each frame named by its bus.

    Every bus is opened in the constructor; if one fails, those already open are
    shut down and :class:`~vehicle_agent.errors.SourceError` names the bus. One
    daemon thread per bus then reads it and puts its frames, with
    ``channel=<bus name>``, on one queue of at most ``queue_frames`` frames.

    Order: frames of different buses come out in the order their readers queued
    them, which is close to arrival order but not sorted by timestamp. Each frame
    keeps the timestamp its own interface gave it; clocks of different
    interfaces need not agree.

    Loss: a reader never waits for the consumer. When the queue is full the new
    frame is dropped and counted in its bus's :attr:`stats` ``dropped``; frames
    still queued at :meth:`close` are counted as ``unread``.

    Failures: an exception from a bus's ``recv`` is counted in that bus's stats
    and logged once per kind; the reader waits a little (longer while the
    failures go on, up to a second) and reads again. A failing bus shows in
    :attr:`stats` and never stops the others.

    ``recv`` waits for the next frame of any bus; iterating yields frames until
    :meth:`close` (iteration wakes every ``poll_interval`` seconds to notice it,
    and readers wait at most that long in each ``recv`` of their bus).
    """

    def __init__(
        self,
        configs: Sequence[BusConfig],
        *,
        queue_frames: int = 65_536,
        poll_interval: float = 0.1,
    ) -> None:
        if not configs:
            raise ValueError("at least one bus is needed")
        names = [config.name for config in configs]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"bus names must be unique, repeated: {', '.join(duplicates)}")
        if queue_frames < 1:
            raise ValueError(f"queue_frames must be at least 1, not {queue_frames}")
        if not poll_interval > 0:
            raise ValueError(f"poll_interval must be positive, not {poll_interval}")
        self.configs: tuple[BusConfig, ...] = tuple(configs)
        self.poll_interval = poll_interval
        self._closed = False
        self._queue: queue.Queue[Frame] = queue.Queue(maxsize=queue_frames)
        self._stop = threading.Event()
        self.stats: dict[str, BusStats] = {name: BusStats() for name in names}
        self._buses: list[can.BusABC] = []
        try:
            for config in self.configs:
                self._buses.append(_open(config))
        except BaseException:
            self._shutdown_buses()
            raise
        self._threads = [
            threading.Thread(
                target=self._read,
                args=(config, bus),
                name=f"telehub-bus-{config.name}",
                daemon=True,  # a source nobody closed must not keep the process alive
            )
            for config, bus in zip(self.configs, self._buses, strict=True)
        ]
        try:
            for thread in self._threads:
                thread.start()
        except BaseException:  # out of threads: stop those started, shut every bus
            self.close()
            raise

    @property
    def queued(self) -> int:
        """Frames read from the buses and not yet taken by the consumer."""
        return self._queue.qsize()

    def recv(self, timeout: float) -> Frame | None:
        """Wait up to ``timeout`` seconds for a frame of any bus; ``None`` if none came."""
        if self._closed:
            raise SourceError(f"CAN buses {', '.join(self.stats)} are closed")
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def __iter__(self) -> Iterator[Frame]:
        while True:
            try:
                frame = self.recv(self.poll_interval)
            except SourceError:  # closed, before or while waiting: the end
                return
            if frame is not None:
                yield frame

    # ------------------------------------------------------------ reader threads

    def _read(self, config: BusConfig, bus: can.BusABC) -> None:
        name = config.name
        stats = self.stats[name]
        stop = self._stop
        put = self._queue.put_nowait
        timeout = self.poll_interval
        logged: set[type[BaseException]] = set()
        backoff = _BACKOFF_FIRST
        while not stop.is_set():
            try:
                msg = bus.recv(timeout)
            except Exception as exc:  # any backend failure: count, wait, retry
                if stop.is_set():  # the bus was shut down under us: the end
                    return
                stats.errors += 1
                stats.consecutive_errors += 1
                stats.last_error = f"{type(exc).__name__}: {exc}"
                if type(exc) not in logged:
                    logged.add(type(exc))
                    # Known kinds (a bus-off, a driver error) get one line; anything
                    # else may be a backend bug and gets its traceback, once.
                    logger.warning(
                        "cannot read %s: %s; retrying (further %s errors are only counted)",
                        _describe(config),
                        stats.last_error,
                        type(exc).__name__,
                        exc_info=not isinstance(exc, _BUS_ERRORS),
                    )
                stop.wait(backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX)
                continue
            stats.consecutive_errors = 0
            backoff = _BACKOFF_FIRST
            if msg is None:
                continue
            try:
                put(to_frame(msg, name))
            except queue.Full:
                stats.dropped += 1
            # Counted last, so a reader of the stats never sees a frame that is
            # neither queued nor counted as dropped.
            stats.frames += 1

    # ------------------------------------------------------------ closing

    def _release(self) -> None:
        self._stop.set()
        # Readers notice the stop within one poll; a backend stuck in recv longer
        # than its timeout is woken by the shutdown below instead.
        started = [thread for thread in self._threads if thread.ident is not None]
        for thread in started:
            thread.join(timeout=self.poll_interval + 1.0)
        self._shutdown_buses()
        for thread in started:
            thread.join(timeout=1.0)
            if thread.is_alive():
                logger.warning("reader thread %s did not stop", thread.name)
        self._count_unread()

    def _shutdown_buses(self) -> None:
        for bus, config in zip(self._buses, self.configs, strict=False):
            try:
                bus.shutdown()
            except Exception as exc:  # shut the others down regardless
                logger.warning(
                    "cannot shut down %s: %s: %s", _describe(config), type(exc).__name__, exc
                )
        self._buses.clear()

    def _count_unread(self) -> None:
        while True:
            try:
                frame = self._queue.get_nowait()
            except queue.Empty:
                return
            if frame.channel is not None:
                self.stats[frame.channel].unread += 1


def _open(config: BusConfig) -> can.BusABC:
    try:
        return can.Bus(**config.bus_kwargs())
    except _BUS_ERRORS as exc:
        raise SourceError(
            f"cannot open CAN {_describe(config)}: {type(exc).__name__}: {exc}"
        ) from exc
