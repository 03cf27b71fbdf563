"""Several buses in one source: named frames, CAN FD flags, the bounded queue, failing
buses, the lifecycle, multi-channel logs, and decoding each bus with its own DBC.

Live buses are python-can's in-process virtual interface; a failing bus is a
virtual bus whose reads fail, registered as a python-can backend."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import can
import can.interfaces
import can.util
import cantools.database
import pytest
from can.interfaces import virtual

from vehicle_agent.buses import BusConfig, BusFilter, MultiBusSource
from vehicle_agent.catalog import DbcSpec
from vehicle_agent.decoding import Decoder
from vehicle_agent.errors import SourceError
from vehicle_agent.frames import Frame
from vehicle_agent.sources import BusSource, LiveSource, LogSource, to_frame

ROOT = Path(__file__).resolve().parents[2]
LOG_DIR = ROOT / "tests" / "data" / "python-can-logs"
DBC_DIR = ROOT / "tests" / "data" / "cantools-dbc"

FLAKY = "telehub-test-flaky"


class FlakyBus(virtual.VirtualBus):
    """A virtual bus whose every read fails, as a bus-off interface would."""

    def _recv_internal(self, timeout: float | None) -> tuple[can.Message | None, bool]:
        raise can.CanOperationError("bus off")


@pytest.fixture
def flaky_backend(monkeypatch: pytest.MonkeyPatch) -> str:
    """Register :class:`FlakyBus` as a python-can interface for this test.

    python-can keeps its interfaces in a table and checks names against a set
    made from it at import time; both learn the new name.
    """
    monkeypatch.setitem(can.interfaces.BACKENDS, FLAKY, (__name__, "FlakyBus"))
    monkeypatch.setattr(can.util, "VALID_INTERFACES", can.interfaces.VALID_INTERFACES | {FLAKY})
    return FLAKY


def _channel() -> str:
    # A channel of its own per bus and test: virtual buses with one name share frames.
    return f"telehub-test-{uuid.uuid4().hex}"


def _config(name: str, **kwargs: Any) -> BusConfig:
    return BusConfig(name=name, interface="virtual", channel=_channel(), **kwargs)


def _wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def _recv_n(source: LiveSource, count: int) -> list[Frame]:
    frames: list[Frame] = []
    for _ in range(count):
        frame = source.recv(timeout=2.0)
        assert frame is not None, f"only {len(frames)} of {count} frames arrived"
        frames.append(frame)
    return frames


@pytest.fixture
def open_buses() -> Iterator[Callable[..., MultiBusSource]]:
    """Open MultiBusSources; fail the test if one, a reader thread or a bus is left open."""
    threads_before = set(threading.enumerate())
    opened: list[MultiBusSource] = []

    def open_(configs: list[BusConfig], **kwargs: Any) -> MultiBusSource:
        source = MultiBusSource(configs, **kwargs)
        opened.append(source)
        return source

    yield open_
    leaked = [source for source in opened if not source.closed]
    for source in leaked:
        source.close()
    assert not leaked, f"{len(leaked)} MultiBusSource(s) left open"
    assert set(threading.enumerate()) <= threads_before
    channels = {config.channel for source in opened for config in source.configs}
    with virtual.channels_lock:
        assert not channels & set(virtual.channels), "a bus was not shut down"


@pytest.fixture
def senders() -> Iterator[Callable[[BusConfig], can.BusABC]]:
    """Open a sending virtual bus on a config's channel; all are shut down afterwards."""
    opened: list[can.BusABC] = []

    def open_(config: BusConfig) -> can.BusABC:
        bus = can.Bus(interface="virtual", channel=config.channel, preserve_timestamps=True)
        opened.append(bus)
        return bus

    yield open_
    for bus in opened:
        bus.shutdown()


def _classic(i: int) -> can.Message:
    return can.Message(
        timestamp=1000.0 + i / 8,
        arbitration_id=0x100 + i,
        data=bytes([i] * 8),
        is_extended_id=False,
    )


def _fd(i: int) -> can.Message:
    return can.Message(
        timestamp=2000.0 + i / 8,
        arbitration_id=0x18DA00F1 + i,
        data=bytes((i + k) % 256 for k in range(64)),
        is_fd=True,
        bitrate_switch=True,
        error_state_indicator=i % 2 == 1,
    )


# ---------------------------------------------------------------- frames


