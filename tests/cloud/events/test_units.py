"""Subjects, the envelope, the idempotent consumer and the commit notifier on their own."""

from __future__ import annotations

import pytest

from cloud.errors import BusFull, BusUnavailable, InvalidSubject, MalformedEvent
from cloud.events import (
    BatchCommitted,
    CommitNotifier,
    Delivery,
    FaultChange,
    FaultsCommitted,
    Idempotent,
    MemoryBus,
)
from cloud.events.envelope import decode, encode
from cloud.events.subjects import (
    batches,
    check_durable,
    events,
    matches,
    stream_name,
    tenant_of,
)

# ---------------------------------------------------------------- subjects


def test_subjects_are_per_tenant() -> None:
    assert batches("acme") == "telehub.acme.batches"
    assert events("acme", "trip_end") == "telehub.acme.events.trip_end"
    assert stream_name("acme-eu") == "telehub_acme-eu"
    assert tenant_of("telehub.acme.events.trip_end") == "acme"
    assert tenant_of("telehub.acme.events.*", wildcards=True) == "acme"


@pytest.mark.parametrize("tenant", ["", "Acme", "ac.me", "a*", "a>", "a b", "x" * 64])
def test_tenant_names_that_would_widen_a_subject_are_refused(tenant: str) -> None:
    with pytest.raises(InvalidSubject):
        batches(tenant)


@pytest.mark.parametrize(
    "subject",
    [
        "telehub.acme",  # no name
        "telehub..batches",  # empty token
        "telehub.*.batches",  # every tenant
        "telehub.>",  # every tenant
        "telehub.acme.>.x",  # '>' not last
        "telehub.acme.bat ches",
    ],
)
def test_filters_must_stay_inside_one_tenant(subject: str) -> None:
    with pytest.raises(InvalidSubject):
        tenant_of(subject, wildcards=True)


def test_kinds_and_durable_names_are_checked() -> None:
    with pytest.raises(InvalidSubject):
        events("acme", "trip.end")
    with pytest.raises(InvalidSubject):
        check_durable("rules.v2")
    assert check_durable("Rules_v2-a") == "Rules_v2-a"


@pytest.mark.parametrize(
    ("subject_filter", "subject", "expected"),
    [
        ("telehub.a.batches", "telehub.a.batches", True),
        ("telehub.a.*", "telehub.a.batches", True),
        ("telehub.a.*", "telehub.a.events.x", False),
        ("telehub.a.>", "telehub.a.events.x", True),
        ("telehub.a.events.>", "telehub.a.events", False),
        ("telehub.a.batches", "telehub.a.batches.x", False),
    ],
)
def test_wildcards_follow_nats(subject_filter: str, subject: str, expected: bool) -> None:
    assert matches(subject_filter, subject) is expected


# ---------------------------------------------------------------- envelope


def test_events_round_trip_and_name_their_subject_and_id() -> None:
    committed = BatchCommitted(
        tenant="acme", vehicle_id="VIN1", sequence=7, samples=3, first_ts_us=1, last_ts_us=9
    )
    fault = FaultsCommitted(
        tenant="acme",
        vehicle_id="VIN1",
        report_id=4,
        codes=(
            FaultChange(code="P0301", state="set", protocol="uds", bus="pt", source=16, ts_us=5),
        ),
        new=1,
    )
    assert decode(encode(committed)) == committed
    assert decode(encode(fault)) == fault
    assert (committed.subject, committed.msg_id) == ("telehub.acme.batches", "VIN1:7")
    assert (fault.subject, fault.msg_id) == ("telehub.acme.faults", "VIN1:faults:4")


def test_a_newer_field_is_ignored_by_an_older_reader() -> None:
    data = (
        b'{"kind": "batch_committed", "tenant": "acme", "vehicle_id": "V", "sequence": 1,'
        b' "samples": 2, "first_ts_us": 3, "last_ts_us": 4, "added_later": true}'
    )
    assert decode(data) == BatchCommitted(
        tenant="acme", vehicle_id="V", sequence=1, samples=2, first_ts_us=3, last_ts_us=4
    )


@pytest.mark.parametrize(
    "data",
    [b"", b"not json", b'{"kind": "unknown_kind", "tenant": "a", "vehicle_id": "v"}', b'{"kind":'],
)
def test_what_is_not_an_event_is_malformed(data: bytes) -> None:
    with pytest.raises(MalformedEvent):
        decode(data)


# ---------------------------------------------------------------- idempotent consumer


def _delivery(msg_id: str, subject: str = "telehub.acme.batches") -> Delivery:
    return Delivery(subject, msg_id, msg_id.encode(), 1)


async def test_the_idempotent_consumer_forgets_the_oldest_ids_first() -> None:
    handled: list[str] = []

    async def work(delivery: Delivery) -> None:
        handled.append(delivery.msg_id)

    deduped = Idempotent(work, capacity=2)
    for msg_id in ("a", "b", "a", "c", "a", "b"):
        await deduped(_delivery(msg_id))
    # "a" was seen again before "c" came, so "b" was the one forgotten and is handled again.
    assert handled == ["a", "b", "c", "b"]
    assert (deduped.duplicates, deduped.forgotten) == (2, 2)


async def test_a_failed_attempt_is_not_remembered() -> None:
    attempts: list[str] = []

    async def fails_once(delivery: Delivery) -> None:
        attempts.append(delivery.msg_id)
        if len(attempts) == 1:
            raise RuntimeError("transient")

    deduped = Idempotent(fails_once)
    with pytest.raises(RuntimeError):
        await deduped(_delivery("a"))
    await deduped(_delivery("a"))
    await deduped(_delivery("a", subject="telehub.acme.faults"))  # another subject
    assert attempts == ["a", "a", "a"]
    assert deduped.duplicates == 0


# ---------------------------------------------------------------- commit notifier


class _FlakyBus(MemoryBus):
    def __init__(self, failures: list[Exception]) -> None:
        super().__init__()
        self.failures = failures
        self.calls = 0

    async def publish(self, subject: str, data: bytes, *, msg_id: str) -> None:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        await super().publish(subject, data, msg_id=msg_id)


_EVENT = BatchCommitted(
    tenant="acme", vehicle_id="V", sequence=1, samples=1, first_ts_us=1, last_ts_us=1
)


async def test_the_notifier_retries_a_failed_publish() -> None:
    bus = _FlakyBus([BusUnavailable("down"), BusFull("full")])
    notifier = CommitNotifier(bus, attempts=3, backoff=0.001)
    assert await notifier.notify(_EVENT) is True
    assert (bus.calls, notifier.published, notifier.failed) == (3, 1, 0)


async def test_the_notifier_gives_up_after_its_attempts_and_counts_it() -> None:
    bus = _FlakyBus([BusUnavailable("down")] * 5)
    notifier = CommitNotifier(bus, attempts=2, backoff=0.001)
    assert await notifier.notify(_EVENT) is False
    assert (bus.calls, notifier.published, notifier.failed) == (2, 0, 1)


async def test_the_notifier_does_not_retry_what_cannot_succeed() -> None:
    bus = _FlakyBus([InvalidSubject("bad tenant")] * 5)
    notifier = CommitNotifier(bus, attempts=3, backoff=0.001)
    assert await notifier.notify(_EVENT) is False
    assert (bus.calls, notifier.failed) == (1, 1)