def test_frames_arrive_named_by_their_bus(
    open_buses: Callable[..., MultiBusSource], senders: Callable[[BusConfig], can.BusABC]
) -> None:
    powertrain = _config("powertrain", bitrate=500_000)
    body = _config("body", bitrate=500_000, fd=True, data_bitrate=2_000_000)
    chassis = _config("chassis")
    sent: dict[str, list[can.Message]] = {
        "powertrain": [_classic(i) for i in range(5)],
        "body": [_fd(i) for i in range(5)],
        "chassis": [
            can.Message(timestamp=3000.0, arbitration_id=0x7FF, is_remote_frame=True, dlc=4),
            can.Message(timestamp=3000.5, arbitration_id=0, is_error_frame=True),
            can.Message(timestamp=3001.0, arbitration_id=0x123, data=b"", is_extended_id=False),
        ],
    }
    with open_buses([powertrain, body, chassis]) as source:
        for config in (powertrain, body, chassis):
            bus = senders(config)
            for msg in sent[config.name]:
                bus.send(msg)
        frames = _recv_n(source, sum(len(msgs) for msgs in sent.values()))
        assert source.recv(timeout=0.05) is None
        for name, msgs in sent.items():
            # Each bus keeps its order and its own timestamps.
            assert [f for f in frames if f.channel == name] == [to_frame(m, name) for m in msgs]
        assert {name: stats.frames for name, stats in source.stats.items()} == {
            "powertrain": 5,
            "body": 5,
            "chassis": 3,
        }
        assert all(s.dropped == s.errors == 0 for s in source.stats.values())
    body_frames = [f for f in frames if f.channel == "body"]
    assert all(f.is_fd and f.bitrate_switch and len(f.data) == 64 for f in body_frames)
    assert [f.error_state_indicator for f in body_frames] == [False, True, False, True, False]
    assert body_frames[2].data == bytes(range(2, 66))
    assert body_frames[2].timestamp == 2000.25


def test_filters_limit_what_a_bus_delivers(
    open_buses: Callable[..., MultiBusSource], senders: Callable[[BusConfig], can.BusABC]
) -> None:
    filtered = _config("filtered", filters=(BusFilter(can_id=0x100, can_mask=0x7F0),))
    open_ = _config("open")
    with open_buses([filtered, open_]) as source:
        for config in (filtered, open_):
            bus = senders(config)
            bus.send(_classic(0))
            bus.send(can.Message(arbitration_id=0x200, is_extended_id=False))
        frames = _recv_n(source, 3)
        assert source.recv(timeout=0.05) is None
    assert sorted((f.channel or "", f.arbitration_id) for f in frames) == [
        ("filtered", 0x100),
        ("open", 0x100),
        ("open", 0x200),
    ]


def test_bus_config_gives_python_can_its_arguments() -> None:
    config = BusConfig(
        name="body",
        interface="kvaser",
        channel="0",
        bitrate=500_000,
        fd=True,
        data_bitrate=2_000_000,
        receive_own_messages=True,
        filters=(BusFilter(0x100, 0x7F0), BusFilter(0x18F00400, 0x1FFFFFFF, extended=True)),
        options={"serial": 1234},
    )
    assert config.bus_kwargs() == {
        "interface": "kvaser",
        "channel": "0",
        "bitrate": 500_000,
        "fd": True,
        "data_bitrate": 2_000_000,
        "receive_own_messages": True,
        "can_filters": [
            {"can_id": 0x100, "can_mask": 0x7F0},
            {"can_id": 0x18F00400, "can_mask": 0x1FFFFFFF, "extended": True},
        ],
        "serial": 1234,
    }
    # Unset timings are left to the interface (SocketCAN takes them from the system).
    assert BusConfig(name="pt", interface="socketcan", channel="can0").bus_kwargs() == {
        "interface": "socketcan",
        "channel": "can0",
        "receive_own_messages": False,
    }
    # Options are left out of the hash (a dict has none) but not out of equality.
    plain = BusConfig("body", "kvaser", "0", 500_000, True, 2_000_000, True, config.filters)
    assert hash(config) == hash(plain)
    assert config != plain


def test_iterates_until_closed(
    open_buses: Callable[..., MultiBusSource], senders: Callable[[BusConfig], can.BusABC]
) -> None:
    a, b = _config("a"), _config("b")
    source = open_buses([a, b], poll_interval=0.02)
    senders(a).send(_classic(1))
    senders(b).send(_classic(2))
    closer = threading.Timer(0.3, source.close)
    closer.start()
    try:
        frames = list(source)  # ends when the timer closes the source
    finally:
        closer.join()
    assert sorted((f.channel, f.arbitration_id) for f in frames) == [("a", 0x101), ("b", 0x102)]


# ---------------------------------------------------------------- the bounded queue


def test_full_queue_drops_the_newest_frames_and_counts_them(
    open_buses: Callable[..., MultiBusSource], senders: Callable[[BusConfig], can.BusABC]
) -> None:
    fast, slow = _config("fast"), _config("slow")
    source = open_buses([fast, slow], queue_frames=3)
    fast_bus, slow_bus = senders(fast), senders(slow)
    for i in range(10):
        fast_bus.send(_classic(i))
    _wait_until(lambda: source.stats["fast"].frames == 10)
    assert source.stats["fast"].dropped == 7
    assert source.queued == 3
    # The queue kept the oldest frames; the newest were the ones dropped.
    assert _recv_n(source, 3) == [to_frame(_classic(i), "fast") for i in range(3)]

    slow_bus.send(_classic(20))
    assert source.recv(timeout=2.0) == to_frame(_classic(20), "slow")

    for i in range(5):
        slow_bus.send(_classic(i))
    _wait_until(lambda: source.stats["slow"].frames == 6)
    source.close()
    assert (source.stats["slow"].dropped, source.stats["slow"].unread) == (2, 3)
    assert (source.stats["fast"].dropped, source.stats["fast"].unread) == (7, 0)


# ---------------------------------------------------------------- failures


def test_a_bus_that_fails_to_open_is_named_and_the_others_are_closed(
    open_buses: Callable[..., MultiBusSource],
) -> None:
    threads_before = set(threading.enumerate())
    good = [_config("powertrain"), _config("body")]
    bad = BusConfig(name="chassis", interface="no-such-interface", channel="can2")
    with pytest.raises(SourceError, match=r"'chassis'.*no-such-interface.*can2") as info:
        open_buses([*good, bad])
    assert isinstance(info.value.__cause__, NotImplementedError)
    with virtual.channels_lock:
        assert not {c.channel for c in good} & set(virtual.channels)
    assert set(threading.enumerate()) == threads_before


def test_a_failing_bus_is_counted_and_the_others_go_on(
    open_buses: Callable[..., MultiBusSource],
    senders: Callable[[BusConfig], can.BusABC],
    flaky_backend: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    good = _config("good")
    flaky = BusConfig(name="flaky", interface=flaky_backend, channel=_channel())
    with (
        caplog.at_level(logging.WARNING, logger="vehicle_agent.buses"),
        open_buses([flaky, good]) as source,
    ):
        _wait_until(lambda: source.stats["flaky"].errors >= 3)
        senders(good).send(_classic(5))
        assert source.recv(timeout=2.0) == to_frame(_classic(5), "good")
        flaky_stats = source.stats["flaky"]
        assert flaky_stats.consecutive_errors == flaky_stats.errors >= 3
        assert flaky_stats.last_error == "CanOperationError: bus off"
        assert flaky_stats.frames == 0
        assert source.stats["good"].errors == 0
    warnings = [r for r in caplog.records if r.name == "vehicle_agent.buses"]
    assert len(warnings) == 1  # once per kind of error, then only counted
    assert "'flaky'" in warnings[0].getMessage()
    assert "bus off" in warnings[0].getMessage()


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="at least one"):
        MultiBusSource([])
    with pytest.raises(ValueError, match="repeated: a"):
        MultiBusSource([_config("a"), _config("a")])
    with pytest.raises(ValueError, match="queue_frames"):
        MultiBusSource([_config("a")], queue_frames=0)


# ---------------------------------------------------------------- lifecycle


def test_close_stops_every_thread_and_bus_and_is_idempotent(
    open_buses: Callable[..., MultiBusSource],
) -> None:
    before = set(threading.enumerate())
    configs = [_config("powertrain"), _config("body"), _config("chassis")]
    source = open_buses(configs)
    readers = set(threading.enumerate()) - before
    assert sorted(t.name for t in readers) == [
        "telehub-bus-body",
        "telehub-bus-chassis",
        "telehub-bus-powertrain",
    ]
    source.close()
    source.close()
    assert source.closed
    assert set(threading.enumerate()) == before
    with virtual.channels_lock:
        assert not {c.channel for c in configs} & set(virtual.channels)
    with pytest.raises(SourceError, match="closed"):
        source.recv(timeout=0.0)
    assert list(source) == []


def test_sources_satisfy_the_live_protocol(open_buses: Callable[..., MultiBusSource]) -> None:
    single = BusSource("virtual", _channel(), name="powertrain")
    sources: list[LiveSource] = [open_buses([_config("body")]), single]
    for source in sources:
        with source:
            assert source.recv(timeout=0.0) is None
    assert [list(source.stats) for source in sources] == [["body"], ["powertrain"]]


def test_bus_source_names_its_frames_and_counts_them() -> None:
    config = _config("powertrain")
    sender = can.Bus(interface="virtual", channel=config.channel, preserve_timestamps=True)
    try:
        with (
            BusSource("virtual", config.channel, name="powertrain") as named,
            BusSource("virtual", config.channel) as unnamed,
        ):
            for i in range(3):
                sender.send(_fd(i))
            assert _recv_n(named, 3) == [to_frame(_fd(i), "powertrain") for i in range(3)]
            assert _recv_n(unnamed, 3) == [to_frame(_fd(i), config.channel) for i in range(3)]
            assert named.recv(timeout=0.01) is None
    finally:
        sender.shutdown()
    assert named.stats["powertrain"].frames == 3
    assert unnamed.stats[config.channel].frames == 3
    assert (named.stats["powertrain"].dropped, named.stats["powertrain"].errors) == (0, 0)


# ---------------------------------------------------------------- logs with several channels


def test_log_channels_map_to_bus_names() -> None:
    path = LOG_DIR / "logfile.asc"  # channels 1 to 5 in the file, 0 to 4 in python-can
    with LogSource(path) as source:
        raw = list(source)
    assert {f.channel for f in raw} == {"0", "1", "2", "3", "4"}
    names = {"0": "powertrain", "1": "body"}
    with LogSource(path, channel_names=names) as source:
        named = list(source)
    assert len(named) == len(raw) == 20
    for before, after in zip(raw, named, strict=True):
        assert before.channel is not None
        expected = names.get(before.channel, before.channel)
        assert after == Frame(**{**_fields(before), "channel": expected})
    assert {f.channel for f in named} == {"powertrain", "body", "2", "3", "4"}


def _fields(frame: Frame) -> dict[str, Any]:
    return frame._asdict()


# ---------------------------------------------------------------- end to end with the decoder


def test_each_bus_decodes_with_its_own_dbc(
    open_buses: Callable[..., MultiBusSource], senders: Callable[[BusConfig], can.BusABC]
) -> None:
    # Identifier 0x400 is Message1 (a double) in one file and Message0 (two enums)
    # in the other: only the bus name tells them apart.
    powertrain_dbc = DBC_DIR / "floating_point.dbc"
    body_dbc = DBC_DIR / "dump_signal_choices.dbc"
    powertrain_db = cantools.database.load_file(powertrain_dbc)
    body_db = cantools.database.load_file(body_dbc)
    assert isinstance(powertrain_db, cantools.database.can.Database)
    assert isinstance(body_db, cantools.database.can.Database)
    message1 = powertrain_db.get_message_by_frame_id(0x400)
    message0 = body_db.get_message_by_frame_id(0x400)
    assert (message1.name, message0.name) == ("Message1", "Message0")

    powertrain = _config("powertrain")
    body = _config("body", fd=True)
    on_powertrain = can.Message(
        timestamp=1.0,
        arbitration_id=0x400,
        data=message1.encode({"Signal1": -273.15}),
        is_extended_id=False,
    )
    on_body = can.Message(
        timestamp=1.5,
        arbitration_id=0x400,
        data=message0.encode({"FooSignal": 2, "BarSignal": 6}),
        is_extended_id=False,
        is_fd=True,
        bitrate_switch=True,
    )
    # Message2 exists only in the powertrain file: unknown on the body bus.
    stray = can.Message(timestamp=2.0, arbitration_id=0x401, data=bytes(8), is_extended_id=False)

    decoder = Decoder(
        [
            DbcSpec(powertrain_dbc, bus="powertrain", channel="powertrain"),
            DbcSpec(body_dbc, bus="body", channel="body"),
        ]
    )
    with open_buses([powertrain, body]) as source:
        senders(powertrain).send(on_powertrain)
        body_sender = senders(body)
        body_sender.send(on_body)
        body_sender.send(stray)
        frames = _recv_n(source, 3)

    catalog = decoder.catalog
    decoded = {
        (frame.channel, frame.arbitration_id): {
            (catalog[i].bus, catalog[i].message, catalog[i].name): value
            for i, value in decoder.decode(frame)
        }
        for frame in frames
    }
    assert decoded == {
        ("powertrain", 0x400): {("powertrain", "Message1", "Signal1"): -273.15},
        ("body", 0x400): {
            ("body", "Message0", "FooSignal"): 2,
            ("body", "Message0", "BarSignal"): 6,
        },
        ("body", 0x401): {},
    }
    assert (decoder.stats.decoded, decoder.stats.unknown_id) == (2, 1)
